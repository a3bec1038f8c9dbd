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

/// Up to three names, then how many more: "`a`, `b`, `c` and 4 more".
fn some_of(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

/// `n` of `noun` (a plural): "1 evaluation", "2 evaluations".
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {}", noun.strip_suffix('s').unwrap_or(noun)),
        n => format!("{n} {noun}"),
    }
}

/// A value as a short string: a JSON string without its quotes, anything over 40 characters cut.
fn short(v: &str) -> String {
    let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
    match v.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v.to_string(),
    }
}

/// What a list parameter gained and lost, one cause a line. Lists of input labels (objects with
/// a `role`) are told by what is new in them ("attack `mim` added: 2 new evaluations"); lists of
/// names by the names.
fn list_causes(path: &str, old: &[serde_json::Value], new: &[serde_json::Value]) -> Vec<String> {
    use serde_json::Value;
    fn id(v: &Value) -> String {
        v.get("role").map_or_else(|| v.to_string(), Value::to_string)
    }
    fn by_id(l: &[Value]) -> std::collections::BTreeMap<String, &Value> {
        l.iter().map(|v| (id(v), v)).collect()
    }
    let (old_ids, new_ids) = (by_id(old), by_id(new));
    let added: Vec<&Value> = new.iter().filter(|v| !old_ids.contains_key(&id(v))).collect();
    let removed: Vec<&Value> = old.iter().filter(|v| !new_ids.contains_key(&id(v))).collect();
    let mut out = Vec::new();
    if !new.iter().chain(old).any(Value::is_object) {
        let names = |l: &[&Value]| l.iter().map(|v| short(&v.to_string())).collect::<Vec<_>>();
        if !added.is_empty() {
            out.push(format!("`{path}`: {} added", some_of(&names(&added))));
        }
        if !removed.is_empty() {
            out.push(format!("`{path}`: {} removed", some_of(&names(&removed))));
        }
    } else {
        let noun = match path.rsplit('.').next().unwrap_or(path) {
            "evals" => "evaluations".to_string(),
            other => other.to_string(),
        };
        for (list, other, verb, more) in [(&added, old, "added", "new"), (&removed, new, "removed", "fewer")] {
            if list.is_empty() {
                continue;
            }
            // The first label field whose values in `list` appear nowhere in `other`: the cause.
            let fields = ["dataset", "model", "training", "attack", "split", "seed"];
            let cause = fields.iter().find_map(|f| {
                let vals = list
                    .iter()
                    .map(|v| v.get(*f).filter(|x| !x.is_null()).map(Value::to_string))
                    .collect::<Option<std::collections::BTreeSet<String>>>()?;
                let seen = other.iter().any(|o| o.get(*f).is_some_and(|x| vals.contains(&x.to_string())));
                (!seen).then(|| (f, vals.iter().map(|v| short(v)).collect::<Vec<_>>()))
            });
            out.push(match cause {
                Some((f, vals)) => {
                    let n = count(list.len(), &format!("{more} {noun}"));
                    format!("{f} {} {verb}: {n}", some_of(&vals))
                }
                None => format!("{} {verb}", count(list.len(), &noun)),
            });
        }
        let changed = new
            .iter()
            .filter(|v| old_ids.get(&id(v)).is_some_and(|o| o != v))
            .count();
        if changed > 0 {
            out.push(format!("{} changed", count(changed, &noun)));
        }
    }
    out
}

impl StaleReason {
    /// This reason as short causes, one a line: `optimizer.lr` 0.002 → 0.001, `limit` added,
    /// attack `mim` added: 2 new evaluations.
    fn causes(&self) -> Vec<String> {
        match self {
            StaleReason::Param { path, old, new } => {
                let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
                match (parse(old), parse(new)) {
                    (Some(serde_json::Value::Array(a)), Some(serde_json::Value::Array(b))) => {
                        list_causes(path, &a, &b)
                    }
                    _ if old == "null" => vec![format!("`{path}` added: {}", short(new))],
                    _ if new == "null" => vec![format!("`{path}` removed (was {})", short(old))],
                    _ => vec![format!("`{path}` {} → {}", short(old), short(new))],
                }
            }
            StaleReason::Version { kind, old, new } => {
                vec![format!("`{kind}` stage version {old} → {new}")]
            }
            other => vec![other.to_string()],
        }
    }
}

impl StageState {
    /// Why the stage runs, as short causes for text output, one a line: each changed parameter,
    /// what a list gained or lost, the changed inputs counted on one line. The full diff is in
    /// `explain` and `--format json` (`why`, `reasons`).
    pub fn causes(&self) -> Vec<String> {
        let StageState::Stale { reasons } = self else {
            let why = self.why();
            return if why.is_empty() { vec![] } else { vec![why] };
        };
        let mut out: Vec<String> = reasons
            .iter()
            .filter(|r| !matches!(r, StaleReason::Input { .. }))
            .flat_map(StaleReason::causes)
            .collect();
        let inputs: Vec<String> = reasons
            .iter()
            .filter_map(|r| match r {
                StaleReason::Input { stage } => Some(stage.clone()),
                _ => None,
            })
            .collect();
        match inputs.len() {
            0 => {}
            1 => out.push(format!("input {} changed", inputs[0])),
            n => out.push(format!("{n} inputs changed: {}", some_of(&inputs))),
        }
        out
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

    #[test]
    fn causes_are_short_lines_that_tell_added_from_changed() {
        let label = |attack: &str, split: &str| {
            serde_json::json!({"role": format!("eval/d/m/t/{attack}/{split}"), "dataset": "d",
                "model": "m", "training": "t", "attack": attack, "split": split})
        };
        let old = serde_json::json!([label("clean", "test"), label("pgd", "test"), label("pgd", "train")]);
        let new = serde_json::json!([label("clean", "test"), label("mim", "test"), label("mim", "train"), label("pgd", "test")]);
        let param = |path: &str, old: &str, new: &str| StaleReason::Param {
            path: path.into(),
            old: old.into(),
            new: new.into(),
        };
        let s = StageState::Stale {
            reasons: vec![
                param("evals", &old.to_string(), &new.to_string()),
                param("gaps.at.gap", r#"["fgsm","pgd"]"#, r#"["fgsm","mim","pgd"]"#),
                param("optimizer.lr", "0.002", "0.001"),
                param("limit", "null", "5"),
                param("attack.restarts", "2", "null"),
                StaleReason::Input { stage: "eval/d/m/t/pgd/test".into() },
                StaleReason::Input { stage: "eval/d/m/t/mim/test".into() },
            ],
        };
        assert_eq!(
            s.causes(),
            [
                "attack `mim` added: 2 new evaluations",
                "1 evaluation removed",
                "`gaps.at.gap`: `mim` added",
                "`optimizer.lr` 0.002 → 0.001",
                "`limit` added: 5",
                "`attack.restarts` removed (was 2)",
                "2 inputs changed: `eval/d/m/t/pgd/test`, `eval/d/m/t/mim/test`",
            ]
        );
    }
}
