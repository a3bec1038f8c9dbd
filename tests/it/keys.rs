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
