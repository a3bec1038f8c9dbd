//! Cache keys are a promise to every user's cache: the keys of `pipelines/quickstart.yaml` are
//! pinned to those main computed at d1a7a88 (`data/quickstart-keys.txt`), so a refactor that
//! changes what enters a key, or how it is serialised, fails here instead of silently recomputing
//! (or worse, reusing) everyone's entries. A deliberate change bumps the stage's version and
//! rewrites the file in the same commit.
use robarch::plan::Plan;
use std::path::PathBuf;

#[test]
fn quickstart_keys_are_pinned() {
    let root = PathBuf::from(crate::common::ROOT);
    let loaded = robarch::spec::load(&root.join("pipelines/quickstart.yaml")).unwrap();
    let plan = Plan::build(&loaded).unwrap();
    let mut keys: Vec<String> = plan
        .order
        .iter()
        .map(|&ix| format!("{} {}", plan.graph[ix].id, plan.graph[ix].key))
        .collect();
    keys.sort();
    let pinned: Vec<String> =
        std::fs::read_to_string(root.join("tests/it/data/quickstart-keys.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect();
    assert_eq!(keys.len(), 47, "the quickstart has 47 stages");
    let changed: Vec<String> = keys
        .iter()
        .zip(&pinned)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("now {a}\n was {b}"))
        .collect();
    assert!(
        keys.len() == pinned.len() && changed.is_empty(),
        "quickstart keys changed:\n{}",
        changed.join("\n")
    );
}

/// A worker never reads the pipeline: it receives each stage described whole (kind, parameters,
/// input keys, locations) and rebuilds it. Every stage of the quickstart and of the mini-study
/// (seeds, ε curves, groups, every analysis) comes back from its task's JSON line with the planned
/// key (imports and folder datasets, whose locations travel beside the key, run through workers
/// in `torchscript.rs` and `datasets.rs`); a task whose parameters were changed on the way is
/// refused.
#[test]
fn every_stage_rebuilds_from_its_task_with_the_planned_key() {
    use robarch::exec::stage::Task;
    let root = PathBuf::from(crate::common::ROOT);
    let mut kinds = std::collections::BTreeSet::new();
    for file in ["pipelines/quickstart.yaml", "pipelines/mini-study.yaml"] {
        let loaded = robarch::spec::load(&root.join(file)).unwrap();
        let plan = Plan::build(&loaded).unwrap();
        for &ix in &plan.order {
            let line = serde_json::to_string(&Task::of(&plan, ix)).unwrap();
            let task: Task = serde_json::from_str(&line).unwrap();
            let stage = task
                .stage()
                .unwrap_or_else(|e| panic!("{file}: {}: {e:#}", plan.graph[ix].id));
            assert_eq!(stage.params(), plan.graph[ix].stage.params());
            assert_eq!(stage.locations(), plan.graph[ix].stage.locations());
            kinds.insert(stage.kind());
        }
        // A parameter changed on the way: the rebuilt stage's key differs from the planned one.
        let ix = plan.find("report").unwrap();
        let mut task = Task::of(&plan, ix);
        task.params["report"]["tables"] = serde_json::json!([]);
        let e = task.stage().err().expect("a changed task is refused");
        assert!(format!("{e:#}").contains("not the planned"), "{e:#}");
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "bounds",
            "correlation",
            "evaluate",
            "flatness",
            "prepare",
            "report",
            "sparsity",
            "train"
        ]
    );
}
