//! Evaluation at scale: point-wise randomness (a point's verdict does not depend on its batch or
//! shard), shards and their merge, and resuming an evaluation inside its stage.
use crate::common::{entry_dir, killed_at, stages, stderr, Project};
use robarch::attacks::verdict::{Points, PER_SAMPLE};

/// A tiny trained model under every randomised attack, on 60 test points.
const PIPELINE: &str = r#"name: points
seed: 5
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8, limit: 120}
models:
  resnet18: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 2
    batch_size: 32
    optimizer: {name: adamw, lr: 2e-3}
evaluation:
  splits: [test]
  limit: 60
  attacks:
    pgd: {eps: 8/255, steps: 5, random_start: true, restarts: 2}
    pgd-l2: {type: pgd, norm: l2, eps: 0.5, steps: 5, random_start: true, restarts: 2}
    apgd: {eps: 8/255, steps: 10, restarts: 2}
    fab: {norm: l2, eps: 0.5, steps: 10, restarts: 2}
    square: {eps: 8/255, queries: 100, restarts: 2}
"#;

const ATTACKS: [&str; 5] = ["pgd", "pgd-l2", "apgd", "fab", "square"];

/// A verdict may differ between two runs only where a point's final margin is this close to the
/// decision boundary in one of them: other batch shapes round the model's float32 sums otherwise.
const MARGIN_TOLERANCE: f32 = 1e-3;

fn points(p: &Project, attack: &str) -> Points {
    let id = format!("eval/digits/resnet18/at/{attack}/test");
    Points::read(&entry_dir(p, "p.yaml", &id).join(PER_SAMPLE)).unwrap()
}

fn with(settings: &str) -> String {
    PIPELINE.replace("  limit: 60\n", &format!("  limit: 60\n{settings}"))
}

/// Item 1: the same evaluation at batch sizes 7, 32 and 256 and as shards of 16 gives every point
/// the same verdict, except points whose final margin is within [`MARGIN_TOLERANCE`] of zero.
#[test]
fn verdicts_do_not_depend_on_the_batch_or_the_shard() {
    let p = Project::new();
    p.write("p.yaml", &with("  batch_size: 7\n"));
    p.ok(&["run", "p.yaml"]);
    let reference: Vec<Points> = ATTACKS.iter().map(|a| points(&p, a)).collect();
    let broken: usize = reference
        .iter()
        .map(|r| {
            r.clean
                .iter()
                .zip(&r.robust)
                .filter(|(c, r)| **c && !**r)
                .count()
        })
        .sum();
    assert!(
        broken > 20,
        "the attacks break too few points to tell: {broken}"
    );
    let mut near = 0;
    for settings in [
        "  batch_size: 32\n",
        "  batch_size: 256\n",
        "  batch_size: 5\n  shard: 16\n",
    ] {
        p.write("p.yaml", &with(settings));
        p.ok(&["run", "p.yaml"]);
        for (attack, want) in ATTACKS.iter().zip(&reference) {
            let got = points(&p, attack);
            assert_eq!(got.len(), 60, "{attack} under {settings:?}");
            assert_eq!(
                got.clean, want.clean,
                "{attack}: clean verdicts under {settings:?}"
            );
            for i in 0..60 {
                if got.robust[i] != want.robust[i] {
                    let m = got.margin[i].abs().min(want.margin[i].abs());
                    assert!(
                        m < MARGIN_TOLERANCE,
                        "{attack}, point {i}, {settings:?}: robust {} against {} with margins {} and {}",
                        got.robust[i],
                        want.robust[i],
                        got.margin[i],
                        want.margin[i]
                    );
                    near += 1;
                }
            }
        }
    }
    eprintln!(
        "{near} of {} verdicts differed, all within a margin of {MARGIN_TOLERANCE}",
        3 * 5 * 60
    );
}

/// Item 2: shards are stages of their own, merged into what the unsharded stage writes; a larger
/// limit computes only the new shards; status and the dry run fold them into one line.
#[test]
fn shards_merge_into_the_unsharded_result_and_grow_with_the_limit() {
    let p = Project::new();
    let one = PIPELINE.replace("  limit: 60\n", "  limit: 40\n  batch_size: 8\n");
    p.write("p.yaml", &one);
    p.ok(&["run", "p.yaml"]);
    let whole: Vec<Points> = ATTACKS.iter().map(|a| points(&p, a)).collect();
    let metrics = |p: &Project, a: &str| -> serde_json::Value {
        let id = format!("eval/digits/resnet18/at/{a}/test");
        let dir = entry_dir(p, "p.yaml", &id);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("seconds");
        m
    };
    let whole_metrics: Vec<_> = ATTACKS.iter().map(|a| metrics(&p, a)).collect();

    let sharded = one.replace("  batch_size: 8\n", "  batch_size: 8\n  shard: 20\n");
    p.write("p.yaml", &sharded);
    let out = p.ok(&["run", "--dry-run", "p.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("eval/digits/resnet18/at/fab/test/points-*: 2 shards, 2 would run, 0 cached"),
        "{text}"
    );
    assert!(
        !text.contains("points-0-20"),
        "shards listed one by one:\n{text}"
    );
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    assert!(ran.contains(&"eval/digits/resnet18/at/pgd/test/points-0-20".to_string()));
    assert!(ran.contains(&"eval/digits/resnet18/at/pgd/test/points-20-40".to_string()));
    for (i, a) in ATTACKS.iter().enumerate() {
        let got = points(&p, a);
        // Same points, batches of 8 in both: the merged result is the unsharded one.
        assert_eq!(got.clean, whole[i].clean, "{a}");
        assert_eq!(got.robust, whole[i].robust, "{a}");
        assert_eq!(metrics(&p, a), whole_metrics[i], "{a}");
    }
    let status = p.ok(&["status", "p.yaml"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("eval/digits/resnet18/at/apgd/test/points-*: 2 shards (2 cached)"),
        "{status}"
    );

    // Twice the points: only the two new shards of each attack run, then the merges.
    p.write("p.yaml", &sharded.replace("  limit: 40\n", "  limit: 80\n"));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    let shards: Vec<&String> = ran.iter().filter(|s| s.contains("/points-")).collect();
    assert_eq!(shards.len(), 2 * ATTACKS.len(), "{ran:?}");
    assert!(shards
        .iter()
        .all(|s| s.ends_with("points-40-60") || s.ends_with("points-60-80")));
    for (i, a) in ATTACKS.iter().enumerate() {
        let got = points(&p, a);
        assert_eq!(got.len(), 80);
        assert_eq!(
            got.robust[..40],
            whole[i].robust[..],
            "{a}: the first 40 changed"
        );
    }
}

/// AutoAttack on the tiny model, checkpointing after every batch.
fn autoattack() -> String {
    PIPELINE
        .replace("  limit: 60\n", "  limit: 24\n  batch_size: 6\n")
        .split("  attacks:\n")
        .next()
        .unwrap()
        .to_string()
        + "  attacks:\n    aa: {type: autoattack, eps: 12/255}\n"
}

const AA: &str = "eval/digits/resnet18/at/aa/test";

/// Item 3: an AutoAttack evaluation killed (SIGKILL) after its n-th checkpoint resumes from it and
/// ends with the uninterrupted run's per-point outputs and metrics, for kills in the clean pass,
/// inside members and between them; a damaged checkpoint is discarded with a warning.
#[test]
fn a_killed_autoattack_evaluation_resumes_to_the_same_result() {
    let reference = Project::new();
    reference.write("p.yaml", &autoattack());
    reference.ok(&["run", "p.yaml"]);
    let dir = entry_dir(&reference, "p.yaml", AA);
    let want = std::fs::read(dir.join(PER_SAMPLE)).unwrap();
    let want_points = Points::read(&dir.join(PER_SAMPLE)).unwrap();
    let members = want_points.broken_by.as_ref().unwrap();
    assert!(members.contains(&0), "apgd-ce broke nothing: {members:?}");
    let metrics = |p: &Project| -> serde_json::Value {
        let dir = entry_dir(p, "p.yaml", AA);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("seconds");
        m
    };
    let want_metrics = metrics(&reference);
    // 4 clean batches, then the members' batches: a kill in the clean pass and one in APGD-CE's
    // batches (the damaged case below stops at the 6th).
    for n in [2, 8] {
        let p = Project::new();
        p.write("p.yaml", &autoattack());
        let fault = format!("worker:eval-checkpoint:{AA}@{n}=kill");
        let cmd_env = ("ROBARCH_EVAL_CHECKPOINT_SECONDS", "0");
        std::env::set_var(cmd_env.0, cmd_env.1);
        killed_at(&p, &fault, &[]);
        let out = p
            .cmd(&["run", "p.yaml"])
            .env(cmd_env.0, cmd_env.1)
            .output()
            .unwrap();
        std::env::remove_var(cmd_env.0);
        assert!(out.status.success(), "{}", stderr(&out));
        let log = std::fs::read_to_string(p.path(&format!("cache/logs/points/{AA}.log"))).unwrap();
        assert!(
            log.contains("resuming the evaluation from its checkpoint"),
            "kill {n}:\n{log}"
        );
        let got = std::fs::read(entry_dir(&p, "p.yaml", AA).join(PER_SAMPLE)).unwrap();
        assert!(got == want, "kill after checkpoint {n}: the outputs differ");
        assert_eq!(metrics(&p), want_metrics, "kill after checkpoint {n}");
        assert!(
            std::fs::read_dir(p.path("cache/ckpt")).map_or(true, |mut d| d.next().is_none()),
            "checkpoints left after the commit"
        );
    }
    // A damaged newest checkpoint: discarded with a warning, the one before it resumes.
    let p = Project::new();
    p.write("p.yaml", &autoattack());
    std::env::set_var("ROBARCH_EVAL_CHECKPOINT_SECONDS", "0");
    killed_at(&p, &format!("worker:eval-checkpoint:{AA}@6=kill"), &[]);
    std::env::remove_var("ROBARCH_EVAL_CHECKPOINT_SECONDS");
    let mut sweeps: Vec<_> = robarch::cache::walk(&p.path("cache/ckpt"))
        .unwrap()
        .into_iter()
        .filter(|f| f.ends_with("state.safetensors"))
        .collect();
    sweeps.sort();
    assert_eq!(sweeps.len(), 2, "{sweeps:?}");
    let newest = sweeps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(newest, bytes).unwrap();
    let out = p.run(&["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(p.path(&format!("cache/logs/points/{AA}.log"))).unwrap();
    assert!(
        log.contains("discarding a damaged evaluation checkpoint"),
        "{log}"
    );
    assert!(
        log.contains("resuming the evaluation from its checkpoint"),
        "{log}"
    );
    let got = std::fs::read(entry_dir(&p, "p.yaml", AA).join(PER_SAMPLE)).unwrap();
    assert!(
        got == want,
        "after a damaged checkpoint: the outputs differ"
    );
}
