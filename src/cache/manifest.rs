//! The record of a pipeline's last planned stages (`runs/<name>.json`), which lets `status` and
//! `explain` say *why* a stage is stale: which parameter or input changed since it last ran.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    pub key: String,
    pub kind: String,
    pub version: u32,
    pub params: Value,
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub stages: BTreeMap<String, StageRecord>,
}

impl Manifest {
    pub fn load(cache_root: &Path, pipeline: &str) -> Manifest {
        std::fs::read(cache_root.join("runs").join(format!("{pipeline}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Atomically replaces the manifest.
    pub fn save(&self, cache_root: &Path, pipeline: &str) -> Result<()> {
        let dir = cache_root.join("runs");
        let tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::fs::write(tmp.path(), serde_json::to_vec_pretty(self)?)?;
        tmp.persist(dir.join(format!("{pipeline}.json")))?;
        Ok(())
    }
}

/// Leaf-level differences between two JSON values: `(path, old, new)`.
pub fn diff(old: &Value, new: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push((path.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What robarch writes it reads back exactly (serde_json's `float_roundtrip`): radii and
    /// step sizes such as 3/255 and 0.75·ε/steps, whose shortest decimal has 17 digits, would
    /// otherwise come back one ulp off and show as changed parameters.
    #[test]
    fn floats_read_back_bit_for_bit() {
        let mut n = 0;
        for k in 1..=255u32 {
            for steps in [1u32, 3, 7, 10, 20] {
                for x in [k as f64 / 255.0, 0.75 * (k as f64 / 255.0) / steps as f64, 2.5 * k as f64 / 255.0 / steps as f64] {
                    let v = json!({"eps": x});
                    let back: Value = serde_json::from_slice(&serde_json::to_vec_pretty(&v).unwrap()).unwrap();
                    assert_eq!(back["eps"].as_f64().unwrap().to_bits(), x.to_bits(), "{x:?}");
                    assert!(diff(&v, &back).is_empty());
                    n += 1;
                }
            }
        }
        assert_eq!(n, 255 * 5 * 3);
        // The value the issue saw come back changed.
        let x: f64 = serde_json::from_str("0.011764705882352941").unwrap();
        assert_eq!(x, 3.0 / 255.0);
    }

    #[test]
    fn diff_names_changed_leaves() {
        let a = json!({"attack": {"eps": 0.1, "steps": 10}, "split": "test"});
        let b = json!({"attack": {"eps": 0.2, "steps": 10}, "split": "test", "limit": 5});
        assert_eq!(
            diff(&a, &b),
            vec![
                ("attack.eps".into(), "0.1".into(), "0.2".into()),
                ("limit".into(), "null".into(), "5".into())
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
