//! `import`: brings an external TorchScript model into the cache in place of a training stage, so
//! evaluation and analysis stages consume it like a trained network. The entry holds a copy of the
//! file (`model.pt`) and a `model.json` whose config names it relative to the entry.
#[cfg(feature = "torch")]
use {
    anyhow::Result,
    crate::{data::prepared, models::{saved::{script_in, ModelInfo, SavedModel}, Network}},
    serde_json::{json, Value},
    super::StageContext,
};
use super::StageKind;
use crate::data::fingerprint::HashState;
use crate::models::torchscript::TorchScriptConfig;
use crate::models::{ModelIo, ModelParams};
use crate::vocab::Problem;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The training label that evaluations of imported models carry in reports.
pub const TRAINING_LABEL: &str = "external";
pub const SCRIPT: &str = "model.pt";

#[derive(Serialize, Deserialize)]
pub struct Import {
    /// Canonical model params: the config holds the file's name and hash, never its location.
    pub model: ModelParams,
    pub io: ModelIo,
    /// Where the file is now. Not part of the key: its name and hash are (in `model`), so
    /// moving the file does not re-import it.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Import {
    /// Resolves `models.<name>.file` against the pipeline's directory and fingerprints it.
    pub fn plan(
        pipeline: &Path,
        name: &str,
        mp: &ModelParams,
        io: ModelIo,
        hashes: &mut HashState,
    ) -> std::result::Result<Import, Problem> {
        let field = ["models", name, "file"];
        let mut c: TorchScriptConfig = serde_json::from_value(mp.config.clone())
            .map_err(|e| Problem::new(&field, e.to_string()))?;
        let dir = pipeline.parent().unwrap_or(Path::new("."));
        let file = dir.join(&c.file);
        if !file.is_file() {
            return Err(Problem::new(&field, format!("no such file: {}", file.display()))
                .hint("paths are relative to the pipeline file; export one with torch.jit.script(model).save(path)"));
        }
        let parent = file.parent().unwrap_or(Path::new("."));
        let hash = hashes
            .fingerprint(parent, std::slice::from_ref(&file))
            .map_err(|e| Problem::new(&field, format!("{e:#}")))?;
        c.file = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        c.blake3 = Some(hash);
        Ok(Import {
            model: ModelParams {
                arch: mp.arch.clone(),
                config: serde_json::to_value(&c).expect("config serialises"),
            },
            io,
            file,
        })
    }
}

impl StageKind for Import {
    fn kind(&self) -> &'static str {
        "import"
    }
    fn version(&self) -> u32 {
        1
    }
    fn flops(&self, _: &super::cost::CostInputs) -> Option<f64> {
        // Copying and checking a file; an imported network's FLOPs are unknown, so its
        // evaluations have no estimate (`model_cost` is `None`).
        Some(0.0)
    }
    fn locations(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.file })
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Import {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let data = prepared::load(&cx.input("data")?.dir)?;
        let c: TorchScriptConfig = serde_json::from_value(self.model.config.clone())?;
        std::fs::copy(&self.file, cx.out.join(SCRIPT))
            .map_err(|e| anyhow::anyhow!("copying {}: {e}", self.file.display()))?;
        let channels = self.io.in_channels as usize;
        let (mean, std) = if c.normalize {
            (data.info.mean.clone(), data.info.std.clone())
        } else {
            (vec![0.0; channels], vec![1.0; channels])
        };
        let mut model = self.model.clone();
        model.config["file"] = json!(SCRIPT);
        let mut info = ModelInfo {
            model,
            io: self.io,
            mean,
            std,
            num_parameters: 0,
        };
        // Loading checks the file is TorchScript and maps this dataset's images to its classes.
        let net = Network::new(
            &script_in(&info.model, cx.out),
            &info.io,
            &info.mean,
            &info.std,
            tch::Device::Cpu,
            0,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        info.num_parameters = net.num_parameters();
        SavedModel::write_info(cx.out, &info)?;
        Ok(json!({"num_parameters": info.num_parameters}))
    }
}
