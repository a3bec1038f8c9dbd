//! The control plane and its stage workers: a worker that dies (SIGSEGV, SIGABRT, SIGKILL as
//! from the OOM killer) fails only its stage, naming the signal and the stage's log; the other
//! stages go on under `--keep-going`; nothing of the dead stage is committed, and a rerun
//! recomputes only it and what depends on it. Workers are placed one per GPU, and stages without
//! tensors on the device never hold one (`ROBARCH_FAKE_GPUS` shows GPUs a CPU machine lacks).
use crate::common::*;

const TARGET: &str = "eval/digits/resnet18/at/pgd/test";

#[test]
fn a_worker_killed_by_a_signal_fails_only_its_stage() {
    let r = Project::new();
    r.write("p.yaml", TINY);
    r.ok(&["run", "--format", "json", "p.yaml"]);
    let reference = reports_of(&r, "tiny");
    for (sig, name) in [
        ("segv", "SIGSEGV (signal 11)"),
        ("abort", "SIGABRT (signal 6)"),
        ("kill", "SIGKILL (signal 9)"),
    ] {
        let p = Project::new();
        p.write("p.yaml", TINY);
        let out = p
            .cmd(&[
                "run",
                "--format",
                "json",
                "--keep-going",
                "-j",
                "2",
                "p.yaml",
            ])
            .env(
                "ROBARCH_WORKER_FAULT",
                format!("stage-run:{TARGET}@1={sig}"),
            )
            .output()
            .unwrap();
        let err = stderr(&out);
        // The control plane itself lives on and says what happened.
        assert_eq!(signal(&out), None, "{sig}: {err}");
        assert!(!out.status.success(), "{sig}: {err}");
        let log = p.path(&format!("cache/logs/tiny/{TARGET}.log"));
        let o = outcomes(&out);
        let e = o[TARGET]["error"].as_str().unwrap_or_default();
        assert_eq!(o[TARGET]["outcome"], "failed", "{sig}: {err}");
        assert!(
            e.contains(&format!("killed by {name}"))
                && e.contains("nothing of the stage was committed")
                && e.contains(&format!(
                    "its log: {}",
                    log.strip_prefix(p.path("")).unwrap().display()
                )),
            "{sig}: {e}"
        );
        assert!(
            err.contains(&format!("stage {TARGET} failed")),
            "{sig}: {err}"
        );
        if sig == "kill" {
            assert!(e.contains("out-of-memory killer"), "{e}");
        }
        // Every other stage ran, but the report that needs it.
        for (id, s) in &o {
            let want = match id.as_str() {
                TARGET => "failed",
                "report" => "skipped",
                _ => "ran",
            };
            assert_eq!(s["outcome"], want, "{sig}: {id}: {s}");
        }
        // The log names the stage; the entry is missing.
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(&format!("stage {TARGET} on cpu")), "{text}");
        assert_eq!(status(&p, "p.yaml")[TARGET]["state"], "missing");
        // The rerun computes that stage and the report only, and ends as an uninterrupted run.
        let again = p.ok(&["run", "--format", "json", "p.yaml"]);
        for (id, s) in outcomes(&again) {
            let want = if id == TARGET || id == "report" {
                "ran"
            } else {
                "cached"
            };
            assert_eq!(s["outcome"], want, "{sig} rerun: {id}: {s}");
        }
        assert!(
            reports_of(&p, "tiny") == reference,
            "{sig}: the report differs from an uninterrupted run's"
        );
        assert_eq!(std::fs::read_dir(p.path("cache/tmp")).unwrap().count(), 0);
    }
}

#[test]
fn workers_get_one_gpu_each_and_stages_without_tensors_on_it_get_none() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let out = p
        .cmd(&[
            "run",
            "--format",
            "json",
            "--devices",
            "cuda:0,cuda:1",
            "-j",
            "2",
            "p.yaml",
        ])
        .env("ROBARCH_FAKE_GPUS", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut gpus = std::collections::BTreeSet::new();
    for id in outcomes(&out).keys() {
        let prov = &explain(&p, "p.yaml", id)["provenance"];
        let slot = prov["slot"].as_str().unwrap_or_default().to_string();
        if id.starts_with("train/") || id.starts_with("eval/") {
            assert!(
                slot == "cuda:0 (CUDA_VISIBLE_DEVICES=0)"
                    || slot == "cuda:1 (CUDA_VISIBLE_DEVICES=1)",
                "{id}: {prov}"
            );
            gpus.insert(slot);
        } else if id == "report" {
            // Computed in the control plane: no worker, no slot.
            assert_eq!(slot, "", "{id}: {prov}");
        } else {
            // Data preparation and the sparsity analysis hold no GPU.
            assert_eq!(slot, "cpu", "{id}: {prov}");
        }
    }
    // The six evaluations become ready together: both GPUs get work.
    assert_eq!(gpus.len(), 2, "{gpus:?}");

    let out = p
        .cmd(&["run", "--devices", "cuda:2", "p.yaml"])
        .env("ROBARCH_FAKE_GPUS", "2")
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("device cuda:2 was requested but this machine shows 2 GPU(s)"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["run", "--devices", "cuda:0,gpu", "p.yaml"]);
    assert!(
        stderr(&out).contains("unknown device `gpu`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_control_plane_links_no_libtorch_and_the_worker_does() {
    let ldd = |bin: &std::path::Path| {
        let out = std::process::Command::new("ldd").arg(bin).output().unwrap();
        assert!(
            out.status.success(),
            "ldd {}: {}",
            bin.display(),
            stderr(&out)
        );
        stdout(&out)
    };
    let control = ldd(&robarch_bin());
    for lib in ["libtorch", "libc10"] {
        assert!(!control.contains(lib), "robarch links {lib}:\n{control}");
    }
    let worker = ldd(std::path::Path::new(env!("CARGO_BIN_EXE_robarch-worker")));
    assert!(worker.contains("libtorch_cpu.so"), "{worker}");
    assert!(
        !worker.contains("not found"),
        "the worker finds libtorch by its rpath:\n{worker}"
    );
}

#[test]
fn a_worker_that_cannot_start_is_named_and_the_run_ends_in_an_error() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    // A "worker" that exits at once: the job's write meets a closed pipe, which must be an
    // error of the stage, not SIGPIPE ending robarch.
    let out = p.cmd(&["run", "p.yaml"]).env("ROBARCH_WORKER", "/bin/false").output().unwrap();
    let err = stderr(&out);
    assert_eq!(signal(&out), None, "{err}");
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the stage worker /bin/false exited with exit status: 1 before it took the stage"),
        "{err}"
    );
    assert!(stdout(&out).contains("0 ran, 0 cached, 1 failed, 9 skipped"), "{}", stdout(&out));
}

#[test]
fn explain_shows_an_entrys_files_and_its_stage_log() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let train = "train/digits/resnet18/at";
    let e = explain(&p, "p.yaml", train);
    let log = e["log"].as_str().unwrap().to_string();
    assert!(log.ends_with(&format!("logs/tiny/{train}.log")), "{e}");
    let text = std::fs::read_to_string(p.path(&log)).unwrap();
    assert!(text.contains("checkpoint saved"), "{text}");
    let weights = std::fs::metadata(entry_dir(&p, "p.yaml", train).join("model.safetensors")).unwrap();
    assert_eq!(e["files"]["model.safetensors"], serde_json::json!(weights.len()), "{e}");
    let out = stdout(&p.ok(&["explain", "p.yaml", train]));
    assert!(out.contains(&format!("log:     {log}")), "{out}");
    assert!(out.contains(&format!("model.safetensors ({} bytes)", weights.len())), "{out}");
    // The report runs in the control plane: no worker, no log.
    assert!(explain(&p, "p.yaml", "report")["log"].is_null());
}
