//! Compute estimates: `status` and `run --dry-run` cost every stage of the paper's pipelines from
//! forward FLOPs × passes × images, before their data is there.
use crate::common::*;

/// Forward FLOPs per image of `arch` at `preset`, from the embedded table.
fn forward(arch: &str, preset: &str) -> f64 {
    let text = std::fs::read_to_string(format!("{ROOT}/src/models/flops.json")).unwrap();
    let table: serde_json::Value = serde_json::from_str(&text).unwrap();
    table
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["arch"] == arch && e["preset"] == preset)
        .and_then(|e| e["forward_flops"].as_f64())
        .unwrap()
}

#[test]
fn paper_pipelines_are_costed_before_their_data_is_there() {
    let p = Project::new();
    for (name, preset, train_images) in [("cifar10", "cifar", 50_000.0), ("imagenette", "imagenet", 9_469.0)] {
        let file = format!("{name}.yaml");
        std::fs::copy(format!("{ROOT}/pipelines/{file}"), p.path(&file)).unwrap();
        let j = json_out(&p.ok(&["status", &file, "--format", "json", "--tflops", "80"]));
        // The per-model subtotals add up to every model stage's estimate.
        let per_model: f64 = j["estimate"]["per_model"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["flops"].as_f64().unwrap())
            .sum();
        let of_models: f64 = j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["id"].as_str().unwrap().split('/').nth(2).is_some())
            .filter_map(|s| s["flops"].as_f64())
            .sum();
        assert!((per_model - of_models).abs() <= 1e-9 * of_models, "{name}: {per_model} vs {of_models}");
        let est = &j["estimate"];
        assert_eq!(est["stages_without_estimate"], 0, "{name}: {est}");
        let flops = est["flops"].as_f64().unwrap();
        let hours = est["gpu_hours"].as_f64().unwrap();
        assert_eq!(est["tflops"], 80.0);
        assert!((hours - flops / 80e12 / 3600.0).abs() <= 1e-9 * hours, "{est}");
        let stage = |id: &str| {
            j["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap_or_else(|| panic!("no {id}"))
                .clone()
        };
        let mut sum = 0.0;
        for s in j["stages"].as_array().unwrap() {
            let f = s["flops"].as_f64().unwrap();
            if matches!(s["kind"].as_str(), Some("train" | "evaluate")) {
                assert!(f > 0.0, "{s}");
            }
            sum += f;
        }
        assert!((sum - flops).abs() <= 1e-9 * flops);
        // ResNet-18 under the authors' recipe: 100 epochs, each training image through PGD-15
        // (15 gradient passes and a check) and the update: 49 forward-equivalents; the monitor's
        // 2 × 256 points add 1% (CIFAR-10) to 5% (ImageNette).
        let f = forward("resnet18", preset);
        let train = stage(&format!("train/{name}/resnet18/pgd-linf"))["flops"].as_f64().unwrap();
        let base = 100.0 * train_images * 49.0 * f;
        assert!(train >= base && train < 1.06 * base, "{name}: {train} vs {base}");
        // PGD-20 on 1,000 test points: a clean forward, 20 gradient passes, a check.
        let eval = stage(&format!("eval/{name}/resnet18/pgd-linf/pgd-linf/test"))["flops"]
            .as_f64()
            .unwrap();
        assert!((eval - 1000.0 * 62.0 * f).abs() < 1e-6 * eval, "{eval}");
    }
    // A dry run: each stage with its estimate, then the total of what would run.
    let out = p.ok(&["run", "cifar10.yaml", "--dry-run"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("would run") && l.contains("FLOP") && l.ends_with("train/cifar10/vit/pgd-linf")),
        "{text}"
    );
    assert!(text.contains("estimated compute of what would run: ") && text.contains("GPU-hours at 40 TFLOP/s"), "{text}");
    // One symbol per meaning, with its legend; a subtotal per model.
    assert!(
        text.lines().any(|l| l.starts_with("would run") && l.contains(" none  prepare/cifar10")),
        "{text}"
    );
    assert!(text.contains("`none`: no network passes") && text.contains("`?`: no estimate"), "{text}");
    let subtotals: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "per model, what would run:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        subtotals.iter().any(|l| l.trim_start().starts_with("vit ") && l.contains("FLOP")),
        "{text}"
    );
    // status in text: the estimate per stage on stdout, the total on stderr.
    let out = p.ok(&["status", "cifar10.yaml"]);
    assert!(stdout(&out).lines().all(|l| l.starts_with("missing")), "{}", stdout(&out));
    assert!(stderr(&out).contains("estimated compute of the whole pipeline"), "{}", stderr(&out));
    let bad = p.run(&["status", "cifar10.yaml", "--tflops", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("`0` is not a positive number"), "{}", stderr(&bad));
}
