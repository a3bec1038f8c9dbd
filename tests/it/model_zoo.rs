//! The model zoo: parameter counts against the reference implementations, logits shapes of every
//! preset at 32px and 224px, and train/eval behaviour (batch-norm statistics, dropout, drop-path).
use robarch::models::{self, ModelIo, Network, REGISTRY};
use robarch::spec::ModelSpec;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn build(arch: &str, preset: &str, over: &[(&str, &str)], io: ModelIo) -> Network {
    let overrides: BTreeMap<String, serde_yaml::Value> = over
        .iter()
        .map(|(k, v)| (k.to_string(), serde_yaml::from_str(v).unwrap()))
        .collect();
    let spec = ModelSpec {
        arch: Some(arch.into()),
        preset: preset.into(),
        overrides,
    };
    let p = models::resolve(arch, &spec).unwrap_or_else(|e| panic!("{arch}/{preset}: {e:?}"));
    let a = models::find(arch).unwrap();
    (a.fits)(&p.config, &io)
        .unwrap_or_else(|e| panic!("{arch}/{preset} at {io:?}: {}", e.message));
    let c = io.in_channels as usize;
    Network::new(&p, &io, &vec![0.5; c], &vec![0.25; c], Device::Cpu, 3).unwrap()
}

fn io(size: i64, classes: i64) -> ModelIo {
    ModelIo {
        in_channels: 3,
        image_size: size,
        num_classes: classes,
    }
}

/// (arch, preset, image size, classes, expected parameters, source of the expected number).
#[rustfmt::skip]
const COUNTS: &[(&str, &str, i64, i64, i64, &str)] = &[
    ("resnet18", "imagenet", 224, 1000, 11_689_512, "timm/torchvision resnet18"),
    ("resnet18", "cifar", 32, 10, 11_173_962, "kuangliu/pytorch-cifar ResNet18 (11.17M)"),
    ("resnet50", "imagenet", 224, 1000, 25_557_032, "timm/torchvision resnet50"),
    ("resnet50", "cifar", 32, 10, 23_520_842, "kuangliu/pytorch-cifar ResNet50 (23.5M)"),
    ("preact_resnet18", "cifar", 32, 10, 11_172_170, "locuslab/robust_overfitting PreActResNet18 (11.17M)"),
    ("preact_resnet18", "imagenet", 224, 1000, 11_687_720, "same network, 7×7/2 stem (torchvision resnet18 − stem BN + final BN)"),
    ("wrn28_10", "cifar", 32, 10, 36_479_194, "Zagoruyko & Komodakis 2016, WRN-28-10 (36.5M)"),
    ("wrn34_10", "cifar", 32, 10, 46_160_474, "TRADES/RobustBench WRN-34-10 (46.16M)"),
    ("wrn28_10", "imagenet", 224, 1000, 37_115_704, "same network, 7×7/2 stem, 1000 classes"),
    ("wrn34_10", "imagenet", 224, 1000, 46_796_984, "same network, 7×7/2 stem, 1000 classes"),
    ("vgg16_bn", "imagenet", 224, 1000, 138_365_992, "timm/torchvision vgg16_bn"),
    ("vgg16_bn", "cifar", 32, 10, 14_728_266, "kuangliu/pytorch-cifar VGG16 (14.7M)"),
    ("densenet121", "imagenet", 224, 1000, 7_978_856, "timm/torchvision densenet121"),
    ("densenet121", "cifar", 32, 10, 6_956_426, "kuangliu DenseNet121 6,956,298 + stem BN (128) (6.96M)"),
    ("mobilenetv2", "imagenet", 224, 1000, 3_504_872, "timm mobilenetv2_100 / torchvision mobilenet_v2"),
    ("mobilenetv2", "cifar", 32, 10, 2_236_682, "chenyaofo/pytorch-cifar-models mobilenetv2_x1_0 (2.24M)"),
    ("regnetx", "imagenet", 224, 1000, 2_684_792, "timm regnetx_002"),
    ("regnetx", "x_400mf", 224, 1000, 5_157_512, "timm regnetx_004"),
    ("regnetx", "cifar", 32, 10, 2_321_946, "kuangliu/pytorch-cifar RegNetX_200MF"),
    ("convnext", "imagenet", 224, 1000, 28_589_128, "timm convnext_tiny"),
    ("vit", "imagenet", 224, 1000, 86_567_656, "timm vit_base_patch16_224"),
    ("vit", "cifar", 32, 10, 21_342_346, "ViT-S/4 at 32px (timm VisionTransformer, img 32, patch 4)"),
    ("deit", "imagenet", 224, 1000, 22_436_432, "timm deit_small_distilled_patch16_224"),
    ("swin", "imagenet", 224, 1000, 28_288_354, "timm swin_tiny_patch4_window7_224"),
    ("pvt_v2", "imagenet", 224, 1000, 25_362_856, "timm pvt_v2_b2"),
    ("pvt_v2", "b0", 224, 1000, 3_666_760, "timm pvt_v2_b0"),
    ("cait", "imagenet", 224, 1000, 11_956_264, "timm cait_xxs24_224"),
    ("coatnet", "imagenet", 224, 1000, 25_036_820, "timm coatnet_0_224 (paper: 25M)"),
    ("mobilevit", "imagenet", 224, 1000, 5_578_632, "timm mobilevit_s"),
    ("mobilevit", "xs", 224, 1000, 2_317_848, "timm mobilevit_xs"),
    ("mobilevit", "xxs", 224, 1000, 1_272_024, "timm mobilevit_xxs"),
    ("mixer", "imagenet", 224, 1000, 18_528_264, "timm mixer_s16_224"),
    ("poolformer", "imagenet", 224, 1000, 11_915_176, "timm poolformer_s12"),
    ("cct", "imagenet", 224, 1000, 22_367_273, "SHI-Labs/Compact-Transformers cct_14_7x2_224 (paper: 22.36M)"),
    ("cct", "cifar", 32, 10, 3_760_139, "SHI-Labs/Compact-Transformers cct_7_3x1_32 (paper: 3.76M)"),
    ("cvt", "imagenet", 224, 1000, 19_997_480, "microsoft/CvT CvT-13 = HF CvtConfig() at 1000 classes (paper: 20M)"),
];

#[test]
fn parameter_counts_match_references() {
    let mut wrong = Vec::new();
    for &(arch, preset, size, classes, want, source) in COUNTS {
        let got = build(arch, preset, &[], io(size, classes)).num_parameters();
        if got != want {
            wrong.push(format!(
                "{arch}/{preset}: {got} parameters, {source} has {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_family_has_a_reference_count_at_224px() {
    for a in REGISTRY.iter().filter(|a| a.native()) {
        assert!(
            COUNTS
                .iter()
                .any(|c| c.0 == a.name && c.1 == "imagenet" && c.2 == 224 && c.3 == 1000),
            "{} has no 224px/1000-class count in the table",
            a.name
        );
        for p in ["tiny", "cifar", "imagenet"] {
            assert!(a.presets.contains(&p), "{} lacks preset {p}", a.name);
        }
    }
}

#[test]
fn every_preset_gives_logits_at_32_and_224_px() {
    let _guard = tch::no_grad_guard();
    for a in REGISTRY.iter().filter(|a| a.native()) {
        // The paper-scale models at 224px run one image; the CIFAR presets run at their 32px.
        for (preset, size, batch) in [
            ("tiny", 32, 2),
            ("tiny", 224, 2),
            ("cifar", 32, 2),
            ("imagenet", 32, 2),
            ("imagenet", 224, 1),
        ] {
            let t0 = std::time::Instant::now();
            let net = build(a.name, preset, &[], io(size, 7));
            let x = Tensor::rand([batch, 3, size, size], (Kind::Float, Device::Cpu));
            let t1 = std::time::Instant::now();
            let y = net.forward_t(&x, false);
            assert_eq!(y.size(), [batch, 7], "{}/{preset} at {size}px", a.name);
            println!(
                "{}/{preset} {size}px: build {:.2}s forward {:.2}s",
                a.name,
                (t1 - t0).as_secs_f64(),
                t1.elapsed().as_secs_f64()
            );
            assert!(
                bool::try_from(y.isfinite().all()).unwrap(),
                "{}/{preset} at {size}px: non-finite logits",
                a.name
            );
        }
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn train_and_eval_modes_behave() {
    let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let mut stochastic = 0;
    let mut with_bn = 0;
    for a in REGISTRY.iter().filter(|a| a.native()) {
        let tiny = (a.preset)("tiny").unwrap();
        // Switch on every source of training-time randomness the family has.
        let mut over: Vec<(&str, &str)> = ["drop_path_rate", "dropout"]
            .into_iter()
            .filter(|k| tiny.get(*k).is_some())
            .map(|k| (k, "0.3"))
            .collect();
        if tiny.get("head").is_some_and(|h| h == "linear") {
            // VGG's dropout lives in its MLP head.
            over.extend([("head", "mlp"), ("hidden", "32")]);
        }
        let net = build(a.name, "tiny", &over, io(32, 5));
        // Move every parameter off its initial value: zero-initialised last BN layers (timm's
        // RegNet) or tiny layer scales would otherwise hide a residual branch.
        tch::no_grad(|| {
            for (n, mut t) in net.named_tensors() {
                if !n.starts_with("normalize.") && !n.contains("running_") && t.requires_grad() {
                    let _ = t.g_add_(&(t.randn_like() * 0.05));
                }
            }
        });
        let stats = |net: &Network| -> Vec<Tensor> {
            net.named_tensors()
                .into_iter()
                .filter(|(n, _)| n.ends_with("running_mean"))
                .map(|(_, t)| t.copy())
                .collect()
        };
        // Eval is deterministic and leaves batch-norm statistics alone.
        let before = stats(&net);
        let (e1, e2) = tch::no_grad(|| (net.forward_t(&x, false), net.forward_t(&x, false)));
        assert_eq!(
            max_diff(&e1, &e2),
            0.0,
            "{}: eval not deterministic",
            a.name
        );
        for (b, t) in before.iter().zip(stats(&net)) {
            assert_eq!(
                max_diff(b, &t),
                0.0,
                "{}: eval changed BN statistics",
                a.name
            );
        }
        // Training updates them.
        let t1 = tch::no_grad(|| net.forward_t(&x, true));
        if !before.is_empty() {
            with_bn += 1;
            let moved = before
                .iter()
                .zip(stats(&net))
                .any(|(b, t)| max_diff(b, &t) > 0.0);
            assert!(moved, "{}: training did not update BN statistics", a.name);
        }
        if !over.is_empty() {
            stochastic += 1;
            tch::manual_seed(1);
            let t2 = tch::no_grad(|| net.forward_t(&x, true));
            tch::manual_seed(2);
            let t3 = tch::no_grad(|| net.forward_t(&x, true));
            assert!(
                max_diff(&t2, &t3) > 0.0,
                "{}: dropout/drop-path inactive in training",
                a.name
            );
            let _ = t1;
        }
    }
    assert!(
        with_bn >= 8 && stochastic >= 6,
        "{with_bn} BN families, {stochastic} stochastic"
    );
}

/// Every architecture's weights get a layer type for the sparsity analysis, attention-based ones
/// have attention weights and CNNs have none, and every linear map gets finite norms.
#[test]
fn analyses_classify_every_weight_of_every_architecture() {
    use robarch::analysis::{norms, sparsity};
    use robarch::models::ArchKind;
    for a in REGISTRY.iter().filter(|a| a.native()) {
        let net = build(a.name, "tiny", &[], io(32, 10));
        let named = net.named_tensors();
        for (n, t) in &named {
            let leaf = n.rsplit('.').next().unwrap();
            let matrix = t.dim() >= 2 && !n.starts_with("normalize.") && leaf != "bias";
            if matrix && !n.contains("norm") && !n.contains(".bn") {
                assert!(
                    sparsity::layer_type(n, t.dim()).is_some(),
                    "{}: {n} {:?} has no layer type",
                    a.name,
                    t.size()
                );
            }
        }
        let r = sparsity::analyse(&named, &sparsity::Thresholds::default());
        let attention = r.by_type.get("attention").map_or(0, |t| t.numel);
        match a.kind {
            ArchKind::Transformer | ArchKind::Hybrid => {
                assert!(attention > 0, "{}: no attention weights", a.name)
            }
            ArchKind::Cnn | ArchKind::Mlp => {
                assert_eq!(
                    attention, 0,
                    "{}: attention weights in a {:?}",
                    a.name, a.kind
                )
            }
            ArchKind::External => {}
        }
        let layers = norms::analyse(&named, 8, norms::Lanczos::default());
        assert!(
            layers.len() >= 3,
            "{}: {} linear maps",
            a.name,
            layers.len()
        );
        for l in &layers {
            for v in [l.fro, l.spectral, l.spectral_op, l.l1, l.l21, l.l1inf] {
                assert!(
                    v.is_finite() && v > 0.0,
                    "{}: {} has a norm {v}",
                    a.name,
                    l.name
                );
            }
            assert!(l.spectral <= l.fro * (1.0 + 1e-9), "{}: {}", a.name, l.name);
        }
    }
}
