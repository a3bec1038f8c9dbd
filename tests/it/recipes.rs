//! Named training recipes and per-model overrides: the paper pipelines plan with the authors'
//! settings (per architecture kind), user fields win over the recipe, and bad recipes or
//! overrides are located errors.
use crate::common::*;

/// A stage's parameters, from `robarch explain --format json`.
fn params(p: &Project, pipeline: &str, stage: &str) -> serde_json::Value {
    explain(p, pipeline, stage)["params"].clone()
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    (v.as_f64().unwrap() - want).abs() < 1e-12
}

#[test]
fn paper_pipelines_train_every_model_with_the_authors_recipe() {
    let p = Project::new();
    cifar_fixture(&p.path("datasets/cifar-10-batches-bin"));
    imagenette_fixture(&p.path("datasets/imagenette2-320"), 2);
    let root = crate::common::ROOT;
    for name in ["cifar10", "imagenette"] {
        let text = std::fs::read_to_string(format!("{root}/pipelines/{name}.yaml")).unwrap();
        p.write(&format!("{name}.yaml"), &text);
    }
    // (model, lr, weight decay): CNNs and MLP-like models 1e-4 / 0.01, attention-based 2.5e-4 / 0.05.
    let cases = [
        ("resnet18", 1e-4, 0.01),
        ("wrn34_10", 1e-4, 0.01),
        ("convnext", 1e-4, 0.01),
        ("mixer", 1e-4, 0.01),
        ("vit", 2.5e-4, 0.05),
        ("swin", 2.5e-4, 0.05),
        ("pvt_v2", 2.5e-4, 0.05),
        ("coatnet", 2.5e-4, 0.05),
    ];
    for (dataset, augment0) in [
        ("cifar10", "autoaugment"),
        ("imagenette", "random_resized_crop"),
    ] {
        let file = format!("{dataset}.yaml");
        let dag = stdout(&p.ok(&["dag", &file]));
        let trains = dag
            .lines()
            .filter(|l| !l.starts_with(' ')) // a stage line, not its inputs
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|s| s.starts_with("train/"))
            })
            .count();
        assert_eq!(trains, 21, "every model of the study is trained:\n{dag}");
        for (model, lr, wd) in cases {
            let t = params(&p, &file, &format!("train/{dataset}/{model}/pgd-linf"));
            assert_eq!(t["method"], "pgd-at");
            assert!(close(&t["attack"]["eps"], 8.0 / 255.0));
            assert_eq!(t["attack"]["steps"], 15);
            assert!(close(&t["attack"]["step_size"], 0.8 / 255.0));
            assert_eq!(t["attack"]["random_start"], true);
            assert_eq!(t["attack_mode"], "eval");
            assert_eq!(t["epochs"], 100);
            assert_eq!(t["batch_size"], 128);
            assert_eq!(t["optimizer"]["name"], "adamw");
            assert!(
                close(&t["optimizer"]["lr"], lr),
                "{model}: {}",
                t["optimizer"]
            );
            assert!(close(&t["optimizer"]["weight_decay"], wd), "{model}");
            assert_eq!(t["schedule"]["name"], "cosine");
            assert_eq!(t["schedule"]["warmup_epochs"], 8);
            assert!(close(&t["schedule"]["min_lr"], 5e-6));
            let first = t["augment"][0].as_object().unwrap();
            assert!(first.contains_key(augment0), "{dataset}: {}", t["augment"]);
            assert_eq!(t["seed"], 34257);
        }
    }
}

const BASE: &str = r#"name: r
seed: 1
device: cpu
datasets:
  d: {source: embedded:digits, resolution: 8, limit: 40}
models:
  resnet18: {preset: tiny}
  vit: {preset: tiny, patch_size: 2}
training:
  paper:
    recipe: liu2022-cifar10
    epochs: 2
    schedule: {warmup_epochs: 1}
    optimizer: {lr: 3e-3}
    attack: {steps: 2}
    augment: [hflip]
evaluation:
  attacks:
    clean: {}
"#;

#[test]
fn user_fields_and_overrides_win_over_the_recipe() {
    let p = Project::new();
    p.write("r.yaml", BASE);
    let r = params(&p, "r.yaml", "train/d/resnet18/paper");
    assert_eq!(r["epochs"], 2);
    assert_eq!(r["attack"]["steps"], 2, "user's steps");
    assert!(
        close(&r["attack"]["step_size"], 0.8 / 255.0),
        "recipe's step"
    );
    assert!(close(&r["optimizer"]["lr"], 3e-3), "user's lr");
    assert!(
        close(&r["optimizer"]["weight_decay"], 0.01),
        "recipe's decay"
    );
    assert_eq!(r["schedule"]["warmup_epochs"], 1);
    assert_eq!(r["augment"].as_array().unwrap().len(), 1, "lists replace");
    // The recipe's transformer override is merged over the user's fields for the ViT.
    let v = params(&p, "r.yaml", "train/d/vit/paper");
    assert!(close(&v["optimizer"]["lr"], 2.5e-4));
    assert!(close(&v["optimizer"]["weight_decay"], 0.05));

    // The user's own overrides: by kind, then by model name (most specific last).
    p.write(
        "r.yaml",
        &BASE.replace(
            "    augment: [hflip]\n",
            "    augment: [hflip]\n    overrides:\n      transformer: {optimizer: {lr: 1e-3}, epochs: 3}\n      vit: {epochs: 4}\n      resnet18: {batch_size: 16}\n",
        ),
    );
    let v = params(&p, "r.yaml", "train/d/vit/paper");
    assert!(close(&v["optimizer"]["lr"], 1e-3));
    assert!(
        close(&v["optimizer"]["weight_decay"], 0.05),
        "recipe's override kept"
    );
    assert_eq!(v["epochs"], 4);
    let r = params(&p, "r.yaml", "train/d/resnet18/paper");
    assert_eq!(
        (r["batch_size"].as_u64(), r["epochs"].as_u64()),
        (Some(16), Some(2))
    );

    // Without a recipe, overrides work on a plain entry too; only the overridden model's key
    // changes, so only its training would rerun.
    let plain = BASE
        .replace("    recipe: liu2022-cifar10\n", "    method: pgd-at\n")
        .replace(
            "attack: {steps: 2}",
            "attack: {norm: linf, eps: 8/255, steps: 2}",
        )
        .replace("optimizer: {lr: 3e-3}", "optimizer: {name: sgd, lr: 0.1}");
    p.write("r.yaml", &plain);
    let key = |stage: &str| explain(&p, "r.yaml", stage)["key"].to_string();
    let (vit, resnet) = (key("train/d/vit/paper"), key("train/d/resnet18/paper"));
    assert!(close(
        &params(&p, "r.yaml", "train/d/vit/paper")["optimizer"]["lr"],
        0.1
    ));
    p.write(
        "r.yaml",
        &plain.replace(
            "    augment: [hflip]\n",
            "    augment: [hflip]\n    overrides: {vit: {optimizer: {lr: 0.05}}}\n",
        ),
    );
    assert!(close(
        &params(&p, "r.yaml", "train/d/vit/paper")["optimizer"]["lr"],
        0.05
    ));
    assert_ne!(key("train/d/vit/paper"), vit);
    assert_eq!(
        key("train/d/resnet18/paper"),
        resnet,
        "resnet18's stage is unchanged"
    );
}

#[test]
fn bad_recipes_and_overrides_are_located_errors() {
    let p = Project::new();
    let bad = |yaml: &str, want: &[&str]| {
        p.write("r.yaml", yaml);
        let out = p.run(&["run", "--format", "json", "r.yaml"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        for w in want {
            assert!(err.contains(w), "missing `{w}` in:\n{err}");
        }
        assert!(!p.path("cache").exists() || p.entries() == 0);
    };
    bad(
        &BASE.replace("liu2022-cifar10", "liu2022-cifar"),
        &[
            "r.yaml:11:5: training.paper.recipe: unknown recipe `liu2022-cifar`",
            "did you mean `liu2022-cifar10`?",
        ],
    );
    bad(
        &BASE.replace("epochs: 2", "epochs: many"),
        &["r.yaml:12:5: training.paper.epochs: invalid type: string \"many\""],
    );
    bad(
        &BASE.replace("optimizer: {lr: 3e-3}", "optimizer: {lr: 3e-3, lrr: 1}"),
        &["r.yaml:14:27: training.paper.optimizer.lrr: unknown field `lrr`"],
    );
    // The recipe's 8-epoch warm-up does not fit 2 epochs: the hint says what to change.
    bad(
        &BASE.replace("    schedule: {warmup_epochs: 1}\n", ""),
        &[
            "training.paper.schedule.warmup_epochs: is longer than `epochs`",
            "warmup_epochs",
        ],
    );
    let with = |o: &str| {
        BASE.replace(
            "    augment: [hflip]\n",
            &format!("    augment: [hflip]\n    overrides: {o}\n"),
        )
    };
    bad(
        &with("{vitt: {epochs: 3}}"),
        &["r.yaml:17:17: training.paper.overrides.vitt: is neither a model of this pipeline nor an architecture kind", "did you mean `vit`?"],
    );
    bad(
        &with("{cnn: {optimizer: {lrr: 1}}}"),
        &["training.paper.overrides.cnn: for model `resnet18`: unknown field `lrr`"],
    );
    bad(
        &with("{transformer: {schedule: {warmup_epochs: 5}}}"),
        &["training.paper.overrides.transformer.schedule.warmup_epochs: for model `vit`: is longer than `epochs`"],
    );
    bad(
        &with("{vit: 3}"),
        &["training.paper.overrides.vit: must be a mapping of training fields"],
    );
}
