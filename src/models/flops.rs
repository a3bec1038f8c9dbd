//! Forward FLOPs per image of an architecture, for compute estimates (`robarch status`, `run
//! --dry-run`): looked up in a table counted on the reference PyTorch definitions
//! (`scripts/flops.sh`, which writes `flops.json`: every architecture at its `cifar`, `imagenet`
//! and `tiny` presets). A config the table does not hold has no estimate; another resolution of a
//! config it holds is scaled by pixel count (exact for convolutions, close for attention at the
//! token counts these models use), and marked so.
use super::{ModelIo, ModelParams};
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

/// The table as `scripts/flops.sh` wrote it.
const TABLE: &str = include_str!("flops.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub arch: String,
    pub preset: String,
    pub io: ModelIo,
    pub config: Value,
    pub forward_flops: f64,
}

/// The embedded table.
pub fn table() -> &'static [Entry] {
    static T: OnceLock<Vec<Entry>> = OnceLock::new();
    T.get_or_init(|| serde_json::from_str(TABLE).expect("src/models/flops.json is valid"))
}

/// A model's forward FLOPs per image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forward {
    pub flops: f64,
    /// Scaled from another resolution of the same config (not counted at this one).
    pub scaled: bool,
}

/// The forward FLOPs per image of `model` on inputs `io`, if the table holds its config.
pub fn forward(model: &ModelParams, io: &ModelIo) -> Option<Forward> {
    let same: Vec<&Entry> = table()
        .iter()
        .filter(|e| e.arch == model.arch && e.config == model.config)
        .collect();
    if let Some(e) = same.iter().find(|e| e.io == *io) {
        return Some(Forward {
            flops: e.forward_flops,
            scaled: false,
        });
    }
    // The nearest resolution (the input channels and classes only change the stem and the head).
    let e = same
        .iter()
        .min_by_key(|e| (e.io.image_size - io.image_size).abs())?;
    let ratio = (io.image_size * io.image_size) as f64 / (e.io.image_size * e.io.image_size) as f64;
    Some(Forward {
        flops: e.forward_flops * ratio,
        scaled: e.io.image_size != io.image_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_the_current_preset() {
        // A preset changed since the table was counted: rerun scripts/flops.sh.
        for e in table() {
            let a = super::super::find(&e.arch).expect("a registry architecture");
            let preset = (a.preset)(&e.preset).expect("a preset of it");
            let config = (a.check)(&preset).unwrap();
            assert_eq!(
                config, e.config,
                "{}:{} changed since src/models/flops.json was counted; run scripts/flops.sh",
                e.arch, e.preset
            );
            assert!(e.forward_flops > 0.0, "{}:{}", e.arch, e.preset);
        }
        // Every architecture at each preset the study's pipelines use.
        for a in super::super::REGISTRY
            .iter()
            .filter(|a| a.kind != super::super::ArchKind::External)
        {
            for p in ["tiny", "cifar", "imagenet"] {
                assert!(
                    table().iter().any(|e| e.arch == a.name && e.preset == p),
                    "{} {p} is not in src/models/flops.json; run scripts/flops.sh",
                    a.name
                );
            }
        }
    }

    #[test]
    fn lookup_is_exact_or_scaled_by_pixels() {
        let e = table().iter().find(|e| e.arch == "resnet18" && e.preset == "cifar").unwrap();
        let m = ModelParams {
            arch: e.arch.clone(),
            config: e.config.clone(),
            weights: None,
        };
        let f = forward(&m, &e.io).unwrap();
        assert_eq!(f, Forward { flops: e.forward_flops, scaled: false });
        let half = ModelIo {
            image_size: e.io.image_size / 2,
            ..e.io
        };
        let g = forward(&m, &half).unwrap();
        assert!(g.scaled && (g.flops - e.forward_flops / 4.0).abs() < 1.0);
        let other = ModelParams {
            arch: "resnet18".into(),
            config: serde_json::json!({"not": "a preset"}),
            weights: None,
        };
        assert_eq!(forward(&other, &e.io), None);
    }
}
