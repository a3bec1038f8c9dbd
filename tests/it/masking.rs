//! Gradient masking is caught: on a classifier that quantises its input (zero gradient almost
//! everywhere, the "bit-depth reduction" defence that Athalye et al. 2018 broke), the gradient-based
//! attacks fail while the Square attack's random search breaks points, and the report flags it —
//! both as "black-box attack beats white-box" (Carlini et al. 2019) and inside AutoAttack, whose
//! Square member breaks points its gradient members left robust.
use robarch::attacks::verdict::{warnings, EvalResult};
use robarch::attacks::{self, AttackClass, AttackConfig, Use};
use robarch::spec::{AttackSpec, Norm, Real};
use tch::{Kind, Tensor};

const N: i64 = 64;
const EPS: f64 = 0.1;

/// A linear classifier on the input rounded to multiples of 1/4: `round` has a zero gradient.
fn quantised() -> impl Fn(&Tensor) -> Tensor {
    let w = robarch::torch::with_seed(7, || {
        Tensor::randn([64, 10], (Kind::Float, tch::Device::Cpu))
    });
    move |x: &Tensor| ((x * 4.0).round() / 4.0).flatten(1, -1).matmul(&w)
}

fn resolve(kind: &str, f: impl FnOnce(&mut AttackSpec)) -> AttackConfig {
    let mut a = AttackSpec {
        norm: Some(Norm::Linf),
        eps: Some(Real(EPS)),
        ..Default::default()
    };
    f(&mut a);
    AttackConfig::resolve(kind, &a).unwrap()
}

#[test]
fn square_exposes_a_quantised_model_that_defeats_gradient_attacks() {
    let model = quantised();
    let x = robarch::torch::with_seed(8, || {
        Tensor::rand([N, 1, 8, 8], (Kind::Float, tch::Device::Cpu))
    });
    // Labels are the model's own predictions: clean accuracy 100%.
    let y = model(&x).argmax(1, false);
    let evaluate = |name: &str, c: &AttackConfig| {
        let out = c.run(&model, &x, &y, &attacks::Streams::Batch(3), Use::Evaluation);
        // Every returned point stays inside the threat model.
        let linf = f64::try_from((&out.adv - &x).abs().max()).unwrap();
        assert!(linf <= EPS + 1e-6, "{name}: ‖δ‖∞ = {linf}");
        let robust: Vec<bool> =
            Vec::<bool>::try_from(attacks::correct(&model, &out.adv, &y)).unwrap();
        let acc = robust.iter().filter(|&&r| r).count() as f64 / N as f64;
        println!(
            "{name}: robust accuracy {:.1}% {:?}",
            100.0 * acc,
            out.notes
        );
        EvalResult {
            dataset: "synthetic".into(),
            model: "quantised-linear".into(),
            training: "none".into(),
            attack: name.into(),
            split: "test".into(),
            seed: None,
            n: N as usize,
            clean_accuracy: 1.0,
            robust_accuracy: acc,
            eps: EPS,
            norm: Some(Norm::Linf),
            class: c.class(),
            robust,
            notes: out.notes,
            curve: None,
        }
    };
    let pgd = evaluate(
        "pgd",
        &resolve("pgd", |a| {
            a.set("steps", 20);
        }),
    );
    let apgd = evaluate("apgd-ce", &resolve("apgd-ce", |_| {}));
    let square = evaluate(
        "square",
        &resolve("square", |a| {
            a.set("queries", 1000);
        }),
    );
    assert_eq!(square.class, AttackClass::BlackBox);
    assert!(
        square.robust_accuracy + 0.2 < pgd.robust_accuracy.min(apgd.robust_accuracy),
        "Square must beat the masked gradient attacks by a wide margin: square {}, pgd {}, apgd {}",
        square.robust_accuracy,
        pgd.robust_accuracy,
        apgd.robust_accuracy
    );
    let w = warnings(&[pgd, apgd, square]).join("\n");
    assert!(
        w.contains("black-box attack beats white-box: `square`") && w.contains("gradient masking"),
        "{w}"
    );
    // AutoAttack: the gradient members leave points that Square then breaks, and it says so.
    let aa = evaluate("aa", &resolve("autoattack", |_| {}));
    let w = warnings(&[aa]).join("\n");
    assert!(
        w.contains("square broke") && w.contains("gradient masking"),
        "{w}"
    );
}
