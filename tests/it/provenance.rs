//! What a result depends on beyond its key: each entry records the thread count and the CPU
//! kernel path it was computed under, `explain` shows them, a pipeline whose entries were computed
//! under different settings is warned about, and a training resumed under another thread count
//! says so and records both.
use crate::common::*;

const TRAIN: &str = "train/digits/resnet18/at";
const EVAL: &str = "eval/digits/resnet18/at/fgsm/test";

#[test]
fn entries_record_threads_and_kernels_and_mixed_settings_are_warned() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    // ATen's kernel path, lowered by its own variable: what the entry records is what libtorch
    // dispatched to (read from libtorch, not from the variable).
    let out = p
        .cmd(&["run", "--format", "json", "p.yaml", "--threads", "1"])
        .env("ATEN_CPU_CAPABILITY", "default")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json_out(&out);
    assert_eq!(
        doc["settings"].as_array().map(Vec::len),
        Some(1),
        "{}",
        doc["settings"]
    );
    let prov = &explain(&p, "p.yaml", TRAIN)["provenance"];
    assert_eq!(prov["threads"], 1, "{prov}");
    let kernels = prov["kernels"].as_str().unwrap_or_default();
    assert!(
        kernels.starts_with(std::env::consts::ARCH) && kernels.ends_with(", ATen DEFAULT"),
        "{prov}"
    );
    let text = stdout(&p.ok(&["explain", "p.yaml", TRAIN]));
    assert!(
        text.contains(&format!("computed: cpu, 1 thread, {kernels} on ")),
        "{text}"
    );
    assert!(
        !stderr(&out).contains("different settings"),
        "{}",
        stderr(&out)
    );

    // One evaluation recomputed with two threads and the machine's own kernels.
    let out = p.ok(&[
        "run", "--format", "json", "p.yaml", "--threads", "2", "--force", EVAL,
    ]);
    assert_eq!(stages(&out, "ran"), [EVAL, "report"]);
    let prov = &explain(&p, "p.yaml", EVAL)["provenance"];
    assert_eq!(prov["threads"], 2, "{prov}");
    let err = stderr(&out);
    assert!(
        err.contains("were computed under different settings")
            && err.contains("1 under `cpu, 2 threads, ")
            && err.contains(&format!("(e.g. {EVAL})"))
            && err.contains("--threads N"),
        "{err}"
    );
    let settings = json_out(&out)["settings"].clone();
    assert_eq!(settings.as_array().map(Vec::len), Some(2), "{settings}");
    assert_eq!(settings[1]["stages"], serde_json::json!([EVAL]), "{settings}");
    // `status` and `report` say it too, on stderr; `status --format json` lists the settings.
    let status = p.ok(&["status", "p.yaml", "--format", "json"]);
    assert!(stderr(&status).contains("different settings"));
    assert_eq!(json_out(&status)["settings"], settings);
    assert!(stderr(&p.ok(&["report", "p.yaml"])).contains("different settings"));

    // Recomputing everything under one setting ends the warning.
    let out = p.ok(&[
        "run", "--format", "json", "p.yaml", "--threads", "2", "--force", "train/*",
    ]);
    assert!(!stderr(&out).contains("different settings"), "{}", stderr(&out));
    assert_eq!(json_out(&out)["settings"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_resume_under_another_thread_count_says_so_and_records_both() {
    let p = Project::new();
    p.write("p.yaml", &TINY.replace("epochs: 2", "epochs: 4"));
    // Killed exactly as epoch 3's checkpoint is about to land: the resume starts after epoch 2.
    killed_at(&p, "worker:checkpoint-rename@3=kill", &["--threads", "1"]);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--threads", "2"]);
    let err = stderr(&out);
    assert!(
        err.contains("resuming after epoch 2 under `cpu, 2 threads, ")
            && err.contains("the epochs so far ran under `cpu, 1 thread, ")
            && err.contains("--force"),
        "{err}"
    );
    let prov = &explain(&p, "p.yaml", TRAIN)["provenance"];
    // Its setting is the mixture (no thread count of its own), which no other setting equals.
    assert!(prov["threads"].is_null(), "{prov}");
    assert!(
        prov["setting"]
            .as_str()
            .unwrap_or_default()
            .starts_with("mixed (epochs 1–2 under `cpu, 1 thread, "),
        "{prov}"
    );
    assert!(stderr(&out).contains("different settings"), "{}", stderr(&out));
    let note = prov["notes"][0].as_str().unwrap_or_default();
    assert!(
        note.contains("epochs 1–2 under `cpu, 1 thread, ")
            && note.contains("epochs 3–4 under `cpu, 2 threads, "),
        "{prov}"
    );
    let text = stdout(&p.ok(&["explain", "p.yaml", TRAIN]));
    assert!(text.contains("  note: resumed under another setting: epochs 1–2"), "{text}");

    // A resume under the same setting adds no note.
    let q = Project::new();
    q.write("p.yaml", &TINY.replace("epochs: 2", "epochs: 4"));
    killed_at(&q, "worker:checkpoint-rename@3=kill", &[]);
    let out = q.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(!stderr(&out).contains("under another"), "{}", stderr(&out));
    assert!(explain(&q, "p.yaml", TRAIN)["provenance"]["notes"].is_null());
}

#[test]
fn a_resume_after_the_last_epoch_adds_no_span() {
    // Killed after the last checkpoint, before the commit: the resume runs no epoch, so the
    // entry's setting is the one every epoch ran under, whatever the resuming run's.
    let p = Project::new();
    p.write("p.yaml", TINY);
    killed_at(&p, "worker:commit-rename@2=kill", &["--threads", "1", "-j", "1"]);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--threads", "2"]);
    assert!(!stderr(&out).contains("under another"), "{}", stderr(&out));
    let prov = &explain(&p, "p.yaml", TRAIN)["provenance"];
    assert!(prov["notes"].is_null(), "{prov}");
    assert!(
        prov["setting"].as_str().unwrap_or_default().starts_with("cpu, 1 thread, "),
        "{prov}"
    );
}
