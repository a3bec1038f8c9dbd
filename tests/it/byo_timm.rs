//! Any timm architecture in one line: three timm models of different kinds (a CNN, a ViT and a
//! hybrid), at test sizes, are built with the pinned timm, scripted by a stage of their own and
//! adversarially trained and evaluated as TorchScript modules; a model timm cannot script fails its
//! stage with timm's message and a hint, and nothing of it is committed.
use crate::common::*;

const PIPELINE: &str = r#"name: timm
seed: 4
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 32, limit: 60}
models:
  cnn: {arch: timm, model: test_resnet}
  vit: {arch: timm, model: test_vit, kwargs: {img_size: 32}}
  hybrid: {arch: timm, model: test_coatnet, kwargs: {img_size: 32}}
training:
  at:
    method: pgd-at
    attack: {norm: linf, eps: 8/255, steps: 1}
    epochs: 1
    batch_size: 16
    optimizer: {name: adamw, lr: 1e-3}
    monitor: {n: 0}
evaluation:
  attacks:
    clean: {}
analysis:
  sparsity:
"#;

#[test]
fn timm_models_are_scripted_trained_and_evaluated() {
    let p = Project::new();
    p.write("p.yaml", PIPELINE);
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let ran = stages(&out, "ran");
    for m in ["cnn", "vit", "hybrid"] {
        for s in [
            format!("script/digits/{m}"),
            format!("import/digits/{m}"),
            format!("train/digits/{m}/at"),
            format!("eval/digits/{m}/at/clean/test"),
            format!("sparsity/digits/{m}/at"),
        ] {
            assert!(ran.contains(&s), "{s} not in {ran:?}");
        }
    }
    // timm's version and the kwargs are in the script stage's key.
    let ex = explain(&p, "p.yaml", "script/digits/vit");
    assert_eq!(
        ex["params"]["timm"],
        robarch::models::timm::TIMM_VERSION,
        "{ex}"
    );
    assert_eq!(ex["params"]["kwargs"]["img_size"], 32, "{ex}");
    // The trained model is a TorchScript module with its input contract recorded.
    let entry = entry_dir(&p, "p.yaml", "train/digits/vit/at");
    assert!(entry.join("model.pt").is_file());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry.join("model.json")).unwrap()).unwrap();
    assert_eq!(info["model"]["arch"], "torchscript", "{info}");
    assert_eq!(info["input"]["normalization"], "robarch", "{info}");
    assert_eq!(info["input"]["resolution"], 32, "{info}");
    // The ViT's attention is counted as attention, from the module's structure.
    let s: serde_json::Value = serde_json::from_slice(
        &std::fs::read(entry_dir(&p, "p.yaml", "sparsity/digits/vit/at").join("sparsity.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(s["by_type"]["attention"].is_object(), "{}", s["by_type"]);
    assert!(s["by_type"]["embedding"].is_object(), "{}", s["by_type"]);

    // Other kwargs: a new script stage and everything after it.
    p.write(
        "p.yaml",
        &PIPELINE.replace(
            "kwargs: {img_size: 32}}\n  hybrid",
            "kwargs: {img_size: 32, depth: 1}}\n  hybrid",
        ),
    );
    let ran = stages(&p.ok(&["run", "--format", "json", "p.yaml"]), "ran");
    assert!(ran.contains(&"script/digits/vit".to_string()), "{ran:?}");
    assert!(!ran.iter().any(|s| s.contains("/cnn")), "{ran:?}");
}

#[test]
fn a_model_timm_cannot_script_fails_its_stage_with_a_hint() {
    let p = Project::new();
    p.write(
        "p.yaml",
        &PIPELINE.replace(
            "  vit: {arch: timm, model: test_vit, kwargs: {img_size: 32}}\n  hybrid: {arch: timm, model: test_coatnet, kwargs: {img_size: 32}}\n",
            "  hiera: {arch: timm, model: hiera_tiny_224}\n",
        )
        .replace("  cnn: {arch: timm, model: test_resnet}\n", ""),
    );
    let out = p.run(&["run", "--format", "json", "p.yaml"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(err.contains("script/digits/hiera"), "{err}");
    assert!(err.contains("models.hiera.model: "), "{err}");
    assert!(err.contains("cannot be scripted"), "{err}");
    assert!(err.contains("torch.jit.trace"), "{err}");
    let committed = stages(&out, "ran");
    assert!(
        !committed.iter().any(|s| s.contains("hiera")),
        "{committed:?}"
    );

    // An unknown name and a kwarg robarch sets: the stage says so, the spec check says where.
    p.write(
        "q.yaml",
        &PIPELINE.replace("model: test_resnet}", "model: test_resnett}"),
    );
    let out = p.run(&["run", "--format", "json", "q.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("timm has no model `test_resnett`"),
        "{}",
        stderr(&out)
    );
    p.write(
        "r.yaml",
        &PIPELINE.replace(
            "model: test_resnet}",
            "model: test_resnet, kwargs: {num_classes: 3}}",
        ),
    );
    let out = p.run(&["run", "r.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("models.cnn.kwargs") && err.contains("set by robarch"),
        "{err}"
    );
}
