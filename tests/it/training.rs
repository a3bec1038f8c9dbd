//! Training methods end to end on the embedded digits: PGD-AT (float32 channels-last, and bfloat16
//! autocast), TRADES and fast AT each give a tiny ResNet clearly more robust accuracy than standard
//! training under the same PGD attack; the
//! optimiser and schedule options (SGD with Nesterov, no decay on 1-d tensors, one-cycle,
//! multistep, label smoothing, gradient clipping) run through a pipeline; bad method settings are
//! rejected naming the field.
use crate::common::{entry_dir, stages, stderr, Project};
use std::collections::BTreeMap;

const SPEC: &str = r#"name: at
seed: 3
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 8}
models:
  resnet18: {preset: tiny}
training:
  std:
    method: standard
    epochs: 4
    batch_size: 64
    optimizer: {name: adamw, lr: 3e-3}
  pgd:
    method: pgd-at
    attack: {norm: linf, eps: 0.15, steps: 5}
    epochs: 4
    batch_size: 64
    optimizer: {name: adamw, lr: 3e-3}
    schedule: {name: multistep, milestones: [3], gamma: 0.3}
  bf16:
    method: pgd-at
    attack: {norm: linf, eps: 0.15, steps: 5}
    epochs: 4
    batch_size: 64
    optimizer: {name: adamw, lr: 3e-3}
    amp: bf16
    channels_last: off
  trades:
    method: trades
    beta: 6
    attack: {norm: linf, eps: 0.15, steps: 5}
    epochs: 4
    batch_size: 64
    optimizer: {name: adamw, lr: 3e-3}
  fast:
    method: fast-at
    attack: {eps: 0.15}
    epochs: 4
    batch_size: 64
    optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 5e-4, no_decay_1d: true}
    schedule: {name: onecycle}
    label_smoothing: 0.1
    grad_clip: 5
evaluation:
  splits: [test]
  attacks:
    clean: {}
    pgd: {norm: linf, eps: 0.15, steps: 10}
report: {tables: [robust_accuracy], formats: [csv]}
"#;

/// `(training, attack) → accuracy (%)` from the robust-accuracy table.
fn table(p: &Project) -> BTreeMap<(String, String), f64> {
    let csv = std::fs::read_to_string(p.path("reports/at/robust_accuracy.csv")).unwrap();
    let mut lines = csv.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut out = BTreeMap::new();
    for l in lines {
        let row: Vec<&str> = l.split(',').collect();
        for (h, v) in head.iter().zip(&row).skip(3) {
            if let Ok(v) = v.parse() {
                out.insert((row[2].to_string(), h.clone()), v);
            }
        }
    }
    out
}

#[test]
fn adversarial_training_methods_beat_standard_training_under_attack() {
    let p = Project::new();
    p.write("at.yaml", SPEC);
    p.ok(&["run", "--format", "json", "at.yaml"]);
    let t = table(&p);
    let get = |tr: &str, a: &str| t[&(tr.to_string(), a.to_string())];
    for tr in ["std", "pgd", "bf16", "trades", "fast"] {
        println!(
            "{tr}: clean {:.1}%, PGD-10 ε∞=0.15 {:.1}%",
            get(tr, "clean"),
            get(tr, "pgd")
        );
        assert!(get(tr, "clean") > 50.0, "{tr} did not learn: {t:?}");
    }
    // Monitoring (on by default): per-epoch accuracies on fixed train/test subsets, and the best
    // epoch by test robust accuracy kept as model_best.safetensors.
    let dir = entry_dir(&p, "at.yaml", "train/digits/resnet18/pgd");
    // A native model records its input contract as imported and loaded ones do: [0, 1] pixels,
    // normalised by robarch in front of the network, at the dataset's size and channels.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let input = &info["input"];
    assert_eq!(input["pixels"], serde_json::json!([0, 1]), "{info}");
    assert_eq!(input["normalization"], "robarch", "{info}");
    assert_eq!(input["resolution"], 8, "{info}");
    assert_eq!(input["channels"], 1, "{info}");
    assert_eq!(input["mean"], info["mean"], "{info}");
    let history: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("history.json")).unwrap()).unwrap();
    assert_eq!(history.len(), 4);
    let robust: Vec<f64> = history
        .iter()
        .map(|r| {
            r["test_robust_accuracy"]
                .as_f64()
                .expect("monitored every epoch")
        })
        .collect();
    for r in &history {
        for k in [
            "train_clean_accuracy",
            "train_robust_accuracy",
            "test_clean_accuracy",
        ] {
            let v = r[k].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{k}: {r}");
        }
    }
    let best = (0..4).fold(0, |b, i| if robust[i] > robust[b] { i } else { b });
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(
        meta.contains(&format!("\"best_epoch\": {}", best + 1))
            || meta.contains(&format!("\"best_epoch\":{}", best + 1)),
        "best epoch {} of {robust:?} not in {meta}",
        best + 1
    );
    assert!(dir.join("model_best.safetensors").exists());
    println!("pgd-at test robust accuracy per epoch: {robust:?}");
    // Evaluating the best checkpoint reuses every trained model: only evaluations and the report
    // run. PGD-AT's best epoch is its last here, so its numbers are unchanged.
    p.write(
        "at.yaml",
        &SPEC.replace("evaluation:\n", "evaluation:\n  checkpoint: best\n"),
    );
    let again = p.ok(&["run", "--format", "json", "at.yaml"]);
    let ran = stages(&again, "ran");
    assert!(
        !ran.is_empty() && ran.iter().all(|s| s.starts_with("eval/") || s == "report"),
        "{ran:?}"
    );
    if best == 3 {
        let t2 = table(&p);
        assert_eq!(
            t2[&("pgd".to_string(), "pgd".to_string())],
            get("pgd", "pgd")
        );
    }
    // What ran: channels-last by default for the CNN, bfloat16 autocast when asked (on the CPU).
    let meta = |t: &str| -> serde_json::Value {
        let m = std::fs::read(
            entry_dir(&p, "at.yaml", &format!("train/digits/resnet18/{t}")).join("meta.json"),
        );
        serde_json::from_slice(&m.unwrap()).unwrap()
    };
    let (pgd, bf16) = (meta("pgd").to_string(), meta("bf16").to_string());
    assert!(
        pgd.contains(r#""amp":"off""#) && pgd.contains(r#""channels_last":true"#),
        "{pgd}"
    );
    assert!(
        bf16.contains(r#""amp":"bf16""#) && bf16.contains(r#""channels_last":false"#),
        "{bf16}"
    );
    let std = get("std", "pgd");
    for tr in ["pgd", "bf16", "trades", "fast"] {
        assert!(
            get(tr, "pgd") >= std + 15.0,
            "{tr} is not clearly more robust than standard training: {t:?}"
        );
    }
}

#[test]
fn bad_training_settings_name_the_field() {
    let p = Project::new();
    let trades_attack = "attack: {norm: linf, eps: 0.15, steps: 5}\n    epochs: 4\n    batch_size: 64\n    optimizer: {name: adamw, lr: 3e-3}\n  fast";
    let cases = [
        (
            "method: pgd-at",
            "method: pgd-at\n    beta: 2".to_string(),
            "beta",
        ),
        (
            "attack: {eps: 0.15}",
            "attack: {eps: 0.15, steps: 3}".into(),
            "steps",
        ),
        (
            trades_attack,
            trades_attack.replace("steps: 5}", "steps: 5, loss: cw}"),
            "loss",
        ),
        (
            "{name: onecycle}",
            "{name: onecycle, milestones: [2]}".into(),
            "milestones",
        ),
        (
            "label_smoothing: 0.1",
            "label_smoothing: 1.5".into(),
            "label_smoothing",
        ),
    ];
    for (i, (from, to, field)) in cases.iter().enumerate() {
        let spec = SPEC.replacen(from, to, 1);
        assert_ne!(spec, SPEC, "case {i}: `{from}` not found");
        p.write("bad.yaml", &spec);
        let out = p.run(&["run", "--format", "json", "bad.yaml"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "case {i} accepted");
        assert!(
            err.contains("bad.yaml") && err.contains(field),
            "case {i}: the error must name the file and `{field}`:\n{err}"
        );
        assert_eq!(p.entries(), 0, "case {i}: nothing may be cached");
    }
    // The best checkpoint needs monitoring.
    let spec = SPEC
        .replace("evaluation:\n", "evaluation:\n  checkpoint: best\n")
        .replace(
            "    method: standard\n",
            "    method: standard\n    monitor: {n: 0}\n",
        );
    p.write("bad.yaml", &spec);
    let out = p.run(&["run", "--format", "json", "bad.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("evaluation.checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.entries(), 0);
}
