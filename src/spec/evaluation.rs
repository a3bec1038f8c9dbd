//! `evaluation:`: which attacks are evaluated, on which splits and points, and how they are
//! grouped. Its checks, the checks of what other sections name of it (an analysis's attack, the
//! correlation's gaps) and the resolved attacks ([`resolve_evaluation`]): each entry of
//! `evaluation.attacks` and each extra radius of its `curve` ([`EvalAttack`]).
use super::Spec;
use crate::attacks::spec::AttackSpec;
use crate::attacks::{self, verdict::EvalAttack};
use crate::models::saved::Checkpoint;
use crate::vocab::{typo_hint, Problem, Split};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `evaluation:`: the attacks, the splits and points they run on, and their groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationSpec {
    #[serde(default = "default_splits")]
    pub splits: Vec<Split>,
    #[serde(default = "default_attacks")]
    pub attacks: BTreeMap<String, AttackSpec>,
    /// Evaluate on at most this many images per split (the first N of the prepared split).
    pub limit: Option<usize>,
    /// Per attack: fewer points or splits than the other attacks (e.g. AutoAttack on 100 test
    /// points). A group over attacks with different limits combines them on the points they
    /// share.
    #[serde(default)]
    pub only: BTreeMap<String, Only>,
    /// Named groups of attacks: a point is robust for a group only if it survives every member
    /// (per-sample worst case). A group mixing norms is the union threat model.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Which weights of a trained model are evaluated: the last epoch's or the best epoch's
    /// (`training.<name>.monitor.best_by`).
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// Seed of the attacks' random draws (random starts, Square's proposals); default: the
    /// pipeline's `seed`. Another value repeats the randomised attacks on the same trained models.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Split each evaluation into stages of this many points (the last may have fewer), run in
    /// parallel and merged into one result; each shard is cached on its own, so a larger `limit`
    /// computes only the new points. Per attack: `only.<attack>.shard`.
    #[serde(default)]
    pub shard: Option<usize>,
}

/// `evaluation.only.<attack>`: where one attack is evaluated, in place of `limit` and `splits`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Only {
    /// At most this many points per split (the first N), in place of `evaluation.limit`.
    pub limit: Option<usize>,
    /// These of `evaluation.splits` only.
    pub splits: Option<Vec<Split>>,
    /// Shards of this many points, in place of `evaluation.shard`.
    pub shard: Option<usize>,
}

fn default_splits() -> Vec<Split> {
    vec![Split::Train, Split::Test]
}
fn default_attacks() -> BTreeMap<String, AttackSpec> {
    BTreeMap::from([("clean".to_string(), AttackSpec::default())])
}
fn default_eval_batch() -> usize {
    256
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self {
            splits: default_splits(),
            attacks: default_attacks(),
            limit: None,
            only: BTreeMap::new(),
            groups: BTreeMap::new(),
            batch_size: 256,
            checkpoint: Checkpoint::Last,
            seed: None,
            shard: None,
        }
    }
}

/// `evaluation.splits` with `val`: every dataset needs a val split.
pub fn check_val_split(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    if spec.evaluation.splits.contains(&Split::Val) {
        for (name, ds) in &spec.datasets {
            if ds.val_fraction.is_none() {
                out.push(
                    Problem::new(
                        &["evaluation", "splits"],
                        format!("`val` needs a val split, but dataset `{name}` has none"),
                    )
                    .hint(format!(
                        "set datasets.{name}.val_fraction (e.g. 0.1) or remove `val`"
                    )),
                );
            }
        }
    }
    out
}

/// Checks `evaluation:` and resolves its attacks: every entry of `evaluation.attacks`, each
/// preceded by one per extra radius of its `curve` (a curve point, [`EvalAttack::curve_eps`]).
pub fn resolve_evaluation(spec: &Spec) -> Result<Vec<EvalAttack>, Vec<Problem>> {
    let mut out = Vec::new();
    if spec.evaluation.attacks.is_empty() {
        out.push(
            Problem::new(&["evaluation", "attacks"], "needs at least one attack")
                .hint("e.g. `clean: {}`"),
        );
    }
    if spec.evaluation.splits.is_empty() {
        out.push(
            Problem::new(&["evaluation", "splits"], "needs at least one split")
                .hint("use [train, test]"),
        );
    }
    if spec.evaluation.batch_size == 0 {
        out.push(Problem::new(
            &["evaluation", "batch_size"],
            "must be at least 1",
        ));
    }
    if spec.evaluation.shard == Some(0) {
        out.push(
            Problem::new(&["evaluation", "shard"], "must be at least 1")
                .hint("the number of points per shard, e.g. 1000; leave it out for one stage per evaluation"),
        );
    }
    if spec.evaluation.checkpoint == Checkpoint::Best {
        for (name, t) in &spec.training {
            if t.monitor.as_ref().is_some_and(|m| m.n == 0) {
                out.push(
                    Problem::new(
                        &["evaluation", "checkpoint"],
                        format!(
                            "`best` needs monitoring, but training.{name} has `monitor: {{n: 0}}`"
                        ),
                    )
                    .hint("remove `n: 0` or evaluate `checkpoint: last`"),
                );
            }
        }
    }
    let resolved = resolve_attacks(spec, &mut out);
    out.extend(check_only(spec));
    out.extend(check_groups(spec));
    if out.is_empty() {
        Ok(resolved)
    } else {
        Err(out)
    }
}

/// Each entry of `evaluation.attacks` resolved by its type, preceded by its curve points; the
/// problems of those that do not resolve go to `out`.
fn resolve_attacks(spec: &Spec, out: &mut Vec<Problem>) -> Vec<EvalAttack> {
    let mut resolved = Vec::new();
    for (name, a) in &spec.evaluation.attacks {
        let kind = attacks::kind_for(name, a);
        match attacks::AttackConfig::resolve(&kind, a) {
            Err(e) => {
                let mut p = e.under(&["evaluation", "attacks", name.as_str()]);
                if p.path.last().is_some_and(|f| f == "type") && a.kind.is_none() {
                    // The type came from the key: point at the entry.
                    p.path.pop();
                }
                out.push(p);
            }
            // Every attack, plus one entry per extra radius of its `curve` (a curve point).
            Ok(c) => {
                for e in a.curve.iter().flatten().map(|e| e.get()) {
                    if e != c.eps() {
                        resolved.push(EvalAttack {
                            name: name.clone(),
                            curve_eps: Some(e),
                            config: c.with_eps(e),
                        });
                    }
                }
                resolved.push(EvalAttack {
                    name: name.clone(),
                    curve_eps: None,
                    config: c,
                });
            }
        }
    }
    resolved
}

/// `evaluation.only`: each names an attack, at least one point and splits that are evaluated.
fn check_only(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    for (a, o) in &spec.evaluation.only {
        let at = ["evaluation", "only", a.as_str()];
        if !spec.evaluation.attacks.contains_key(a) {
            out.push(
                Problem::new(
                    &at,
                    format!("`{a}` is not an attack of `evaluation.attacks`"),
                )
                .hint(typo_hint(
                    a,
                    spec.evaluation.attacks.keys().map(|s| s.as_str()),
                    || "name an attack of `evaluation.attacks`".into(),
                )),
            );
        }
        if o.limit == Some(0) {
            out.push(
                Problem::new(&[at[0], at[1], at[2], "limit"], "must be at least 1")
                    .hint("the number of points per split this attack is evaluated on"),
            );
        }
        if o.shard == Some(0) {
            out.push(
                Problem::new(&[at[0], at[1], at[2], "shard"], "must be at least 1")
                    .hint("the number of points per shard of this attack's evaluations"),
            );
        }
        for s in o.splits.iter().flatten() {
            if !spec.evaluation.splits.contains(s) {
                out.push(
                    Problem::new(
                        &[at[0], at[1], at[2], "splits"],
                        format!("`{s}` is not one of `evaluation.splits`"),
                    )
                    .hint("list splits that `evaluation.splits` evaluates"),
                );
            }
        }
        if o.splits.as_ref().is_some_and(|s| s.is_empty()) {
            out.push(
                Problem::new(&[at[0], at[1], at[2], "splits"], "is empty")
                    .hint("remove the attack from `evaluation.attacks` to evaluate it nowhere"),
            );
        }
    }
    out
}

/// `evaluation.groups`: each has its own name and at least one member, every member an attack.
fn check_groups(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    for (g, members) in &spec.evaluation.groups {
        if spec.evaluation.attacks.contains_key(g) {
            out.push(
                Problem::new(
                    &["evaluation", "groups", g.as_str()],
                    "has the name of an attack",
                )
                .hint("give the group its own name"),
            );
        }
        if members.is_empty() {
            out.push(
                Problem::new(
                    &["evaluation", "groups", g.as_str()],
                    "needs at least one attack",
                )
                .hint("e.g. `[pgd-linf, aa-linf]`"),
            );
        }
        for m in members {
            if !spec.evaluation.attacks.contains_key(m) {
                let mut p = Problem::new(
                    &["evaluation", "groups", g.as_str()],
                    format!("`{m}` is not an attack of `evaluation.attacks`"),
                );
                p.hint = Some(typo_hint(
                    m,
                    spec.evaluation.attacks.keys().map(|s| s.as_str()),
                    || {
                        format!(
                            "attacks: {}",
                            spec.evaluation
                                .attacks
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                ));
                out.push(p);
            }
        }
    }
    out
}

/// What other sections name of the evaluation: an analysis's `attack` (an attack), the
/// correlation's `gap` and `unseen` (attacks or groups), and the splits the correlation compares.
pub fn check_references(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    let known =
        |n: &str| spec.evaluation.attacks.contains_key(n) || spec.evaluation.groups.contains_key(n);
    let mut check = |at: &[&str], names: &[String], groups_ok: bool| {
        for n in names {
            let ok = if groups_ok {
                known(n)
            } else {
                spec.evaluation.attacks.contains_key(n)
            };
            if !ok {
                let candidates = spec
                    .evaluation
                    .attacks
                    .keys()
                    .chain(spec.evaluation.groups.keys().filter(|_| groups_ok));
                out.push(
                    Problem::new(
                        at,
                        format!(
                            "`{n}` is no evaluation attack{}",
                            if groups_ok { " or group" } else { "" }
                        ),
                    )
                    .hint(typo_hint(n, candidates.map(|s| s.as_str()), || {
                        "name an entry of `evaluation.attacks`".to_string()
                    })),
                );
            }
        }
    };
    for a in crate::analysis::REGISTRY {
        if let Some(name) = spec.analysis.get(a.name).and_then(|s| a.attack(s)) {
            check(&["analysis", a.name, "attack"], &[name], false);
        }
    }
    if let Some(c) = &spec.analysis.correlation {
        if let Some(g) = &c.gap {
            check(&["analysis", "correlation", "gap"], g, true);
        }
        if let Some(u) = &c.unseen {
            check(&["analysis", "correlation", "unseen"], u, true);
        }
        for split in [Split::Train, Split::Test] {
            if !spec.evaluation.splits.contains(&split) {
                out.push(
                    Problem::new(
                        &["analysis", "correlation"],
                        format!(
                            "needs the `{split}` split evaluated: the gaps compare train and test"
                        ),
                    )
                    .hint("use `evaluation.splits: [train, test]`"),
                );
            }
        }
    }
    out
}
