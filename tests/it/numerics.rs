//! `numerics: portable`: a pipeline's entries are bit-identical whatever the CPU's kernel path.
//! This machine stands in for other CPUs by forcing the choices another CPU would make (ATen's
//! dispatch level, oneDNN's instruction-set cap, MKL's code path): without the setting they change
//! a trained model's bits (so the check can fail), with it they change nothing.
use crate::common::*;
use std::collections::BTreeMap;

/// A CNN and a transformer (convolutions, matrix products, softmax, normalisation), trained and
/// attacked.
fn pipeline(numerics: &str) -> String {
    TINY.replace(
        "models:\n  resnet18: {preset: tiny}\n",
        "models:\n  resnet18: {preset: tiny}\n  vit: {preset: tiny}\n",
    )
    .replace(
        "device: cpu\n",
        &format!("device: cpu\nnumerics: {numerics}\n"),
    )
}

/// Drops the wall times a JSON document records (`seconds`): how long, not what, was computed.
fn without_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("seconds");
            m.values_mut().for_each(without_times);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(without_times),
        _ => {}
    }
}

/// Stage id → file → blake3 (a JSON file: its text without wall times), of every entry in `p`'s
/// cache (what the stages computed), and the settings the entries record.
fn entries(p: &Project) -> (BTreeMap<String, BTreeMap<String, String>>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut settings = Vec::new();
    for shard in std::fs::read_dir(p.path("cache/objects")).unwrap() {
        for e in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let dir = e.unwrap().path();
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
            let files = meta["files"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(f, m)| {
                    let content = if f.ends_with(".json") {
                        let mut v: serde_json::Value =
                            serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap();
                        without_times(&mut v);
                        v.to_string()
                    } else {
                        m["blake3"].as_str().unwrap().to_string()
                    };
                    (f.clone(), content)
                })
                .collect();
            out.insert(meta["stage"].as_str().unwrap().to_string(), files);
            // The settings of stages that computed on the CPU with threads (not data preparation).
            if let Some(s) = meta["provenance"]["setting"]
                .as_str()
                .filter(|s| s.starts_with("cpu, "))
            {
                settings.push(s.to_string());
            }
        }
    }
    settings.sort();
    settings.dedup();
    (out, settings)
}

/// Runs `yaml` in a fresh project under the environment `env`.
fn run_under(
    yaml: &str,
    env: &[(&str, &str)],
) -> (BTreeMap<String, BTreeMap<String, String>>, Vec<String>) {
    let p = Project::new();
    p.write("p.yaml", yaml);
    let mut c = p.cmd(&["run", "--format", "json", "p.yaml"]);
    for v in [
        "ATEN_CPU_CAPABILITY",
        "ONEDNN_MAX_CPU_ISA",
        "DNNL_MAX_CPU_ISA",
        "MKL_CBWR",
        "MKL_ENABLE_INSTRUCTIONS",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    assert!(out.status.success(), "{env:?}: {}", stderr(&out));
    entries(&p)
}

/// The kernel choices another x86-64 CPU would make, forced here; `avx512` only where this CPU
/// has it (ATen does not clamp a level the CPU lacks: it dies of SIGILL), except under portable
/// numerics, which override it.
fn other_cpus(portable: bool) -> Vec<Vec<(&'static str, &'static str)>> {
    let mut v = vec![
        vec![("ATEN_CPU_CAPABILITY", "default")],
        vec![
            ("ATEN_CPU_CAPABILITY", "avx2"),
            ("ONEDNN_MAX_CPU_ISA", "SSE41"),
        ],
        vec![("ONEDNN_MAX_CPU_ISA", "AVX"), ("MKL_CBWR", "COMPATIBLE")],
        vec![("MKL_CBWR", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")],
    ];
    let avx512 = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .contains("avx512f");
    if portable || avx512 {
        v.push(vec![("ATEN_CPU_CAPABILITY", "avx512")]);
    }
    v
}

#[test]
fn portable_numerics_give_the_same_bits_on_every_kernel_path() {
    let portable = pipeline("portable");
    let (reference, settings) = run_under(&portable, &[]);
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert!(
        settings[0].contains("portable (ATen DEFAULT, MKL_CBWR=COMPATIBLE, no oneDNN or NNPACK)")
            && settings[0].starts_with("cpu, 1 thread, "),
        "{settings:?}"
    );
    for env in other_cpus(true) {
        let (got, s) = run_under(&portable, &env);
        assert_eq!(s, settings, "{env:?}");
        for (stage, files) in &reference {
            assert_eq!(
                got.get(stage),
                Some(files),
                "{env:?}: {stage} differs under portable numerics"
            );
        }
        assert_eq!(got.len(), reference.len());
    }
    // Without it, the same choices change what training computes: the check above could fail.
    let default = pipeline("default");
    let (base, _) = run_under(&default, &[]);
    let trained =
        |e: &BTreeMap<String, BTreeMap<String, String>>| -> Vec<BTreeMap<String, String>> {
            e.iter()
                .filter(|(s, _)| s.starts_with("train/"))
                .map(|(_, f)| f.clone())
                .collect()
        };
    let changed = other_cpus(false)
        .into_iter()
        .filter(|env| trained(&run_under(&default, env).0) != trained(&base))
        .count();
    assert!(
        changed >= 2,
        "the kernel choices changed no training without portable numerics"
    );
    // Portable numerics compute other bits than the default kernels (their cost buys this).
    assert_ne!(trained(&reference), trained(&base));
}

/// The setting enters no key: a cache filled under the default kernels is reused when a
/// pipeline switches to portable numerics, and the run says so.
#[test]
fn entries_cached_without_portable_numerics_are_named() {
    let p = Project::new();
    p.write("p.yaml", &pipeline("default"));
    p.ok(&["run", "--format", "json", "p.yaml"]);
    p.write("p.yaml", &pipeline("portable"));
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(stages(&out, "ran").is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("asks for `numerics: portable`") && err.contains("--force 'train/*'"),
        "{err}"
    );
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--force", "train/*"]);
    assert!(
        !stderr(&out).contains("asks for `numerics: portable`"),
        "{}",
        stderr(&out)
    );
}
