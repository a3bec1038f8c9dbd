//! The stage graph of a pipeline: matrix expansion of the spec into stages (petgraph DAG) and
//! content keys.
//!
//! A stage's key is blake3 over the canonical JSON of `{kind, version, params, inputs}`, where
//! `params` are the parsed, default-filled parameters (in the stage struct's field order: serde_json
//! keeps insertion order in this build) and `inputs`
//! maps each input role to its stage's key. YAML formatting, key order, comments and `8/255` vs
//! `0.0313725…` therefore never change a key; any semantic change changes it and every key
//! downstream.
pub mod cost;
pub mod render;
pub mod shards;
pub mod stale;

use crate::analysis;
use crate::attacks::verdict::EvalAttack;
use crate::attacks::AttackConfig;
use crate::cache::manifest::StageRecord;
use crate::data;
use crate::models;
use crate::spec::{self, Loaded};
use crate::stages::{self, Stage};
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
    /// How CPU kernels are chosen (no stage key depends on it).
    pub numerics: crate::vocab::Numerics,
    /// The spec's `executor:` block (no stage key depends on it).
    pub executor: crate::spec::executor::ExecutorSpec,
    /// Edges point from producer to consumer, labelled with the consumer's input role.
    pub graph: DiGraph<Node, String>,
    /// Topological order.
    pub order: Vec<NodeIndex>,
    /// Prepare stages (by id) of downloadable datasets not fetched yet, with what to run: the
    /// plan can be shown (their keys and everything downstream are placeholders), not run.
    pub absent: BTreeMap<String, String>,
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

/// The fuzz target's body (`fuzz/`): `text` as a pipeline file through parsing, checking,
/// resolution, planning and the DAG renderings. Errors are expected; a panic is a bug.
pub fn fuzz_one(text: &str) {
    let path = std::path::Path::new("fuzz.yaml");
    if let Ok(loaded) = crate::spec::load_str(path, text.to_string()) {
        // Planning hashes file-backed datasets (those with a root directory) and imported models;
        // a fuzzer's `path: /` would read the host's files, so only specs without them are planned.
        let reads_files = loaded.resolved.datasets.values().any(|d| d.root.is_some())
            || loaded
                .resolved
                .models
                .values()
                .any(|m| m.imported() || m.weights.is_some());
        if reads_files {
            return;
        }
        if let Ok(plan) = Plan::build(&loaded) {
            let _ = render::text(&plan);
            let _ = render::dot(&plan);
            let _ = render::mermaid(&plan);
        }
    }
}

/// Loads, validates and expands the pipeline at `path`. Source-file hashes are remembered under
/// the cache directory (`state/file-hashes.json`) so unchanged datasets are not re-read on every
/// command; `remember: false` (a worker) only reads them.
pub fn load(path: &std::path::Path, cache: &std::path::Path, remember: bool) -> Result<Plan> {
    let loaded = spec::load(path)?;
    let mut hashes =
        data::fingerprint::HashState::open(cache.join("state").join("file-hashes.json"));
    let plan = Plan::build_with(&loaded, &mut hashes)?;
    if remember {
        // Not through a link planted at `state/` (the cache's own directories are refused).
        let saved = crate::cache::links::check_layout(cache)
            .map_err(|e| e.to_string())
            .and_then(|()| hashes.save().map_err(|e| e.to_string()));
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not remember source-file hashes");
        }
    }
    Ok(plan)
}

impl Plan {
    /// Expands a resolved spec (`Loaded::resolved`): datasets × models × training recipes → train stages; each
    /// trained model × attack × split → evaluation stages; analyses per trained model; one report.
    pub fn build(l: &Loaded) -> Result<Plan> {
        Self::build_with(l, &mut data::fingerprint::HashState::ephemeral())
    }

    /// [`Plan::build`] reusing remembered source-file hashes from `hashes`.
    pub fn build_with(l: &Loaded, hashes: &mut data::fingerprint::HashState) -> Result<Plan> {
        let mut b = Builder::new(l);
        for (dname, dr) in &l.resolved.datasets {
            b.dataset(dname, dr, hashes)?;
        }
        if !b.problems.is_empty() {
            return Err(spec::located(&l.path, &l.source, &b.problems).into());
        }
        b.finish()
    }

    /// Fails when a dataset the plan reads is not there yet (the plan can be shown, not run).
    pub fn check_data(&self) -> Result<()> {
        if self.absent.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .absent
            .iter()
            .map(|(id, why)| format!("  {id}: {why}"))
            .collect();
        anyhow::bail!(
            "{} cannot run before its data is there:\n{}",
            self.name,
            lines.join("\n")
        )
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

/// A trained (or imported) model: its training name, its stage, its training attack, and its
/// chain's seed where `seeds:` repeats the training.
struct Trained {
    name: String,
    ix: NodeIndex,
    attack: Option<AttackConfig>,
    seed: Option<u64>,
}

/// The stage graph as it is built: stages in the order they are added (the topological order
/// follows it), and what the correlation and the report will read.
struct Builder<'a> {
    l: &'a Loaded,
    graph: DiGraph<Node, String>,
    eval_labels: Vec<stages::inputs::Labels>,
    /// Per-model analysis → its stages' labels.
    per_model: stages::inputs::PerModel,
    history_labels: Vec<stages::inputs::Labels>,
    /// (stage id, node) of every input of the report but the histories.
    report_inputs: Vec<(String, NodeIndex)>,
    history_inputs: Vec<(String, NodeIndex)>,
    /// Resolving the spec checked everything; what can still fail here reads files (hashing
    /// sources, loading an imported model), and fails the plan with a located problem.
    problems: Vec<spec::Problem>,
    absent: BTreeMap<String, String>,
}

impl<'a> Builder<'a> {
    fn new(l: &'a Loaded) -> Self {
        Builder {
            l,
            graph: DiGraph::new(),
            eval_labels: Vec::new(),
            // The analyses the correlation and report keys have always listed are there even
            // when not run (keys unchanged).
            per_model: stages::inputs::PerModel::listing(
                analysis::REGISTRY
                    .iter()
                    .filter(|a| a.always_listed || l.spec.analysis.get(a.name).is_some())
                    .map(|a| a.name.to_string()),
            ),
            history_labels: Vec::new(),
            report_inputs: Vec::new(),
            history_inputs: Vec::new(),
            problems: Vec::new(),
            absent: BTreeMap::new(),
        }
    }

    fn add(&mut self, id: String, stage: Box<dyn Stage>, inputs: Vec<(&str, NodeIndex)>) -> NodeIndex {
        let ix = self.graph.add_node(Node {
            id,
            stage,
            inputs: BTreeMap::new(),
            key: String::new(),
        });
        for (role, from) in inputs {
            self.graph.add_edge(from, ix, role.to_string());
        }
        ix
    }

    /// A dataset's preparation, then every model trained (or imported) on it and what follows.
    fn dataset(
        &mut self,
        dname: &str,
        dr: &data::Resolved,
        hashes: &mut data::fingerprint::HashState,
    ) -> Result<()> {
        let l = self.l;
        let mut dr = dr.clone();
        if let Some(p) = &dr.absent {
            let located = spec::located(&l.path, &l.source, std::slice::from_ref(p));
            self.absent
                .insert(format!("prepare/{dname}"), located.lines.join("; "));
        }
        data::fingerprint_source(&mut dr, hashes).with_context(|| {
            format!(
                "{}: datasets.{dname}: hashing the source files",
                l.path.display()
            )
        })?;
        let io = spec::resolved::io_of(&dr);
        let prep = self.add(
            format!("prepare/{dname}"),
            Box::new(stages::prepare::Prepare::new(dr, l.spec.seed)),
            vec![],
        );
        for (mname, mp) in &l.resolved.models {
            for t in self.trained(dname, mname, mp, io, prep, hashes) {
                self.downstream(dname, mname, &t, prep);
            }
        }
        Ok(())
    }

    /// The model's import stage, or its training stages (one per training entry and chain).
    fn trained(
        &mut self,
        dname: &str,
        mname: &str,
        mp: &models::ModelParams,
        io: models::ModelIo,
        prep: NodeIndex,
        hashes: &mut data::fingerprint::HashState,
    ) -> Vec<Trained> {
        let mut trained = Vec::new();
        // An imported model comes into the cache first; it is evaluated as it is, or is the
        // initial network of its training stages.
        let mut init = None;
        let mut mp = mp.clone();
        match self.outside(dname, mname, &mp, io, prep, hashes) {
            Err(p) => {
                self.problems.push(p);
                return trained;
            }
            Ok(None) => {}
            Ok(Some((ix, _))) if !mp.trains() => {
                trained.push(Trained {
                    name: stages::import::TRAINING_LABEL.to_string(),
                    ix,
                    attack: None,
                    seed: None,
                });
                return trained;
            }
            Ok(Some((ix, canonical))) => {
                init = Some(ix);
                mp = canonical;
            }
        }
        let (s, r) = (&self.l.spec, &self.l.resolved);
        for (tname, seed) in s
            .training
            .keys()
            .flat_map(|t| s.chains().into_iter().map(move |c| (t, c)))
        {
            let rt = &r.training[&(mname.to_string(), tname.clone())];
            let st = stages::train::Train::new(mp.clone(), io, rt, seed.unwrap_or(s.seed));
            let id = format!("train/{dname}/{mname}/{tname}{}", chain_suffix(seed));
            let mut inputs = vec![("data", prep)];
            inputs.extend(init.map(|ix| ("init", ix)));
            let ix = self.add(id, Box::new(st), inputs);
            trained.push(Trained {
                name: tname.clone(),
                ix,
                attack: rt.attack.clone(),
                seed,
            });
        }
        trained
    }

    /// The stage that brings a model from outside the cache: `load` for a native model with
    /// `weights:`, `import` (after `script` for a timm model) for a TorchScript or timm one;
    /// `None` for a native model trained from scratch. With it, the model's canonical params (the
    /// file's name and hash in place of its path).
    fn outside(
        &mut self,
        dname: &str,
        mname: &str,
        mp: &models::ModelParams,
        io: models::ModelIo,
        prep: NodeIndex,
        hashes: &mut data::fingerprint::HashState,
    ) -> Result<Option<(NodeIndex, models::ModelParams)>, spec::Problem> {
        if mp.weights.is_some() {
            let st = stages::load::Load::plan(&self.l.path, mname, mp, io, hashes)?;
            let canonical = st.model.clone();
            let ix = self.add(format!("load/{dname}/{mname}"), Box::new(st), vec![("data", prep)]);
            return Ok(Some((ix, canonical)));
        }
        if !mp.imported() {
            return Ok(None);
        }
        let st = stages::import::Import::plan(&self.l.path, mname, mp, io, hashes)?;
        let canonical = st.model.clone();
        let mut inputs = vec![("data", prep)];
        if mp.arch == models::timm::TIMM.name {
            let script = stages::script::Script::new(mname, mp, io, self.l.spec.seed);
            let ix = self.add(format!("script/{dname}/{mname}"), Box::new(script), vec![]);
            inputs.push(("script", ix));
        }
        let ix = self.add(format!("import/{dname}/{mname}"), Box::new(st), inputs);
        Ok(Some((ix, canonical)))
    }

    /// What follows a trained model: its history (the report's), every per-model analysis,
    /// and every evaluation.
    fn downstream(&mut self, dname: &str, mname: &str, t: &Trained, prep: NodeIndex) {
        let s = &self.l.spec;
        let base = format!("{dname}/{mname}/{}{}", t.name, chain_suffix(t.seed));
        let label = |role: String, attack: Option<&EvalAttack>, split: Option<String>| {
            stages::inputs::Labels {
                role,
                dataset: dname.to_string(),
                model: mname.to_string(),
                training: t.name.clone(),
                attack: attack.map(EvalAttack::id),
                split,
                seed: t.seed,
                curve: attack.and_then(EvalAttack::curve),
            }
        };
        if self.graph[t.ix].stage.kind() == "train" {
            // The report's only: the correlation reads no histories.
            let id = format!("train/{base}");
            self.history_labels.push(label(id.clone(), None, None));
            self.history_inputs.push((id, t.ix));
        }
        let attacks = &self.l.resolved.attacks;
        let eval_seed = s.evaluation.seed.or(t.seed).unwrap_or(s.seed);
        for a in analysis::REGISTRY {
            let Some(settings) = s.analysis.get(a.name) else {
                continue;
            };
            let id = format!("{}/{base}", a.name);
            let named = a
                .attack(settings)
                .and_then(|n| attacks.iter().find(|e| e.curve_eps.is_none() && e.name == n))
                .map(|e| &e.config);
            let cx = analysis::PlanContext {
                checkpoint: s.evaluation.checkpoint,
                named,
                training: t.attack.as_ref(),
                seed: eval_seed,
            };
            let st = stages::analyse::Analyse::new(a, a.params(settings, &cx));
            let mut inputs = vec![("model", t.ix)];
            if a.needs_data {
                inputs.push(("data", prep));
            }
            let ix = self.add(id.clone(), Box::new(st), inputs);
            self.per_model.push(a.name, label(id.clone(), None, None));
            self.report_inputs.push((id, ix));
        }
        for ea in attacks {
            let aname = ea.id();
            // A curve point takes its attack's `evaluation.only`.
            let only = s.evaluation.only.get(&ea.name);
            for split in &s.evaluation.splits {
                if only
                    .and_then(|o| o.splits.as_ref())
                    .is_some_and(|o| !o.contains(split))
                {
                    continue;
                }
                let id = format!("eval/{base}/{aname}/{split}");
                let limit = only.and_then(|o| o.limit).or(s.evaluation.limit);
                let st = stages::evaluate::Evaluate::new(
                    ea.config.clone(),
                    *split,
                    limit,
                    s.evaluation.batch_size,
                    eval_seed,
                    s.evaluation.checkpoint,
                );
                let size = self.graph[prep].stage.images().map(|z| z.of(*split));
                let shard = only.and_then(|o| o.shard).or(s.evaluation.shard);
                let ranges = shard.map(|k| shards::ranges(limit, size, k));
                let ix = match ranges {
                    Some(ranges) if ranges.len() > 1 => {
                        let mut inputs = Vec::new();
                        for &(lo, hi) in &ranges {
                            let sid = shards::id(&id, lo, hi);
                            let part = Box::new(st.clone().shard(lo, hi));
                            inputs.push(self.add(sid, part, vec![("model", t.ix), ("data", prep)]));
                        }
                        let roles: Vec<String> =
                            (0..inputs.len()).map(stages::merge::shard_role).collect();
                        let merge = stages::merge::Merge {
                            attack: ea.config.clone(),
                            split: *split,
                            shards: inputs.len(),
                        };
                        let edges = roles.iter().map(String::as_str).zip(inputs).collect();
                        self.add(id.clone(), Box::new(merge), edges)
                    }
                    _ => self.add(id.clone(), Box::new(st), vec![("model", t.ix), ("data", prep)]),
                };
                self.eval_labels
                    .push(label(id.clone(), Some(ea), Some(split.to_string())));
                self.report_inputs.push((id, ix));
            }
        }
    }

    /// The correlation and the report over everything added, then every stage's key.
    fn finish(mut self) -> Result<Plan> {
        let (s, r) = (&self.l.spec, &self.l.resolved);
        if let Some(c) = &s.analysis.correlation {
            let st = stages::correlation::Correlation::new(
                c,
                s.seed,
                s.evaluation.groups.clone(),
                correlation_gaps(s, r, Some(c)),
                self.eval_labels.clone(),
                self.per_model.clone(),
            );
            let inputs: Vec<(String, NodeIndex)> = self.report_inputs.clone();
            let inputs = inputs.iter().map(|(id, ix)| (id.as_str(), *ix)).collect();
            let ix = self.add("correlation".into(), Box::new(st), inputs);
            self.report_inputs.push(("correlation".into(), ix));
        }
        let kinds = r
            .models
            .iter()
            .map(|(name, mp)| {
                let kind = models::find(&mp.arch).map_or("external", |a| a.kind.as_str());
                (name.clone(), kind.to_string())
            })
            .collect();
        let report = stages::report::Report::new(
            s.report.clone(),
            stages::report::Parts {
                groups: s.evaluation.groups.clone(),
                evals: std::mem::take(&mut self.eval_labels),
                per_model: std::mem::take(&mut self.per_model),
                histories: std::mem::take(&mut self.history_labels),
                correlation: s.analysis.correlation.is_some(),
                kinds,
                gaps: correlation_gaps(s, r, s.analysis.correlation.as_ref()),
                pipeline: s.name.clone(),
                attack_order: if s.attack_order.is_empty() {
                    s.evaluation.attacks.keys().cloned().collect()
                } else {
                    s.attack_order.clone()
                },
            },
        );
        let inputs: Vec<(String, NodeIndex)> = self
            .report_inputs
            .iter()
            .chain(&self.history_inputs)
            .cloned()
            .collect();
        let inputs = inputs.iter().map(|(id, ix)| (id.as_str(), *ix)).collect();
        self.add("report".into(), Box::new(report), inputs);
        let mut graph = self.graph;
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
            let key = stage_key(n.stage.kind(), n.stage.version(), &n.stage.params(), &inputs);
            let n = &mut graph[ix];
            n.inputs = inputs;
            n.key = key;
        }
        Ok(Plan {
            name: s.name.clone(),
            device: s.device.clone(),
            numerics: s.numerics,
            executor: s.executor.clone(),
            graph,
            order,
            absent: self.absent,
        })
    }
}

/// The id segment of a repeated training's chain (`/seed-N`); none without `seeds:`.
pub fn chain_suffix(seed: Option<u64>) -> String {
    seed.map(|k| format!("/seed-{k}")).unwrap_or_default()
}

/// Per training entry, the attacks (and groups) of the correlation's gaps: `gap` (train − test
/// robust accuracy) defaults to the evaluation attacks of the training attack's norm and ε (every
/// attack for standard training) and the groups of only such attacks; `unseen` (test clean −
/// robust) to the attacks of another norm and the groups with such an attack.
fn correlation_gaps(
    s: &spec::Spec,
    r: &spec::Resolved,
    c: Option<&spec::analysis::CorrelationSpec>,
) -> BTreeMap<String, stages::correlation::Gaps> {
    let attacks = &r.attacks;
    let mut training: Vec<(String, Option<AttackConfig>)> = r
        .entries
        .iter()
        .map(|(name, t)| (name.clone(), t.attack.clone()))
        .collect();
    // Imported models have no training attack.
    training.push((stages::import::TRAINING_LABEL.to_string(), None));
    // The entries themselves, not their curve points.
    let real: Vec<(String, AttackConfig)> = attacks
        .iter()
        .filter(|e| e.curve_eps.is_none() && e.config.norm().is_some() && e.config.eps() > 0.0)
        .map(|e| (e.name.clone(), e.config.clone()))
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
            let gap = c.and_then(|c| c.gap.clone()).unwrap_or_else(|| {
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
            let unseen = c.and_then(|c| c.unseen.clone()).unwrap_or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const A: &str = "name: t\nseed: 1\ndatasets:\n  d: {source: synthetic, resolution: 8, synthetic: {classes: 3, train_size: 30, test_size: 9}}\nmodels:\n  resnet18: {preset: tiny}\ntraining:\n  at:\n    attack: {norm: linf, eps: 8/255, steps: 2}\n    epochs: 1\n    optimizer: {name: adamw, lr: 1e-3}\nevaluation:\n  attacks:\n    clean: {}\n    fgsm: {eps: 8/255}\n";
    // The same pipeline reformatted: reordered keys, comments, flow/block style, 8/255 as decimal.
    const B: &str = "# comment\nname: t\nevaluation:\n  attacks:\n    clean: {}\n    fgsm:\n      eps: 0.03137254901960784   # same f64\ntraining:\n  at:\n    optimizer: {lr: 0.001, name: adamw}\n    epochs: 1\n    attack:\n      steps: 2\n      eps: 0.03137254901960784\n      norm: linf\nmodels:\n  resnet18:\n    preset: tiny\ndatasets:\n  d:\n    synthetic: {test_size: 9, train_size: 30, classes: 3}\n    resolution: 8\n    source: synthetic\nseed: 1\n";

    fn keys(src: &str) -> BTreeMap<String, String> {
        let p = plan(src);
        p.order
            .iter()
            .map(|&ix| (p.graph[ix].id.clone(), p.graph[ix].key.clone()))
            .collect()
    }

    fn plan(src: &str) -> Plan {
        let spec = spec::parse(Path::new("x.yaml"), src).unwrap();
        let l = Loaded {
            resolved: spec::resolve(&spec).unwrap(),
            spec,
            path: "x.yaml".into(),
            source: src.into(),
        };
        Plan::build(&l).unwrap()
    }

    #[test]
    fn only_narrows_one_attacks_splits_and_points() {
        let base = keys(A);
        let src = A.replace(
            "    fgsm: {eps: 8/255}\n",
            "    fgsm: {eps: 8/255, curve: [4/255]}\n  limit: 7\n  only:\n    fgsm: {splits: [test], limit: 5}\n",
        );
        let p = plan(&src);
        let evals: std::collections::BTreeSet<(&str, String)> = p
            .order
            .iter()
            .map(|&ix| &p.graph[ix])
            .filter(|n| n.id.starts_with("eval/"))
            .map(|n| (n.id.as_str(), n.stage.params()["limit"].to_string()))
            .collect();
        // fgsm and its curve point on the test split only, 5 points; clean on both splits, 7.
        let want: std::collections::BTreeSet<(&str, String)> = [
            ("eval/d/resnet18/at/clean/train", "7"),
            ("eval/d/resnet18/at/clean/test", "7"),
            ("eval/d/resnet18/at/fgsm@0.015686/test", "5"),
            ("eval/d/resnet18/at/fgsm/test", "5"),
        ]
        .map(|(a, b)| (a, b.to_string()))
        .into_iter()
        .collect();
        assert_eq!(evals, want);
        // Training is untouched.
        assert_eq!(
            keys(&src)["train/d/resnet18/at"],
            base["train/d/resnet18/at"]
        );
    }

    #[test]
    fn seeds_are_chains_and_the_pipeline_seed_keeps_its_keys() {
        let base = keys(A);
        let seeded = keys(&A.replace("seed: 1\n", "seed: 1\nseeds: [1, 2]\n"));
        for (id, key) in &base {
            let chained = id
                .strip_prefix("train/")
                .map(|r| format!("train/{r}/seed-1"))
                .or_else(|| {
                    id.strip_prefix("eval/d/resnet18/at/")
                        .map(|r| format!("eval/d/resnet18/at/seed-1/{r}"))
                })
                .unwrap_or_else(|| id.clone());
            if id != "report" {
                assert_eq!(&seeded[&chained], key, "{id} → {chained}");
            }
        }
        assert_ne!(
            seeded["train/d/resnet18/at/seed-2"],
            seeded["train/d/resnet18/at/seed-1"]
        );
        assert!(seeded.contains_key("eval/d/resnet18/at/seed-2/fgsm/test"));
        assert_eq!(seeded.len(), 2 * (base.len() - 2) + 2);
    }

    /// A plan is built from a resolved spec only (`Loaded::resolved`), so planning has no check
    /// left that could drop a stage: whatever resolving rejects is a problem located at its
    /// field, and no `Resolved` (hence no plan) exists.
    #[test]
    fn what_resolving_rejects_is_located_and_leaves_nothing_to_plan() {
        for (bad, field, at) in [
            (
                "fgsm: {eps: 8/255}",
                "fgsm: {eps: 8/255, steps: 3}",
                "evaluation.attacks.fgsm.steps",
            ),
            (
                "source: synthetic,",
                "source: synthetc,",
                "datasets.d.source",
            ),
            (
                "epochs: 1\n",
                "epochs: 1\n    augment: [flip_upside_down]\n",
                "training.at.augment.0",
            ),
            (
                "steps: 2}\n",
                "steps: 2}\n    monitor: {attack: {eps: 8/255, queries: 10}}\n",
                "training.at.monitor.attack.queries",
            ),
        ] {
            let src = A.replace(bad, field);
            assert_ne!(src, A, "{bad}");
            let spec = spec::parse(Path::new("x.yaml"), &src).unwrap();
            let problems = spec::resolve(&spec).err().expect("resolved a bad spec");
            let paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
            assert!(paths.iter().any(|p| p == at), "{field}: {paths:?}");
        }
    }

    #[test]
    fn keys_ignore_formatting_order_comments_and_fraction_syntax() {
        let (a, b) = (keys(A), keys(B));
        assert_eq!(a.len(), 1 + 1 + 2 * 2 + 1);
        assert_eq!(a, b);
    }

    /// The report's attack columns follow the spec's order: listing the attacks in another
    /// order changes the report's key, and nothing else.
    #[test]
    fn attack_order_keys_only_the_report() {
        let a = keys(A);
        let c = keys(&A.replace(
            "    clean: {}\n    fgsm: {eps: 8/255}\n",
            "    fgsm: {eps: 8/255}\n    clean: {}\n",
        ));
        let changed: Vec<&String> = a.keys().filter(|k| a[*k] != c[*k]).collect();
        assert_eq!(changed, ["report"]);
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
