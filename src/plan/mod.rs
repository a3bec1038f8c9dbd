//! The stage graph of a pipeline: matrix expansion of the spec into stages (petgraph DAG) and
//! content keys.
//!
//! A stage's key is blake3 over the canonical JSON of `{kind, version, params, inputs}`, where
//! `params` are the parsed, default-filled parameters (serde_json sorts object keys) and `inputs`
//! maps each input role to its stage's key. YAML formatting, key order, comments and `8/255` vs
//! `0.0313725…` therefore never change a key; any semantic change changes it and every key
//! downstream.
pub mod render;
pub mod stale;

use crate::attacks::{self, AttackConfig};
use crate::cache::manifest::StageRecord;
use crate::data;
use crate::models::{self, ModelIo};
use crate::spec::{self, Loaded, Problem};
use crate::stages::{self, Stage};
use crate::train::TrainParams;
use anyhow::{Context, Result};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct Node {
    /// Human-readable identity, e.g. `eval/digits/vit/pgd/fgsm/test`.
    pub id: String,
    pub stage: Box<dyn Stage>,
    /// Input role → key of the producing stage.
    pub inputs: BTreeMap<String, String>,
    pub key: String,
}

impl Node {
    pub fn record(&self) -> StageRecord {
        StageRecord {
            key: self.key.clone(),
            kind: self.stage.kind().into(),
            version: self.stage.version(),
            params: self.stage.params(),
            inputs: self.inputs.clone(),
        }
    }
}

pub struct Plan {
    pub name: String,
    pub device: String,
    /// Edges point from producer to consumer, labelled with the consumer's input role.
    pub graph: DiGraph<Node, String>,
    /// Topological order.
    pub order: Vec<NodeIndex>,
}

/// The content key of a stage.
pub fn stage_key(
    kind: &str,
    version: u32,
    params: &Value,
    inputs: &BTreeMap<String, String>,
) -> String {
    let canonical = json!({"kind": kind, "version": version, "params": params, "inputs": inputs});
    blake3::hash(canonical.to_string().as_bytes())
        .to_hex()
        .to_string()
}

fn io_of(d: &data::Resolved) -> ModelIo {
    ModelIo {
        in_channels: d.channels as i64,
        image_size: d.params.resolution as i64,
        num_classes: d.classes as i64,
    }
}

/// Names become parts of stage ids and file names, so keep them simple.
fn check_names(s: &spec::Spec, out: &mut Vec<Problem>) {
    let ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    };
    let sections: [(&str, Vec<&String>); 4] = [
        ("datasets", s.datasets.keys().collect()),
        ("models", s.models.keys().collect()),
        ("training", s.training.keys().collect()),
        ("evaluation.attacks", s.evaluation.attacks.keys().collect()),
    ];
    for (section, names) in sections {
        for n in names {
            if !ok(n) {
                let mut path: Vec<&str> = section.split('.').collect();
                path.push(n);
                out.push(
                    Problem::new(
                        &path,
                        "names may use only letters, digits, `_`, `.` and `-`",
                    )
                    .hint("rename the entry"),
                );
            }
        }
    }
}

/// The attack name of a curve point: `attack@ε` with ε in decimal (at most 6 places).
pub fn curve_name(attack: &str, eps: f64) -> String {
    let s = format!("{eps:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{attack}@{s}")
}

impl Plan {
    /// Expands a validated spec: datasets × models × training recipes → train stages; each
    /// trained model × attack × split → evaluation stages; analyses per trained model; one report.
    pub fn build(l: &Loaded) -> Result<Plan> {
        Self::build_with(l, &mut data::fingerprint::HashState::ephemeral())
    }

    /// [`Plan::build`] reusing remembered source-file hashes from `hashes`.
    pub fn build_with(l: &Loaded, hashes: &mut data::fingerprint::HashState) -> Result<Plan> {
        let s = &l.spec;
        let mut problems = Vec::new();
        check_names(s, &mut problems);
        let mut graph: DiGraph<Node, String> = DiGraph::new();
        let add = |g: &mut DiGraph<Node, String>,
                   id: String,
                   stage: Box<dyn Stage>,
                   inputs: Vec<(&str, NodeIndex)>| {
            let ix = g.add_node(Node {
                id,
                stage,
                inputs: BTreeMap::new(),
                key: String::new(),
            });
            for (role, from) in inputs {
                g.add_edge(from, ix, role.to_string());
            }
            ix
        };
        // Every attack, plus one entry per extra radius of its `curve` (named `attack@ε`).
        let mut attacks: Vec<(String, AttackConfig)> = Vec::new();
        // Validation has accepted the spec, so resolving cannot fail here; if it ever does, the
        // problem is reported (never a stage silently left out of the DAG).
        for (n, a) in &s.evaluation.attacks {
            let c = match AttackConfig::resolve(
                &attacks::kind_for(n, a),
                a,
                attacks::Use::Evaluation,
            ) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(spec::attack_problem(&["evaluation", "attacks", n], e));
                    continue;
                }
            };
            for e in a.curve.iter().flatten().map(|e| e.get()) {
                if e != c.eps() {
                    attacks.push((curve_name(n, e), c.with_eps(e)));
                }
            }
            attacks.push((n.clone(), c));
        }
        let (mut eval_labels, mut sparsity_labels, mut bounds_labels, mut report_inputs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The attack the adversarial bounds use when `analysis.bounds.attack` names one.
        let bounds_attack = s
            .analysis
            .bounds
            .as_ref()
            .and_then(|b| b.attack.as_ref())
            .and_then(|n| attacks.iter().find(|(a, _)| a == n))
            .and_then(|(_, c)| bounds_attack_of(c));
        for (dname, ds) in &s.datasets {
            let mut dr = match data::resolve(dname, ds) {
                Ok(dr) => dr,
                Err(ps) => {
                    problems.extend(ps);
                    continue;
                }
            };
            data::fingerprint_source(&mut dr, hashes).with_context(|| {
                format!(
                    "{}: datasets.{dname}: hashing the source files",
                    l.path.display()
                )
            })?;
            let io = io_of(&dr);
            let prep = add(
                &mut graph,
                format!("prepare/{dname}"),
                Box::new(stages::prepare::Prepare {
                    dataset: dr.params,
                    root: dr.root,
                    seed: s.seed,
                }),
                vec![],
            );
            for (mname, m) in &s.models {
                let mp = match models::resolve(mname, m) {
                    Ok(mp) => mp,
                    Err(ps) => {
                        problems.extend(ps);
                        continue;
                    }
                };
                let arch = models::find(&mp.arch).expect("resolved architectures exist");
                if let Err(e) = (arch.fits)(&mp.config, &io) {
                    problems.push(Problem::new(
                        &["models", mname],
                        format!("does not fit dataset `{dname}`: {e}"),
                    ));
                    continue;
                }
                // Trained (or imported) models of this (dataset, model): (training name, stage).
                // Trained (or imported) models: (training name, stage, training attack).
                let mut trained: Vec<(String, NodeIndex, Option<AttackConfig>)> = Vec::new();
                if mp.arch == models::torchscript::TORCHSCRIPT.name {
                    if s.evaluation.checkpoint == spec::Checkpoint::Best {
                        problems.push(
                            Problem::new(
                                &["evaluation", "checkpoint"],
                                format!("`best` does not apply to the imported model `{mname}`: it has one set of weights"),
                            )
                            .hint("use `checkpoint: last`, or put imported models in their own pipeline"),
                        );
                    }
                    match stages::import::Import::plan(&l.path, mname, &mp, io, hashes) {
                        Ok(st) => {
                            let ix = add(
                                &mut graph,
                                format!("import/{dname}/{mname}"),
                                Box::new(st),
                                vec![("data", prep)],
                            );
                            trained.push((stages::import::TRAINING_LABEL.to_string(), ix, None));
                        }
                        Err(p) => problems.push(p),
                    }
                } else {
                    for tname in s.training.keys() {
                        let t = match s.training_for(tname, mname, arch.kind) {
                            Ok(t) => t,
                            Err(p) => {
                                problems.push(p);
                                continue;
                            }
                        };
                        let t = &t;
                        let inner = t
                            .attack
                            .as_ref()
                            .filter(|_| t.method != spec::TrainMethod::Standard);
                        let attack = match inner.map(|a| crate::train::inner_attack(t.method, a)) {
                            None => None,
                            Some(Ok(c)) => Some(c),
                            Some(Err(e)) => {
                                problems
                                    .push(spec::attack_problem(&["training", tname, "attack"], e));
                                continue;
                            }
                        };
                        let monitor = match monitor(tname, t, attack.as_ref()) {
                            Ok(m) => m,
                            Err(p) => {
                                problems.push(p);
                                continue;
                            }
                        };
                        let mut augment = Vec::new();
                        for a in &t.augment {
                            match crate::augment::Augment::from_yaml(a) {
                                Ok(a) => augment.push(a),
                                Err(e) => {
                                    problems.push(Problem::new(&["training", tname, "augment"], e))
                                }
                            }
                        }
                        let tp = TrainParams {
                            model: mp.clone(),
                            io,
                            method: t.method,
                            attack: attack.clone(),
                            attack_mode: t.attack_mode,
                            epochs: t.epochs,
                            batch_size: t.batch_size,
                            optimizer: t.optimizer.clone(),
                            schedule: t.schedule.clone(),
                            augment,
                            seed: s.seed,
                            beta: (t.method == spec::TrainMethod::Trades)
                                .then(|| t.beta.map_or(crate::train::TRADES_BETA, |b| b.get())),
                            label_smoothing: t
                                .label_smoothing
                                .map(|v| v.get())
                                .filter(|&v| v > 0.0),
                            grad_clip: t.grad_clip.map(|v| v.get()),
                            monitor,
                            amp: t.amp,
                            channels_last: t.channels_last,
                        };
                        let ix = add(
                            &mut graph,
                            format!("train/{dname}/{mname}/{tname}"),
                            Box::new(stages::train::Train { params: tp }),
                            vec![("data", prep)],
                        );
                        trained.push((tname.clone(), ix, attack));
                    }
                }
                for (tname, tr, train_attack) in trained {
                    let base = format!("{dname}/{mname}/{tname}");
                    let label = |role: String, attack: Option<&str>, split: Option<String>| {
                        stages::inputs::Labels {
                            role,
                            dataset: dname.clone(),
                            model: mname.clone(),
                            training: tname.clone(),
                            attack: attack.map(String::from),
                            split,
                        }
                    };
                    if let Some(sp) = &s.analysis.sparsity {
                        let id = format!("sparsity/{base}");
                        let st = stages::sparsity::Sparsity {
                            measures: stages::sparsity::Measures,
                            thresholds: crate::analysis::sparsity::Thresholds {
                                absolute: sp.absolute.iter().map(|t| t.get()).collect(),
                                relative: sp.relative.iter().map(|t| t.get()).collect(),
                            },
                            checkpoint: s.evaluation.checkpoint,
                        };
                        let ix = add(&mut graph, id.clone(), Box::new(st), vec![("model", tr)]);
                        sparsity_labels.push(label(id.clone(), None, None));
                        report_inputs.push((id, ix));
                    }
                    if let Some(b) = &s.analysis.bounds {
                        let id = format!("bounds/{base}");
                        let st = stages::bounds::Bounds {
                            conv_grid: b.conv_grid,
                            iterations: b.iterations,
                            attack: bounds_attack
                                .or_else(|| train_attack.as_ref().and_then(bounds_attack_of)),
                            checkpoint: s.evaluation.checkpoint,
                        };
                        let ix = add(
                            &mut graph,
                            id.clone(),
                            Box::new(st),
                            vec![("model", tr), ("data", prep)],
                        );
                        bounds_labels.push(label(id.clone(), None, None));
                        report_inputs.push((id, ix));
                    }
                    for (aname, ac) in &attacks {
                        for split in &s.evaluation.splits {
                            let id = format!("eval/{base}/{aname}/{split}");
                            let st = stages::evaluate::Evaluate {
                                attack: ac.clone(),
                                split: *split,
                                limit: s.evaluation.limit,
                                batch_size: s.evaluation.batch_size,
                                seed: s.seed,
                                checkpoint: s.evaluation.checkpoint,
                            };
                            let ix = add(
                                &mut graph,
                                id.clone(),
                                Box::new(st),
                                vec![("model", tr), ("data", prep)],
                            );
                            eval_labels.push(label(
                                id.clone(),
                                Some(aname),
                                Some(split.to_string()),
                            ));
                            report_inputs.push((id, ix));
                        }
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(spec::located(&l.path, &l.source, &problems).into());
        }
        if let Some(c) = &s.analysis.correlation {
            let st = stages::correlation::Correlation {
                bootstrap: c.bootstrap,
                confidence: c.confidence.get(),
                seed: s.seed,
                groups: s.evaluation.groups.clone(),
                gaps: correlation_gaps(s, c, &attacks),
                evals: eval_labels.clone(),
                sparsity: sparsity_labels.clone(),
                bounds: bounds_labels.clone(),
            };
            let inputs: Vec<(&str, NodeIndex)> = report_inputs
                .iter()
                .map(|(id, ix)| (id.as_str(), *ix))
                .collect();
            let ix = add(&mut graph, "correlation".into(), Box::new(st), inputs);
            report_inputs.push(("correlation".into(), ix));
        }
        let report = stages::report::Report {
            spec: s.report.clone(),
            groups: s.evaluation.groups.clone(),
            evals: eval_labels,
            sparsity: sparsity_labels,
            bounds: bounds_labels,
            correlation: s.analysis.correlation.is_some(),
        };
        let inputs: Vec<(&str, NodeIndex)> = report_inputs
            .iter()
            .map(|(id, ix)| (id.as_str(), *ix))
            .collect();
        add(&mut graph, "report".into(), Box::new(report), inputs);
        let order = petgraph::algo::toposort(&graph, None)
            .map_err(|_| anyhow::anyhow!("the stage graph has a cycle"))?;
        for &ix in &order {
            let inputs: BTreeMap<String, String> = graph
                .edges_directed(ix, petgraph::Direction::Incoming)
                .map(|e| {
                    (
                        e.weight().clone(),
                        graph[petgraph::visit::EdgeRef::source(&e)].key.clone(),
                    )
                })
                .collect();
            let n = &graph[ix];
            let key = stage_key(
                n.stage.kind(),
                n.stage.version(),
                &n.stage.params(),
                &inputs,
            );
            let n = &mut graph[ix];
            n.inputs = inputs;
            n.key = key;
        }
        Ok(Plan {
            name: s.name.clone(),
            device: s.device.clone(),
            graph,
            order,
        })
    }

    pub fn find(&self, id: &str) -> Option<NodeIndex> {
        self.order
            .iter()
            .copied()
            .find(|&ix| self.graph[ix].id == id)
    }

    /// Producers of `ix`'s inputs.
    pub fn deps(&self, ix: NodeIndex) -> Vec<NodeIndex> {
        self.graph
            .neighbors_directed(ix, petgraph::Direction::Incoming)
            .collect()
    }

    /// The id of the stage producing input `key` of `ix`.
    pub fn producer(&self, ix: NodeIndex, key: &str) -> Option<&str> {
        self.deps(ix)
            .into_iter()
            .find(|&d| self.graph[d].key == key)
            .map(|d| self.graph[d].id.as_str())
    }

    /// Everything downstream of `ix`.
    pub fn descendants(&self, ix: NodeIndex) -> Vec<NodeIndex> {
        let mut dfs = petgraph::visit::Dfs::new(&self.graph, ix);
        let mut out = Vec::new();
        while let Some(n) = dfs.next(&self.graph) {
            if n != ix {
                out.push(n);
            }
        }
        out
    }

    pub fn report(&self) -> Option<NodeIndex> {
        self.find("report")
    }
}

/// The (norm, ε) of an attack for the adversarial bounds; `None` for clean evaluation.
fn bounds_attack_of(c: &AttackConfig) -> Option<stages::bounds::Attack> {
    c.norm()
        .filter(|_| c.eps() > 0.0)
        .map(|norm| stages::bounds::Attack { norm, eps: c.eps() })
}

/// Per training entry, the attacks (and groups) of the correlation's gaps: `gap` (train − test
/// robust accuracy) defaults to the evaluation attacks of the training attack's norm and ε (every
/// attack for standard training) and the groups of only such attacks; `unseen` (test clean −
/// robust) to the attacks of another norm and the groups with such an attack.
fn correlation_gaps(
    s: &spec::Spec,
    c: &spec::analysis::CorrelationSpec,
    attacks: &[(String, AttackConfig)],
) -> BTreeMap<String, stages::correlation::Gaps> {
    let mut training: Vec<(String, Option<AttackConfig>)> = s
        .training
        .iter()
        .map(|(name, t)| {
            let a = t
                .attack
                .as_ref()
                .filter(|_| t.method != spec::TrainMethod::Standard)
                // An attack that does not resolve has already failed the plan (train stages).
                .and_then(|a| crate::train::inner_attack(t.method, a).ok());
            (name.clone(), a)
        })
        .collect();
    // Imported models have no training attack.
    training.push((stages::import::TRAINING_LABEL.to_string(), None));
    let real: Vec<&(String, AttackConfig)> = attacks
        .iter()
        .filter(|(n, a)| !n.contains('@') && a.norm().is_some() && a.eps() > 0.0)
        .collect();
    training
        .into_iter()
        .map(|(name, ta)| {
            let same = |a: &AttackConfig| {
                ta.as_ref().is_some_and(|t| {
                    t.norm() == a.norm() && (t.eps() - a.eps()).abs() <= 1e-9 * t.eps().max(1.0)
                })
            };
            let config = |n: &str| real.iter().find(|(a, _)| a == n).map(|(_, c)| c);
            // A group belongs to the training threat model when every member does.
            let group_same = |members: &[String]| {
                members
                    .iter()
                    .all(|m| config(m).is_some_and(|c| ta.is_none() || same(c)))
            };
            let group_other_norm = |members: &[String]| {
                members.iter().any(|m| {
                    config(m).is_some_and(|c| ta.as_ref().is_some_and(|t| t.norm() != c.norm()))
                })
            };
            let gap = c.gap.clone().unwrap_or_else(|| {
                let mut g: Vec<String> = real
                    .iter()
                    .filter(|(_, a)| ta.is_none() || same(a))
                    .map(|(n, _)| n.clone())
                    .collect();
                g.extend(
                    s.evaluation
                        .groups
                        .iter()
                        .filter(|(_, m)| group_same(m))
                        .map(|(n, _)| n.clone()),
                );
                g
            });
            let unseen = c.unseen.clone().unwrap_or_else(|| {
                let mut u: Vec<String> = real
                    .iter()
                    .filter(|(_, a)| ta.as_ref().is_some_and(|t| t.norm() != a.norm()))
                    .map(|(n, _)| n.clone())
                    .collect();
                u.extend(
                    s.evaluation
                        .groups
                        .iter()
                        .filter(|(_, m)| group_other_norm(m))
                        .map(|(n, _)| n.clone()),
                );
                u
            });
            (name, stages::correlation::Gaps { gap, unseen })
        })
        .collect()
}

/// The per-epoch monitor of a training entry: on by default (256 points per split, the training
/// attack, best by test robust accuracy or, without an attack, test clean accuracy); `n: 0` is off.
fn monitor(
    tname: &str,
    t: &spec::TrainingSpec,
    train_attack: Option<&AttackConfig>,
) -> std::result::Result<Option<crate::train::Monitor>, Problem> {
    let m = t.monitor.as_ref();
    let n = m.map_or(spec::default_monitor_n(), |m| m.n);
    if n == 0 {
        return Ok(None);
    }
    let attack = match m.and_then(|m| m.attack.as_ref()) {
        Some(a) => Some(
            AttackConfig::resolve(&attacks::kind_for("pgd", a), a, attacks::Use::Evaluation)
                .map_err(|e| spec::attack_problem(&["training", tname, "monitor", "attack"], e))?,
        ),
        None => train_attack.cloned(),
    };
    let best_by = m.and_then(|m| m.best_by.clone()).unwrap_or_else(|| {
        if attack.is_some() {
            "test_robust_accuracy"
        } else {
            "test_clean_accuracy"
        }
        .to_string()
    });
    Ok(Some(crate::train::Monitor { n, attack, best_by }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const A: &str = "name: t\nseed: 1\ndatasets:\n  d: {source: synthetic, resolution: 8, synthetic: {classes: 3, train_size: 30, test_size: 9}}\nmodels:\n  resnet18: {preset: tiny}\ntraining:\n  at:\n    attack: {norm: linf, eps: 8/255, steps: 2}\n    epochs: 1\n    optimizer: {name: adamw, lr: 1e-3}\nevaluation:\n  attacks:\n    clean: {}\n    fgsm: {eps: 8/255}\n";
    // The same pipeline reformatted: reordered keys, comments, flow/block style, 8/255 as decimal.
    const B: &str = "# comment\nname: t\nevaluation:\n  attacks:\n    fgsm:\n      eps: 0.03137254901960784   # same f64\n    clean: {}\ntraining:\n  at:\n    optimizer: {lr: 0.001, name: adamw}\n    epochs: 1\n    attack:\n      steps: 2\n      eps: 0.03137254901960784\n      norm: linf\nmodels:\n  resnet18:\n    preset: tiny\ndatasets:\n  d:\n    synthetic: {test_size: 9, train_size: 30, classes: 3}\n    resolution: 8\n    source: synthetic\nseed: 1\n";

    fn keys(src: &str) -> BTreeMap<String, String> {
        let spec = spec::parse(Path::new("x.yaml"), src).unwrap();
        assert!(spec::validate(&spec).is_empty());
        let l = Loaded {
            spec,
            path: "x.yaml".into(),
            source: src.into(),
        };
        let p = Plan::build(&l).unwrap();
        p.order
            .iter()
            .map(|&ix| (p.graph[ix].id.clone(), p.graph[ix].key.clone()))
            .collect()
    }

    /// Planning an unvalidated spec: whatever resolving rejects is a located error, never a
    /// stage quietly missing from the DAG.
    #[test]
    fn what_planning_rejects_fails_the_plan_instead_of_dropping_stages() {
        for (bad, field) in [
            ("fgsm: {eps: 8/255}", "fgsm: {eps: 8/255, steps: 3}"),
            ("source: synthetic,", "source: synthetc,"),
            (
                "epochs: 1\n",
                "epochs: 1\n    augment: [flip_upside_down]\n",
            ),
            (
                "steps: 2}\n",
                "steps: 2}\n    monitor: {attack: {eps: 8/255, queries: 10}}\n",
            ),
        ] {
            let src = A.replace(bad, field);
            assert_ne!(src, A, "{bad}");
            let l = Loaded {
                spec: spec::parse(Path::new("x.yaml"), &src).unwrap(),
                path: "x.yaml".into(),
                source: src,
            };
            let err = Plan::build(&l).err().map(|e| format!("{e:#}"));
            assert!(err.is_some(), "{field}: planned without an error");
        }
    }

    #[test]
    fn keys_ignore_formatting_order_comments_and_fraction_syntax() {
        let (a, b) = (keys(A), keys(B));
        assert_eq!(a.len(), 1 + 1 + 2 * 2 + 1);
        assert_eq!(a, b);
    }

    #[test]
    fn changing_eps_changes_only_that_attack_and_downstream() {
        let a = keys(A);
        let c = keys(&A.replace("fgsm: {eps: 8/255}", "fgsm: {eps: 16/255}"));
        let changed: Vec<&String> = a.keys().filter(|k| a[*k] != c[*k]).collect();
        assert_eq!(
            changed,
            [
                "eval/d/resnet18/at/fgsm/test",
                "eval/d/resnet18/at/fgsm/train",
                "report"
            ]
        );
    }
}
