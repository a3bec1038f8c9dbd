//! Named training recipes (`training.<name>.recipe`) and per-model `overrides`.
//!
//! A recipe is a partial training entry written in YAML. Expanding it merges the user's entry over
//! it: mappings merge key by key (so `optimizer: {lr: 3e-4}` keeps the recipe's optimizer name and
//! weight decay), anything else (numbers, lists such as `augment`) replaces the recipe's value.
//! `overrides` maps a model name of the pipeline, or an architecture kind (`cnn`, `transformer`,
//! `hybrid`, `mlp`), to another partial entry merged the same way for the models it names: kind
//! first, then the model's own name.

use super::{did_you_mean, Problem};
use serde_yaml::{Mapping, Value};

/// A named recipe: a partial `training.<name>` entry.
pub struct Recipe {
    pub name: &'static str,
    pub about: &'static str,
    pub yaml: &'static str,
}

/// The authors' optimiser, schedule and inner attack (Liu, Tang et al. 2022, released code), shared
/// by the CIFAR-10 and ImageNette recipes. Attention-based models (transformers and hybrids) used
/// lr 2.5e-4 and weight decay 0.05.
const LIU2022: &str = "method: pgd-at
attack: {type: pgd, norm: linf, eps: 8/255, steps: 15, step_size: 0.8/255, random_start: true}
attack_mode: eval
epochs: 100
batch_size: 128
optimizer: {name: adamw, lr: 1e-4, weight_decay: 0.01}
schedule: {name: cosine, warmup_epochs: 8, min_lr: 5e-6}
overrides:
  transformer: {optimizer: {lr: 2.5e-4, weight_decay: 0.05}}
  hybrid: {optimizer: {lr: 2.5e-4, weight_decay: 0.05}}
";

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "liu2022-cifar10",
        about: "the study's CIFAR-10 adversarial training: PGD-ℓ∞ 8/255 (15 steps of 0.1ε, random start), AdamW, 8-epoch warm-up + cosine, 100 epochs, AutoAugment + crop + flip",
        yaml: "augment: [autoaugment: cifar10, random_crop: {padding: 4}, hflip]",
    },
    Recipe {
        name: "liu2022-imagenette",
        about: "the study's ImageNette adversarial training: as liu2022-cifar10 with RandomResizedCrop + flip + AutoAugment (ImageNet policy)",
        yaml: "augment: [random_resized_crop, hflip, autoaugment: imagenet]",
    },
];

pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

impl Recipe {
    /// The recipe's full partial entry.
    pub fn value(&self) -> Value {
        let mut v: Value = serde_yaml::from_str(LIU2022).expect("built-in recipe is valid YAML");
        let own: Value = serde_yaml::from_str(self.yaml).expect("built-in recipe is valid YAML");
        merge(&mut v, &own);
        v
    }

    /// The recipe as YAML, for `robarch ls recipes`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.value()).expect("YAML values serialise")
    }
}

/// Merges `over` into `base`: mappings key by key (recursively), anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Replaces every `training.<name>` entry that names a `recipe` by the recipe with the entry
/// merged over it. Returns whether any entry named one.
pub fn expand(root: &mut Value) -> Result<bool, Vec<Problem>> {
    let Some(training) = root.get_mut("training").and_then(Value::as_mapping_mut) else {
        return Ok(false);
    };
    let mut problems = Vec::new();
    let mut any = false;
    for (key, entry) in training.iter_mut() {
        let name = key.as_str().unwrap_or_default().to_string();
        let Some(map) = entry.as_mapping_mut() else {
            continue;
        };
        let Some(r) = map.remove("recipe") else {
            continue;
        };
        any = true;
        let at = ["training", name.as_str(), "recipe"];
        let Some(rname) = r.as_str() else {
            problems.push(
                Problem::new(&at, "must be a recipe name")
                    .hint(format!("one of {}", names().join(", "))),
            );
            continue;
        };
        let Some(recipe) = find(rname) else {
            let hint = did_you_mean(rname, names().into_iter())
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("one of {} (robarch ls recipes)", names().join(", ")));
            problems.push(Problem::new(&at, format!("unknown recipe `{rname}`")).hint(hint));
            continue;
        };
        let mut v = recipe.value();
        merge(&mut v, &Value::Mapping(std::mem::take(map)));
        *entry = v;
    }
    if problems.is_empty() {
        Ok(any)
    } else {
        Err(problems)
    }
}

pub fn names() -> Vec<&'static str> {
    RECIPES.iter().map(|r| r.name).collect()
}

/// A training entry specialised to one model: `overrides.<kind>`, then `overrides.<model>`, merged
/// over the entry (without its `overrides`). Returns the merged entry and the keys that applied.
pub fn specialise(entry: &Value, model: &str, kind: &str) -> (Value, Vec<String>) {
    let mut v = entry.clone();
    let overrides = v
        .as_mapping_mut()
        .and_then(|m| m.remove("overrides"))
        .and_then(|o| o.as_mapping().cloned())
        .unwrap_or_else(Mapping::new);
    let mut applied = Vec::new();
    for key in [kind, model] {
        if let Some(o) = overrides.get(key) {
            merge(&mut v, o);
            applied.push(key.to_string());
        }
    }
    (v, applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn merge_is_deep_for_mappings_and_replaces_the_rest() {
        let mut b = y("{a: 1, o: {name: adamw, lr: 1, wd: 2}, l: [1, 2]}");
        merge(&mut b, &y("{o: {lr: 3}, l: [9], n: x}"));
        assert_eq!(b, y("{a: 1, o: {name: adamw, lr: 3, wd: 2}, l: [9], n: x}"));
    }

    #[test]
    fn user_fields_win_over_the_recipe() {
        let mut root =
            y("training:\n  t: {recipe: liu2022-cifar10, epochs: 2, optimizer: {lr: 0.5}}");
        assert!(expand(&mut root).unwrap());
        let t = &root["training"]["t"];
        assert_eq!(t["epochs"], y("2"));
        assert_eq!(
            t["optimizer"],
            y("{name: adamw, lr: 0.5, weight_decay: 0.01}")
        );
        assert_eq!(t["batch_size"], y("128"));
        assert_eq!(t["augment"][0], y("{autoaugment: cifar10}"));
        assert!(t.get("recipe").is_none());
    }

    #[test]
    fn unknown_recipe_names_the_field_and_suggests() {
        let mut root = y("training:\n  t: {recipe: liu2022-cifar}");
        let p = expand(&mut root).unwrap_err();
        assert_eq!(p[0].path, ["training", "t", "recipe"]);
        assert!(p[0].message.contains("unknown recipe `liu2022-cifar`"));
        assert!(p[0].hint.as_deref().unwrap().contains("liu2022-cifar10"));
    }

    #[test]
    fn kind_then_model_overrides() {
        let e = y("{epochs: 1, optimizer: {name: adamw, lr: 1}, overrides: {transformer: {optimizer: {lr: 2}}, vit: {epochs: 3}}}");
        let (v, applied) = specialise(&e, "vit", "transformer");
        assert_eq!(v, y("{epochs: 3, optimizer: {name: adamw, lr: 2}}"));
        assert_eq!(applied, ["transformer", "vit"]);
        let (v, applied) = specialise(&e, "resnet18", "cnn");
        assert_eq!(v, y("{epochs: 1, optimizer: {name: adamw, lr: 1}}"));
        assert!(applied.is_empty());
    }
}
