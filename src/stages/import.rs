//! `import`: brings an external TorchScript model into the cache, in place of a training stage
//! (the model is evaluated as it is) or before one (`train: true`: it is the initial network). The
//! entry holds a copy of the file (`model.pt`) and a `model.json` whose config names it relative to
//! the entry, with the input contract the model was imported under.
//!
//! A model evaluated as it is must show it reads the pipeline's images: its clean accuracy on the
//! first test points is measured, and below twice chance (or outside `expect:`) the import fails
//! naming the contract it assumed and the two likely fixes, so a preprocessing mismatch stops here
//! rather than surfacing as a robustness result.
#[cfg(feature = "torch")]
use {
    anyhow::Result,
    crate::{data::prepared, models::{contract::{self, InputContract}, saved::{script_in, ModelInfo, SavedModel}, Network}},
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
pub use crate::models::saved::SCRIPT;

#[derive(Serialize, Deserialize)]
pub struct Import {
    /// Canonical model params: the config holds the file's name and hash, never its location.
    pub model: ModelParams,
    pub io: ModelIo,
    /// Where the file is now. Not part of the key: its name and hash are (in `model`), so
    /// moving the file does not re-import it.
    #[serde(skip)]
    pub file: PathBuf,
    /// Not part of the key: the model's name in the pipeline, for messages.
    #[serde(skip)]
    pub name: String,
}

impl Import {
    /// Resolves `models.<name>.file` against the pipeline's directory and fingerprints it; a timm
    /// model's module comes from its `script` stage instead (the input `script`).
    pub fn plan(
        pipeline: &Path,
        name: &str,
        mp: &ModelParams,
        io: ModelIo,
        hashes: &mut HashState,
    ) -> std::result::Result<Import, Problem> {
        if mp.arch == crate::models::timm::TIMM.name {
            return Ok(Import {
                model: mp.clone(),
                io,
                file: PathBuf::new(),
                name: name.to_string(),
            });
        }
        let field = ["models", name, "file"];
        let mut c: TorchScriptConfig = serde_json::from_value(mp.config.clone())
            .map_err(|e| Problem::new(&field, e.to_string()))?;
        let file = super::OutsideFile::pin(
            pipeline,
            &c.file,
            &field,
            "paths are relative to the pipeline file; export one with torch.jit.script(model).save(path)",
            hashes,
        )?;
        c.file = file.name;
        c.blake3 = Some(file.blake3);
        Ok(Import {
            model: ModelParams {
                arch: mp.arch.clone(),
                config: serde_json::to_value(&c).expect("config serialises"),
                weights: None,
            },
            io,
            file: file.path,
            name: name.to_string(),
        })
    }
}

impl StageKind for Import {
    fn kind(&self) -> &'static str {
        "import"
    }
    fn version(&self) -> u32 {
        // 2: records the input contract and checks the clean accuracy of a model evaluated as
        // it is; loads the module's buffers.
        2
    }
    fn flops(&self, _: &super::cost::CostInputs) -> Option<f64> {
        // Copying and checking a file; an imported network's FLOPs are unknown, so its
        // evaluations have no estimate (`model_cost` is `None`).
        Some(0.0)
    }
    fn locations(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.file, "name": self.name })
    }
    fn work(&self) -> super::Work<'_> {
        super::in_worker(self)
    }
}

/// What an imported model's config says of its input and its check, whichever family it is
/// (`torchscript`, `timm`).
#[derive(Deserialize)]
pub struct Outside {
    pub normalize: bool,
    #[serde(default)]
    pub range: Option<crate::models::contract::PixelRange>,
    #[serde(default)]
    pub expect: Option<crate::models::contract::Expect>,
    #[serde(default)]
    pub blake3: Option<String>,
}

impl Outside {
    pub fn of(mp: &ModelParams) -> anyhow::Result<Outside> {
        Ok(serde_json::from_value(mp.config.clone())?)
    }
}

#[cfg(feature = "torch")]
impl super::TensorStage for Import {
    fn run(&self, cx: &StageContext) -> Result<Value> {
        let data = prepared::load(&cx.input("data")?.dir)?;
        let c = Outside::of(&self.model)?;
        // The module, and where the spec names it: its file, or the timm model scripted into it.
        let (from, field) = match cx.input("script") {
            Ok(e) => (e.dir.join(SCRIPT), format!("models.{}.model", self.name)),
            Err(_) => (self.file.clone(), format!("models.{}.file", self.name)),
        };
        std::fs::copy(&from, cx.out.join(SCRIPT))
            .map_err(|e| anyhow::anyhow!("copying {}: {e}", from.display()))?;
        let contract = InputContract::new(
            c.range.unwrap_or_default(),
            c.normalize,
            &data.info.mean,
            &data.info.std,
            &self.io,
        );
        // Saved as the TorchScript module it now is, whatever it came from.
        let model = ModelParams {
            arch: crate::models::torchscript::TORCHSCRIPT.name.to_string(),
            config: serde_json::to_value(TorchScriptConfig {
                file: SCRIPT.to_string(),
                normalize: c.normalize,
                blake3: c.blake3.clone(),
                range: c.range,
                train: self.model.trains().then_some(true),
                expect: c.expect.clone(),
            })?,
            weights: None,
        };
        let mut info = ModelInfo {
            model,
            io: self.io,
            mean: contract.mean.clone(),
            std: contract.std.clone(),
            num_parameters: 0,
            input: Some(contract.clone()),
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
        .map_err(|e| anyhow::anyhow!("{field}: {e:#}"))?;
        info.num_parameters = net.num_parameters();
        let mut summary = json!({"num_parameters": info.num_parameters});
        if !self.model.trains() {
            let n = contract::CHECK_POINTS.min(data.test_x.size()[0]);
            let acc = contract::clean_accuracy(&net, &data.test_x.narrow(0, 0, n), &data.test_y.narrow(0, 0, n));
            if let Some(why) =
                contract::problem(acc, n, self.io.num_classes, c.expect.as_ref(), &contract)
            {
                anyhow::bail!("{field}: {why}");
            }
            summary["clean_accuracy_check"] = json!({"points": n, "accuracy": acc});
        }
        SavedModel::write_info(cx.out, &info)?;
        Ok(summary)
    }
}

