//! A training entry (`training.<name>`) checked and resolved once: its ranges, its augmentation
//! steps, its inner attack and monitor, every default filled in ([`TrainSettings`]), and its
//! `overrides` specialised to each model of the pipeline. The train stage copies the settings
//! into its key and reads nothing else of the spec; the spec places each entry and merges the
//! overrides' YAML (its recipe module), and composes the rest of the pipeline around it.
use super::precision::{Amp, ChannelsLast};
use super::spec::{
    default_monitor_n, ModelMode, OptimizerName, OptimizerSpec, ScheduleName, ScheduleSpec,
    TrainMethod, TrainingSpec,
};
use super::{Monitor, METRICS, TRADES_BETA};
use crate::attacks::spec::AttackSpec;
use crate::attacks::{self, AttackConfig};
use crate::augment::Augment;
use crate::models::{self, ArchKind, ModelParams};
use crate::vocab::{did_you_mean, type_hint, Norm, Problem, Real};
use std::collections::BTreeMap;

/// A training entry as it applies to one model, resolved: every field of the train stage's key
/// but the model, the data's shape and the seed, with every default applied.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub method: TrainMethod,
    /// The inner attack of adversarial training (`None` for standard training).
    pub attack: Option<AttackConfig>,
    pub attack_mode: ModelMode,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub schedule: ScheduleSpec,
    /// Training-time augmentation, applied in order (empty: none).
    pub augment: Vec<Augment>,
    /// TRADES' β ([`TRADES_BETA`] unless set); `None` for every other method.
    pub beta: Option<f64>,
    /// Label smoothing of the cross-entropy; `None` when unset or 0 (no smoothing).
    pub label_smoothing: Option<f64>,
    /// The global gradient ℓ2 norm is clipped to this value before each step.
    pub grad_clip: Option<f64>,
    /// The per-epoch monitor (`None` when `monitor: {n: 0}`).
    pub monitor: Option<Monitor>,
    pub amp: Amp,
    pub channels_last: ChannelsLast,
}

/// A training entry resolved: as written, and as it applies to each model of the pipeline.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The entry as written (no override applied).
    pub entry: TrainSettings,
    /// Per resolved model (by name): the entry with its matching `overrides` merged in.
    pub per_model: BTreeMap<String, TrainSettings>,
}

/// The pipeline's models, as a training entry's `overrides` see them.
pub struct Models<'a> {
    /// Every model of the pipeline by name, resolved or not: what an override key may name.
    pub names: &'a [&'a str],
    /// The models that resolved: the entry is specialised to each.
    pub resolved: &'a BTreeMap<String, ModelParams>,
    /// The entry specialised to a model (its name and architecture kind): its matching
    /// `overrides` merged over it, or the problem of the merged entry at the override applied.
    pub specialise: &'a dyn Fn(&str, ArchKind) -> Result<TrainingSpec, Problem>,
}

/// Checks the training entry `name` and resolves it, as written and for every model; problems
/// sit under `training.<name>`, those that only a model's overrides cause at that override.
pub fn resolve(
    name: &str,
    t: &TrainingSpec,
    pipeline: &Models,
) -> Result<Resolution, Vec<Problem>> {
    let own = settings(name, t);
    let mut per_model = BTreeMap::new();
    let mut out = overrides(name, t, &own, pipeline, &mut per_model);
    match own {
        Ok(entry) if out.is_empty() => Ok(Resolution { entry, per_model }),
        Ok(_) => Err(out),
        Err(ps) => {
            out.extend(ps);
            Err(out)
        }
    }
}

/// Checks one training entry and resolves it: its augmentation steps, inner attack and monitor,
/// and the defaults of the fields the spec may leave out.
pub fn settings(name: &str, t: &TrainingSpec) -> Result<TrainSettings, Vec<Problem>> {
    let base = ["training", name];
    let mut out = Vec::new();
    let augment = augment_steps(base, &t.augment, &mut out);
    check_numbers(base, t, &mut out);
    check_schedule(base, &t.schedule, &mut out);
    if t.optimizer.nesterov && t.optimizer.name != OptimizerName::Sgd {
        out.push(
            Problem::new(
                &[base[0], base[1], "optimizer", "nesterov"],
                "applies to `name: sgd` only",
            )
            .hint("remove it"),
        );
    }
    let monitor_attack = check_monitor(base, t, &mut out);
    let attack = training_attack(base, t, &mut out);
    if !out.is_empty() {
        return Err(out);
    }
    let monitor = monitor_of(t, monitor_attack, attack.as_ref());
    Ok(TrainSettings {
        method: t.method,
        attack,
        attack_mode: t.attack_mode,
        epochs: t.epochs,
        batch_size: t.batch_size,
        optimizer: t.optimizer.clone(),
        schedule: t.schedule.clone(),
        augment,
        // Only TRADES reads a β: Zhang et al.'s CIFAR-10 value unless the entry sets one.
        beta: (t.method == TrainMethod::Trades).then(|| t.beta.map_or(TRADES_BETA, |b| b.get())),
        // 0 is no smoothing, and stays out of the key as an unset value does.
        label_smoothing: t.label_smoothing.map(|v| v.get()).filter(|&v| v > 0.0),
        grad_clip: t.grad_clip.map(|v| v.get()),
        monitor,
        amp: t.amp,
        channels_last: t.channels_last,
    })
}

/// `augment`: each step parsed and checked, at `augment.<index>`.
fn augment_steps(
    base: [&str; 2],
    steps: &[serde_yaml::Value],
    out: &mut Vec<Problem>,
) -> Vec<Augment> {
    let mut augment = Vec::new();
    for (i, a) in steps.iter().enumerate() {
        let idx = i.to_string();
        let at = [base[0], base[1], "augment", idx.as_str()];
        match Augment::from_yaml(a) {
            Err(e) => {
                let hint = type_hint(&e)
                    .unwrap_or_else(|| format!("steps: {}", crate::augment::NAMES.join(", ")));
                out.push(Problem::new(&at, e).hint(hint))
            }
            Ok(aug) => match aug.check() {
                Err(p) => out.push(p.under(&at)),
                Ok(()) => augment.push(aug),
            },
        }
    }
    augment
}

/// A number field under the entry `base` outside its range: `path` below the entry.
fn out_of_range(
    base: [&str; 2],
    path: &[&str],
    v: Option<Real>,
    ok: fn(f64) -> bool,
    what: &str,
) -> Option<Problem> {
    v.filter(|v| !ok(v.get())).map(|v| {
        let full: Vec<&str> = base.iter().chain(path).copied().collect();
        Problem::new(&full, format!("{} {what}", v.get()))
    })
}

/// The sizes and rates: epochs, batch size, learning rate, weight decay, warm-up, label
/// smoothing, gradient clipping and TRADES' β.
fn check_numbers(base: [&str; 2], t: &TrainingSpec, out: &mut Vec<Problem>) {
    if t.epochs == 0 {
        out.push(Problem::new(
            &[base[0], base[1], "epochs"],
            "must be at least 1",
        ));
    }
    if t.batch_size == 0 {
        out.push(Problem::new(
            &[base[0], base[1], "batch_size"],
            "must be at least 1",
        ));
    }
    if t.optimizer.lr.get() <= 0.0 {
        out.push(Problem::new(
            &[base[0], base[1], "optimizer", "lr"],
            "must be positive",
        ));
    }
    if t.optimizer.weight_decay.get() < 0.0 {
        out.push(Problem::new(
            &[base[0], base[1], "optimizer", "weight_decay"],
            "must not be negative",
        ));
    }
    if t.schedule.warmup_epochs > t.epochs {
        out.push(
            Problem::new(
                &[base[0], base[1], "schedule", "warmup_epochs"],
                "is longer than `epochs`",
            )
            .hint(format!(
                "set `schedule: {{warmup_epochs: N}}` with N ≤ {}, or raise `epochs`",
                t.epochs
            )),
        );
    }
    out.extend(out_of_range(
        base,
        &["label_smoothing"],
        t.label_smoothing,
        |v| (0.0..1.0).contains(&v),
        "is not in [0, 1)",
    ));
    out.extend(out_of_range(
        base,
        &["grad_clip"],
        t.grad_clip,
        |v| v > 0.0 && v.is_finite(),
        "must be a positive number",
    ));
    out.extend(out_of_range(
        base,
        &["beta"],
        t.beta,
        |v| v >= 0.0 && v.is_finite(),
        "must be a finite number ≥ 0",
    ));
    if t.beta.is_some() && t.method != TrainMethod::Trades {
        out.push(
            Problem::new(
                &[base[0], base[1], "beta"],
                "applies to `method: trades` only",
            )
            .hint("remove it"),
        );
    }
}

/// `schedule`: each field only with the schedule that reads it, in its range.
fn check_schedule(base: [&str; 2], sched: &ScheduleSpec, out: &mut Vec<Problem>) {
    let sched_field = |f: &str, msg: &str| Problem::new(&[base[0], base[1], "schedule", f], msg);
    if (!sched.milestones.is_empty() || sched.gamma.is_some())
        && sched.name != ScheduleName::Multistep
    {
        let f = if sched.gamma.is_some() {
            "gamma"
        } else {
            "milestones"
        };
        out.push(
            sched_field(f, "applies to `name: multistep` only")
                .hint("remove it or set `name: multistep`"),
        );
    }
    if sched.name == ScheduleName::Multistep && sched.milestones.is_empty() {
        out.push(
            sched_field(
                "milestones",
                "`multistep` needs the epochs at which to decay",
            )
            .hint("e.g. `milestones: [100, 150]`"),
        );
    }
    if sched.milestones.windows(2).any(|w| w[0] >= w[1]) {
        out.push(sched_field("milestones", "must be increasing"));
    }
    out.extend(out_of_range(
        base,
        &["schedule", "gamma"],
        sched.gamma,
        |v| v > 0.0 && v <= 1.0,
        "is not in (0, 1]",
    ));
    if let Some(p) = sched.pct_start {
        if sched.name != ScheduleName::Onecycle {
            out.push(
                sched_field("pct_start", "applies to `name: onecycle` only").hint("remove it"),
            );
        } else if !(p.get() > 0.0 && p.get() < 1.0) {
            out.push(sched_field(
                "pct_start",
                &format!("{} is not in (0, 1)", p.get()),
            ));
        }
    }
    if sched.name == ScheduleName::Onecycle && sched.warmup_epochs > 0 {
        out.push(
            sched_field("warmup_epochs", "`onecycle` has its own warm-up")
                .hint("remove it; `pct_start` sets the rise"),
        );
    }
}

/// `monitor`: its attack resolved (a `pgd` unless it names a type) and its `best_by` a metric
/// the monitor measures.
fn check_monitor(
    base: [&str; 2],
    t: &TrainingSpec,
    out: &mut Vec<Problem>,
) -> Option<AttackConfig> {
    let m = t.monitor.as_ref()?;
    let mut attack = None;
    if let Some(a) = &m.attack {
        match AttackConfig::resolve(&attacks::kind_for("pgd", a), a) {
            Err(e) => out.push(e.under(&[base[0], base[1], "monitor", "attack"])),
            Ok(c) => attack = Some(c),
        }
    }
    if let Some(b) = &m.best_by {
        let at = [base[0], base[1], "monitor", "best_by"];
        let has_attack = m.attack.is_some() || t.method != TrainMethod::Standard;
        if !METRICS.contains(&b.as_str()) {
            out.push(
                Problem::new(&at, format!("unknown metric `{b}`"))
                    .hint(format!("use one of {}", METRICS.join(", "))),
            );
        } else if b.contains("robust") && !has_attack {
            out.push(
                Problem::new(
                    &at,
                    format!("`{b}` needs an attack; standard training has none"),
                )
                .hint("set `monitor.attack`, or pick a clean metric"),
            );
        }
    }
    attack
}

/// `attack`: present exactly for the adversarial methods, and resolved for the method.
fn training_attack(
    base: [&str; 2],
    t: &TrainingSpec,
    out: &mut Vec<Problem>,
) -> Option<AttackConfig> {
    match (t.method, &t.attack) {
        (TrainMethod::PgdAt | TrainMethod::Trades | TrainMethod::FastAt, None) => {
            out.push(
                Problem::new(
                    &[base[0], base[1]],
                    "adversarial training needs an `attack`",
                )
                .hint("e.g. `attack: {norm: linf, eps: 8/255, steps: 10}`"),
            );
            None
        }
        (TrainMethod::Standard, Some(_)) => {
            out.push(
                Problem::new(
                    &[base[0], base[1], "attack"],
                    "method standard does not use an attack",
                )
                .hint("remove it or set `method: pgd-at`"),
            );
            None
        }
        (method, Some(a)) => match inner_attack(method, a) {
            Err(e) => {
                out.push(e.under(&[base[0], base[1], "attack"]));
                None
            }
            Ok(c) => Some(c),
        },
        (TrainMethod::Standard, None) => None,
    }
}

/// The per-epoch monitor of a training entry: on by default (256 points per split, the training
/// attack, best by test robust accuracy or, without an attack, test clean accuracy); `n: 0` is
/// off. `attack` is the resolved `monitor.attack`, `train_attack` the entry's inner attack.
fn monitor_of(
    t: &TrainingSpec,
    attack: Option<AttackConfig>,
    train_attack: Option<&AttackConfig>,
) -> Option<Monitor> {
    let m = t.monitor.as_ref();
    let n = m.map_or(default_monitor_n(), |m| m.n);
    if n == 0 {
        return None;
    }
    let attack = attack.or_else(|| train_attack.cloned());
    let best_by = m.and_then(|m| m.best_by.clone()).unwrap_or_else(|| {
        if attack.is_some() {
            "test_robust_accuracy"
        } else {
            "test_clean_accuracy"
        }
        .to_string()
    });
    Some(Monitor { n, attack, best_by })
}

/// The inner attack of an adversarial training method, resolved from the spec's `attack:` (a PGD
/// configuration): fast AT fills one step of 1.25ε from a random start (Wong et al. 2020); TRADES
/// uses norm, ε, steps and step size only.
pub fn inner_attack(method: TrainMethod, a: &AttackSpec) -> Result<AttackConfig, Problem> {
    let mut a = a.clone();
    let err = |f: &str, m: &str, h: &str| Err(Problem::at(f, m).hint(h));
    // A value of the wrong type is left as written for the PGD resolution below to report.
    let read = |a: &AttackSpec, f: &str| a.params.get(f).cloned();
    match method {
        TrainMethod::FastAt => {
            let steps = read(&a, "steps").map(serde_yaml::from_value::<usize>);
            if steps
                .as_ref()
                .is_some_and(|s| s.as_ref().is_ok_and(|&s| s != 1))
            {
                return err(
                    "steps",
                    "fast AT takes one step",
                    "remove it, or use `method: pgd-at`",
                );
            }
            if read(&a, "random_start").and_then(|v| serde_yaml::from_value::<bool>(v).ok())
                == Some(false)
            {
                return err(
                    "random_start",
                    "fast AT starts at a random point",
                    "remove it",
                );
            }
            if a.norm.is_some_and(|n| n != Norm::Linf) {
                return err(
                    "norm",
                    "fast AT is an ℓ∞ method",
                    "use `method: pgd-at` for ℓ2/ℓ1",
                );
            }
            if steps.is_none() {
                a.set("steps", 1);
            }
            if let (None, Some(e)) = (read(&a, "step_size"), a.eps) {
                a.set("step_size", 1.25 * e.get());
            }
        }
        TrainMethod::Trades => {
            for f in ["loss", "restarts", "random_start"] {
                if a.params.contains_key(f) {
                    return err(
                        f,
                        "does not apply to TRADES (KL loss, one run from x + 0.001·N(0, I))",
                        "remove it",
                    );
                }
            }
        }
        _ => {}
    }
    match AttackConfig::resolve("pgd", &a)? {
        c @ (AttackConfig::Pgd(_) | AttackConfig::Fgsm(_)) => Ok(c),
        _ => err(
            "type",
            "adversarial training needs a perturbing attack",
            "use a `pgd` configuration",
        ),
    }
}

/// `overrides` keys name models of the pipeline or architecture kinds, and every model's
/// specialised entry passes the entry checks. A problem the entry itself does not have is reported
/// at the override that caused it. Each model's resolved entry goes into `per_model`.
fn overrides(
    name: &str,
    t: &TrainingSpec,
    own: &Result<TrainSettings, Vec<Problem>>,
    pipeline: &Models,
    per_model: &mut BTreeMap<String, TrainSettings>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let kinds: Vec<&str> = ArchKind::ALL.iter().map(|k| k.as_str()).collect();
    for (key, v) in &t.overrides {
        let at = ["training", name, "overrides", key.as_str()];
        if !pipeline.names.contains(&key.as_str()) && !kinds.contains(&key.as_str()) {
            let candidates = pipeline.names.iter().copied().chain(kinds.iter().copied());
            let hint = did_you_mean(key, candidates)
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("a model of `models:` or one of {}", kinds.join(", ")));
            out.push(
                Problem::new(
                    &at,
                    "is neither a model of this pipeline nor an architecture kind",
                )
                .hint(hint),
            );
        } else if !v.is_mapping() {
            out.push(
                Problem::new(&at, "must be a mapping of training fields")
                    .hint("e.g. `{optimizer: {lr: 2.5e-4}}`"),
            );
        }
    }
    if !out.is_empty() {
        return out;
    }
    // Each problem once, at the first model that has it.
    let mut reported: Vec<Problem> = Vec::new();
    for (mname, mp) in pipeline.resolved {
        let arch = models::find(&mp.arch).expect("resolved architectures exist");
        let key = if t.overrides.contains_key(mname) {
            mname.as_str()
        } else if t.overrides.contains_key(arch.kind.as_str()) {
            arch.kind.as_str()
        } else {
            // No override applies: the entry as written.
            if let Ok(tr) = own {
                per_model.insert(mname.clone(), tr.clone());
            }
            continue;
        };
        let own_problems: &[Problem] = own.as_ref().err().map_or(&[], |v| v.as_slice());
        match (pipeline.specialise)(mname.as_str(), arch.kind) {
            Err(p) => out.push(p),
            Ok(tt) => match settings(name, &tt) {
                Ok(tr) => {
                    per_model.insert(mname.clone(), tr);
                }
                Err(ps) => {
                    for p in ps {
                        let same = |q: &Problem| q.path == p.path && q.message == p.message;
                        if own_problems.iter().any(same) || reported.iter().any(same) {
                            continue;
                        }
                        reported.push(p.clone());
                        let mut path: Vec<String> = ["training", name, "overrides", key]
                            .map(String::from)
                            .to_vec();
                        path.extend(p.path.iter().skip(2).cloned());
                        out.push(Problem {
                            path,
                            message: format!("for model `{mname}`: {}", p.message),
                            hint: p.hint.clone(),
                        });
                    }
                }
            },
        }
    }
    out
}
