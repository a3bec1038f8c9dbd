//! Whether a stage's entry is in the cache and, when it is not but an earlier run of the pipeline
//! recorded the stage, why its key changed: the typed reasons (as cargo's `DirtyReason`) next to
//! the key code, rendered by `robarch status` and `robarch explain`, as text or JSON.
use super::Plan;
use crate::cache::manifest::{diff, Manifest};
use crate::cache::{Cache, Inspect};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::fmt;

/// One reason a recorded stage's key changed since the pipeline last ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    /// The stage kind's version changed (its semantics did).
    Version { kind: String, old: u32, new: u32 },
    /// A parameter (a leaf of the canonical parameters, dotted path) changed.
    Param {
        path: String,
        old: String,
        new: String,
    },
    /// An input's key changed: the producing stage (or the role, if it is gone) reruns too.
    Input { stage: String },
    /// The key is unchanged but its entry is not in the cache (deleted, or never committed).
    EntryMissing,
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StaleReason::Version { kind, old, new } => {
                write!(f, "{kind} stage version {old} -> {new}")
            }
            StaleReason::Param { path, old, new } => write!(f, "{path}: {old} -> {new}"),
            StaleReason::Input { stage } => write!(f, "input {stage} changed"),
            StaleReason::EntryMissing => f.write_str("entry missing from the cache"),
        }
    }
}

/// A stage's state against the cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum StageState {
    Cached,
    /// Never computed by a recorded run of this pipeline.
    Missing,
    /// Computed before under another key (or lost): why.
    Stale {
        reasons: Vec<StaleReason>,
    },
    /// Its entry is there but fails the check `run` makes (`why`): `run` recomputes it.
    Corrupt { why: String },
    /// Its entry's directory is there without its `meta.json`: `run` recomputes it.
    Incomplete { why: String },
    /// A data stage whose dataset is not downloaded yet: what provides it (the stages after it
    /// are missing, their keys unknown until the data is there).
    #[serde(rename = "missing")]
    Absent {
        data: String,
    },
}

impl StageState {
    pub fn name(&self) -> &'static str {
        match self {
            StageState::Cached => "cached",
            StageState::Missing | StageState::Absent { .. } => "missing",
            StageState::Stale { .. } => "stale",
            StageState::Corrupt { .. } => "corrupt",
            StageState::Incomplete { .. } => "incomplete",
        }
    }

    /// The reasons joined for one line of text ("" unless stale or absent).
    pub fn why(&self) -> String {
        match self {
            StageState::Absent { data } => data.clone(),
            StageState::Corrupt { why } | StageState::Incomplete { why } => {
                format!("{why}; `robarch run` recomputes it")
            }
            StageState::Stale { reasons } => reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::new(),
        }
    }
}

/// The state of stage `ix` of `plan`, against `cache` and the pipeline's last recorded run.
pub fn stage_state(
    plan: &Plan,
    ix: NodeIndex,
    cache: Option<&Cache>,
    manifest: &Manifest,
) -> StageState {
    let n = &plan.graph[ix];
    if let Some(why) = plan.absent.get(&n.id) {
        return StageState::Absent { data: why.clone() };
    }
    // The check `run` makes (sizes and stat stamps of the listed files), so that `status` says
    // `cached` only for what `run` would reuse.
    match cache.map(|c| c.inspect(&n.key)) {
        Some(Inspect::Cached) => return StageState::Cached,
        Some(Inspect::Corrupt(why)) => return StageState::Corrupt { why },
        Some(Inspect::Incomplete(why)) => return StageState::Incomplete { why },
        Some(Inspect::Missing) | None => {}
    }
    let Some(old) = manifest.stages.get(&n.id) else {
        return StageState::Missing;
    };
    let mut reasons = Vec::new();
    if old.version != n.stage.version() {
        reasons.push(StaleReason::Version {
            kind: old.kind.clone(),
            old: old.version,
            new: n.stage.version(),
        });
    }
    for (path, old, new) in diff(&old.params, &n.stage.params()) {
        reasons.push(StaleReason::Param { path, old, new });
    }
    for (role, key) in &n.inputs {
        if old.inputs.get(role) != Some(key) {
            let stage = plan.producer(ix, key).unwrap_or(role).to_string();
            reasons.push(StaleReason::Input { stage });
        }
    }
    if reasons.is_empty() {
        reasons.push(StaleReason::EntryMissing);
    }
    StageState::Stale { reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_render_as_text_and_json() {
        let s = StageState::Stale {
            reasons: vec![
                StaleReason::Param {
                    path: "attack.eps".into(),
                    old: "0.1".into(),
                    new: "0.2".into(),
                },
                StaleReason::Input {
                    stage: "train/d/m/t".into(),
                },
            ],
        };
        assert_eq!(s.name(), "stale");
        assert_eq!(s.why(), "attack.eps: 0.1 -> 0.2; input train/d/m/t changed");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"state": "stale", "reasons": [
                {"reason": "param", "path": "attack.eps", "old": "0.1", "new": "0.2"},
                {"reason": "input", "stage": "train/d/m/t"},
            ]})
        );
        assert_eq!(
            serde_json::to_value(StageState::Cached).unwrap(),
            serde_json::json!({"state": "cached"})
        );
    }
}
