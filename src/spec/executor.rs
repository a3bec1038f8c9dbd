//! The `executor:` block: where a pipeline's stages run (this machine, or Slurm jobs) and, for
//! Slurm, what each kind of stage asks for. None of it enters a cache key: the same stage
//! computed locally or by a Slurm job is the same entry.
use crate::vocab::{did_you_mean, Problem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stage kinds, the keys `resources` takes besides `default`: the fixed ones, with every
/// per-model analysis (`analysis::REGISTRY`) after `evaluate`.
pub fn stage_kinds() -> Vec<&'static str> {
    let mut kinds = vec!["prepare", "script", "import", "load", "train", "evaluate", "merge"];
    kinds.extend(crate::analysis::REGISTRY.iter().map(|a| a.name));
    kinds.extend([crate::analysis::correlation::NAME, "report"]);
    kinds
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Worker processes on this machine.
    #[default]
    Local,
    /// One Slurm job per stage (or job arrays, or one pilot allocation) on a shared cache.
    Slurm,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    /// The executor `robarch run` uses unless `--executor` says otherwise.
    #[serde(default)]
    pub kind: ExecutorKind,
    #[serde(default)]
    pub slurm: SlurmSpec,
    /// Minutes a stage's worker may go without progress (no batch, epoch or log line, and no
    /// CPU time) before it is reported, killed and its stage failed: one number for every kind,
    /// or per stage kind with `default` for the others.
    #[serde(default)]
    pub stall_minutes: Stall,
}

/// `executor.stall_minutes`: one limit, or one per stage kind.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Stall {
    All(f64),
    PerKind(BTreeMap<String, f64>),
}

/// Generous: a paper-scale epoch reports every batch, and a batch takes seconds, not minutes.
pub const DEFAULT_STALL_MINUTES: f64 = 30.0;
/// The shortest limit: workers beat every two seconds.
pub const MIN_STALL_MINUTES: f64 = 0.1;

impl Default for Stall {
    fn default() -> Self {
        Stall::All(DEFAULT_STALL_MINUTES)
    }
}

impl Stall {
    /// The limit for a stage of `kind`.
    pub fn for_kind(&self, kind: &str) -> std::time::Duration {
        let minutes = match self {
            Stall::All(m) => *m,
            Stall::PerKind(m) => m
                .get(kind)
                .or_else(|| m.get("default"))
                .copied()
                .unwrap_or(DEFAULT_STALL_MINUTES),
        };
        // A number too large for a duration (`1e300`: never) is no limit.
        std::time::Duration::try_from_secs_f64(minutes * 60.0).unwrap_or(std::time::Duration::MAX)
    }

    fn check(&self, out: &mut Vec<Problem>) {
        let limits: Vec<(Vec<&str>, f64)> = match self {
            Stall::All(m) => vec![(vec!["executor", "stall_minutes"], *m)],
            Stall::PerKind(m) => m
                .iter()
                .map(|(k, v)| (vec!["executor", "stall_minutes", k.as_str()], *v))
                .collect(),
        };
        for (path, m) in limits {
            let kinds = stage_kinds();
            if let Some(kind) = path.get(2).filter(|k| **k != "default" && !kinds.contains(k)) {
                let hint = did_you_mean(kind, kinds.iter().copied().chain(["default"]))
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                out.push(Problem::new(&path, format!("`{kind}` is not a stage kind")).hint(format!(
                    "{hint}the kinds are {} (and `default` for the others)",
                    kinds.join(", ")
                )));
            } else if !(m.is_finite() && m >= MIN_STALL_MINUTES) {
                out.push(
                    Problem::new(&path, format!("{m} is not a limit in minutes of at least {MIN_STALL_MINUTES}"))
                        .hint(format!("e.g. `stall_minutes: {DEFAULT_STALL_MINUTES}` (the default), or `{{default: 30, train: 120}}`")),
                );
            }
        }
    }
}

/// What the Slurm executor asks of `sbatch`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Time limit of every job unless its stage kind sets one (Slurm's forms: `MM`, `HH:MM:SS`,
    /// `D-HH:MM:SS`, …).
    pub time: Option<String>,
    /// More `sbatch` arguments, for every job (e.g. `--constraint=a100`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Per stage kind (`train`, `evaluate`, …), and `default` for kinds not named.
    #[serde(default)]
    pub resources: BTreeMap<String, Resources>,
    /// Of the one job `--pilot` submits, which runs every stage inside its allocation.
    #[serde(default)]
    pub pilot: Resources,
    /// Seconds before its time limit that a job is told to stop (`--signal`): a training stage
    /// is requeued and resumes from its last epoch checkpoint.
    #[serde(default = "default_grace")]
    pub grace_seconds: u32,
    /// Stages with the same resources and dependencies go as one job array when there are at
    /// least two (`false`: one job each).
    #[serde(default = "yes")]
    pub arrays: bool,
}

impl Default for SlurmSpec {
    fn default() -> Self {
        serde_yaml::from_str("{}").expect("every field has a default")
    }
}

fn default_grace() -> u32 {
    120
}

fn yes() -> bool {
    true
}

/// What one job asks for; unset fields fall back to `default`, then to the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Nodes of the allocation (`--nodes`, one task on each): the pilot's only; it runs the local
    /// executor on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    pub cpus: Option<u32>,
    /// Memory per node, in Slurm's form (`8G`, `16000M`).
    pub mem: Option<String>,
    /// Generic resources (`gpu:1`, `gpu:a100:1`).
    pub gres: Option<String>,
    pub time: Option<String>,
    pub partition: Option<String>,
    /// More `sbatch` arguments for this kind of stage.
    #[serde(default)]
    pub sbatch_args: Vec<String>,
}

impl Resources {
    /// These fields, each unset one taken from `base`.
    pub fn or(&self, base: &Resources) -> Resources {
        Resources {
            nodes: self.nodes.or(base.nodes),
            cpus: self.cpus.or(base.cpus),
            mem: self.mem.clone().or_else(|| base.mem.clone()),
            gres: self.gres.clone().or_else(|| base.gres.clone()),
            time: self.time.clone().or_else(|| base.time.clone()),
            partition: self.partition.clone().or_else(|| base.partition.clone()),
            sbatch_args: base
                .sbatch_args
                .iter()
                .chain(&self.sbatch_args)
                .cloned()
                .collect(),
        }
    }
}

impl SlurmSpec {
    /// The resources of a stage of `kind`.
    pub fn resources_for(&self, kind: &str) -> Resources {
        let default = self.default_resources();
        match self.resources.get(kind) {
            Some(r) => r.or(&default),
            None => default,
        }
    }

    /// The resources of the one job `--pilot` submits: `pilot`, unset fields from `default`.
    pub fn pilot_resources(&self) -> Resources {
        self.pilot.or(&self.default_resources())
    }

    fn default_resources(&self) -> Resources {
        self.resources.get("default").cloned().unwrap_or_default()
    }
}

/// Slurm's time forms: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `UNLIMITED`.
pub fn valid_time(t: &str) -> bool {
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(num) && parts.iter().all(|p| num(p)) && parts.len() <= 3
}

/// Memory in Slurm's form: a whole number with an optional unit K, M, G or T.
pub fn valid_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && m.len() - digits.len() <= 1
}

/// Long options robarch sets on every job itself, or that would break how it follows jobs
/// (`--wait`, `--hold`, another cluster): the spec may not set them, nor a prefix of them
/// (sbatch takes unique prefixes).
const OWN_LONG: &[&str] = &[
    "--output",
    "--error",
    "--array",
    "--dependency",
    "--chdir",
    "--job-name",
    "--open-mode",
    "--parsable",
    "--signal",
    "--kill-on-invalid-dep",
    "--wait",
    "--hold",
    "--clusters",
];
/// Their short forms (the value may follow at once: `-o/path`).
const OWN_SHORT: &[&str] = &["-o", "-e", "-a", "-d", "-D", "-J", "-W", "-H", "-M"];

/// The first problem of a list of sbatch arguments: not an option, or one robarch sets.
fn bad_arg(args: &[String]) -> Option<(String, &'static str)> {
    for a in args {
        if !a.starts_with('-') || a == "-" || a == "--" {
            return Some((
                format!("`{a}` is not an sbatch option"),
                "write each as one option with its value, e.g. --constraint=a100",
            ));
        }
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        let own = if a.starts_with("--") {
            OWN_LONG
                .iter()
                .find(|o| name.len() >= 4 && o.starts_with(name))
                .copied()
        } else {
            OWN_SHORT.iter().find(|o| a.starts_with(*o)).copied()
        };
        if let Some(own) = own {
            return Some((
                format!("`{a}` sets `{own}`, which robarch sets on every job (logs, arrays, dependencies, requeue) or which would stop it following its jobs"),
                "remove it; per-kind resources go in executor.slurm.resources.<kind>",
            ));
        }
        if name == "--export" && !value.is_some_and(|v| v.starts_with("ALL")) {
            return Some((
                format!("`{a}`: the jobs need the environment they are submitted from (PATH, SLURM_CONF, ROBARCH_*)"),
                "write --export=ALL,NAME=value to add variables",
            ));
        }
    }
    None
}

fn check_resources(path: &[&str], r: &Resources, out: &mut Vec<Problem>) {
    fn at<'a>(path: &[&'a str], field: &'a str) -> Vec<&'a str> {
        let mut p = path.to_vec();
        p.push(field);
        p
    }
    let at = |field: &'static str| at(path, field);
    if r.cpus == Some(0) {
        out.push(Problem::new(&at("cpus"), "must be at least 1"));
    }
    if r.nodes == Some(0) {
        out.push(Problem::new(&at("nodes"), "must be at least 1"));
    }
    if let Some(m) = r.mem.as_deref().filter(|m| !valid_mem(m)) {
        out.push(
            Problem::new(&at("mem"), format!("`{m}` is not a memory size"))
                .hint("write a whole number with a unit, e.g. 16G or 8000M"),
        );
    }
    if let Some(t) = r.time.as_deref().filter(|t| !valid_time(t)) {
        out.push(
            Problem::new(&at("time"), format!("`{t}` is not a Slurm time limit"))
                .hint("write minutes (90), HH:MM:SS (12:00:00) or D-HH:MM:SS (2-00:00:00)"),
        );
    }
    if let Some((msg, hint)) = bad_arg(&r.sbatch_args) {
        out.push(Problem::new(&at("sbatch_args"), msg).hint(hint));
    }
}

/// Every problem of the block.
pub fn check(e: &ExecutorSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    e.stall_minutes.check(&mut out);
    let s = &e.slurm;
    if let Some(t) = s.time.as_deref().filter(|t| !valid_time(t)) {
        out.push(
            Problem::new(
                &["executor", "slurm", "time"],
                format!("`{t}` is not a Slurm time limit"),
            )
            .hint("write minutes (90), HH:MM:SS (12:00:00) or D-HH:MM:SS (2-00:00:00)"),
        );
    }
    if let Some((msg, hint)) = bad_arg(&s.sbatch_args) {
        out.push(Problem::new(&["executor", "slurm", "sbatch_args"], msg).hint(hint));
    }
    for (kind, r) in &s.resources {
        let kinds = stage_kinds();
        if kind != "default" && !kinds.contains(&kind.as_str()) {
            let hint = did_you_mean(kind, kinds.iter().copied().chain(["default"]))
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            out.push(
                Problem::new(
                    &["executor", "slurm", "resources", kind],
                    format!("`{kind}` is not a stage kind"),
                )
                .hint(format!(
                    "{hint}the kinds are {} (and `default` for the others)",
                    kinds.join(", ")
                )),
            );
        }
        check_resources(&["executor", "slurm", "resources", kind], r, &mut out);
        if r.nodes.is_some() {
            out.push(
                Problem::new(
                    &["executor", "slurm", "resources", kind, "nodes"],
                    "a stage runs on one node",
                )
                .hint("remove it; `nodes` belongs to executor.slurm.pilot, whose job runs stages on every node of its allocation"),
            );
        }
    }
    check_resources(&["executor", "slurm", "pilot"], &s.pilot, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_forms_of_time_and_memory() {
        for t in ["90", "12:00:00", "2-00:00:00", "1-12", "30:00", "UNLIMITED"] {
            assert!(valid_time(t), "{t}");
        }
        for t in ["", "1h", "12:00:00:00", "a-1", "-1"] {
            assert!(!valid_time(t), "{t}");
        }
        for m in ["16G", "8000M", "1024", "2t"] {
            assert!(valid_mem(m), "{m}");
        }
        for m in ["", "G", "16GB", "1.5G"] {
            assert!(!valid_mem(m), "{m}");
        }
    }

    #[test]
    fn a_kind_falls_back_to_default_and_adds_its_arguments() {
        let s: SlurmSpec = serde_yaml::from_str(
            "resources:\n  default: {cpus: 2, mem: 4G, sbatch_args: [--nice]}\n  train: {gres: 'gpu:1', cpus: 8}\n",
        )
        .unwrap();
        let t = s.resources_for("train");
        assert_eq!(t.cpus, Some(8));
        assert_eq!(t.mem.as_deref(), Some("4G"));
        assert_eq!(t.gres.as_deref(), Some("gpu:1"));
        assert_eq!(t.sbatch_args, ["--nice"]);
        assert_eq!(s.resources_for("evaluate").cpus, Some(2));
        let bad: ExecutorSpec = serde_yaml::from_str(
            "slurm:\n  resources:\n    trian: {cpus: 0, mem: 4GB, time: 1h}\n",
        )
        .unwrap();
        let p = check(&bad);
        let text: Vec<String> = p
            .iter()
            .map(|p| format!("{}: {} {:?}", p.path.join("."), p.message, p.hint))
            .collect();
        assert_eq!(p.len(), 4, "{text:#?}");
        assert!(text[0].contains("did you mean `train`"), "{text:#?}");
        let own: ExecutorSpec =
            serde_yaml::from_str("slurm:\n  sbatch_args: [--constraint=a100, --output=/elsewhere/x]\n")
                .unwrap();
        let p = check(&own);
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("sets `--output`, which robarch sets"), "{:?}", p[0]);
        for bad in ["-o/x/log", "--outp=/x", "-D/tmp", "--wait", "--export=NONE", "--hold", "a100"] {
            assert!(bad_arg(&[bad.to_string()]).is_some(), "{bad}");
        }
        for good in ["--constraint=a100", "--export=ALL,X=1", "--nice=10", "--exclusive", "-C", "--gpus-per-node=2"] {
            assert!(bad_arg(&[good.to_string()]).is_none(), "{good}");
        }
    }

    #[test]
    fn nodes_belong_to_the_pilot() {
        let e: ExecutorSpec = serde_yaml::from_str(
            "slurm:\n  resources:\n    default: {cpus: 2}\n  pilot: {nodes: 4, cpus: 8}\n",
        )
        .unwrap();
        assert!(check(&e).is_empty(), "{:?}", check(&e));
        assert_eq!(e.slurm.pilot_resources().nodes, Some(4));
        assert_eq!(e.slurm.resources_for("train").nodes, None);
        let bad: ExecutorSpec = serde_yaml::from_str(
            "slurm:\n  resources:\n    train: {nodes: 2}\n  pilot: {nodes: 0}\n",
        )
        .unwrap();
        let p: Vec<String> = check(&bad)
            .iter()
            .map(|p| format!("{}: {} {:?}", p.path.join("."), p.message, p.hint))
            .collect();
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p.iter().any(|p| p.starts_with("executor.slurm.resources.train.nodes: a stage runs on one node") && p.contains("executor.slurm.pilot")), "{p:#?}");
        assert!(p.iter().any(|p| p.starts_with("executor.slurm.pilot.nodes: must be at least 1")), "{p:#?}");
    }

    #[test]
    fn stall_limits_per_kind_fall_back_to_default() {
        let e: ExecutorSpec = serde_yaml::from_str("stall_minutes: {default: 2, train: 90}\n").unwrap();
        assert!(check(&e).is_empty());
        assert_eq!(e.stall_minutes.for_kind("train").as_secs(), 5400);
        assert_eq!(e.stall_minutes.for_kind("evaluate").as_secs(), 120);
        let one: ExecutorSpec = serde_yaml::from_str("stall_minutes: 0.5\n").unwrap();
        assert_eq!(one.stall_minutes.for_kind("report").as_secs(), 30);
        assert_eq!(ExecutorSpec::default().stall_minutes.for_kind("train").as_secs(), 1800);
        let bad: ExecutorSpec = serde_yaml::from_str("stall_minutes: {trian: 5, evaluate: 0}\n").unwrap();
        let p = check(&bad);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("`trian` is not a stage kind")), "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("at least 0.1")), "{p:?}");
    }
}
