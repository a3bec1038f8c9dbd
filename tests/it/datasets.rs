//! File-backed datasets end to end: `data fetch` against a local HTTP server (checksums, resume,
//! idempotence), CIFAR-10 and ImageNette fixtures in their official layouts, and prepare keys
//! that follow file contents rather than locations.
use crate::common::http::{tar_gz, Server};
use crate::common::{cifar_fixture, entry_dir, stages, status, stderr, stdout, Project};
use md5::{Digest, Md5};

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn cifar_archive() -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    cifar_fixture(src.path());
    tar_gz(src.path(), "cifar-10-batches-bin")
}

const ARCHIVE: &str = "/cifar-10-binary.tar.gz";

/// Arguments of `robarch data fetch NAME --dir DIR --mirror <server> EXTRA…`.
fn fetch<'a>(name: &'a str, dir: &'a str, server: &'a Server, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "data",
        "fetch",
        name,
        "--dir",
        dir,
        "--mirror",
        &server.base,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn fetch_downloads_verifies_unpacks_and_is_a_noop_when_present() {
    let archive = cifar_archive();
    let md5 = md5_hex(&archive);
    let server = Server::start(vec![(ARCHIVE, archive.clone())], None);
    let p = Project::new();
    let out = p.ok(&fetch("cifar10", "datasets", &server, &["--md5", &md5]));
    assert!(stdout(&out).contains("md5 verified"), "{}", stdout(&out));
    for f in [
        "data_batch_1.bin",
        "data_batch_5.bin",
        "test_batch.bin",
        "batches.meta.txt",
    ] {
        assert!(
            p.path("datasets/cifar-10-batches-bin").join(f).is_file(),
            "{f}"
        );
    }
    // No temporary download or unpack directory is left behind.
    assert_eq!(
        std::fs::read_dir(p.path("datasets/.partial"))
            .unwrap()
            .count(),
        0
    );
    assert!(!std::fs::read_dir(p.path("datasets")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".unpack")));
    let out = p.ok(&fetch("cifar10", "datasets", &server, &["--md5", &md5]));
    assert!(stdout(&out).contains("already present"), "{}", stdout(&out));
    assert_eq!(server.requests().len(), 1, "no second download");
    // An unknown name gets a suggestion.
    let out = p.run(&["data", "fetch", "cifar-10"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("did you mean `cifar10`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fetch_rejects_a_wrong_checksum_and_a_missing_file() {
    let server = Server::start(vec![(ARCHIVE, cifar_archive())], None);
    let p = Project::new();
    // The official md5 cannot match the fixture archive.
    let out = p.run(&fetch("cifar10", "d", &server, &[]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch") && err.contains("c32a1d4ab5d03f1284b67883e8d87530"),
        "{err}"
    );
    assert!(!p.path("d/cifar-10-batches-bin").exists());
    assert_eq!(
        std::fs::read_dir(p.path("d/.partial")).unwrap().count(),
        0,
        "bad download deleted"
    );
    let out = p.run(&fetch("imagenette-160", "d", &server, &[]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
}

#[test]
fn interrupted_downloads_resume_with_range_requests() {
    let archive = cifar_archive();
    let md5 = md5_hex(&archive);
    let cut = archive.len() / 3;
    // Within one invocation: the dropped connection is retried from where it stopped.
    let server = Server::start(vec![(ARCHIVE, archive.clone())], Some(cut));
    let p = Project::new();
    let out = p.ok(&fetch("cifar10", "d", &server, &["--md5", &md5]));
    assert_eq!(
        server.requests(),
        [format!("{ARCHIVE} -"), format!("{ARCHIVE} {cut}")]
    );
    assert!(stdout(&out).contains("md5 verified"));
    // Across invocations: a failed run keeps the partial file, the next one resumes it.
    let server = Server::start(vec![(ARCHIVE, archive.clone())], Some(cut));
    let q = Project::new();
    let extra = ["--md5", &md5, "--attempts", "1"];
    let out = q.run(&fetch("cifar10", "d", &server, &extra));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rerun `robarch data fetch` to resume"),
        "{}",
        stderr(&out)
    );
    let part = q.path("d/.partial/cifar-10-binary.tar.gz.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len() as usize, cut);
    let out = q.ok(&fetch("cifar10", "d", &server, &extra));
    assert!(
        stdout(&out).contains(&format!("resumed from byte {cut}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        server.requests().last().unwrap(),
        &format!("{ARCHIVE} {cut}")
    );
    assert!(q.path("d/cifar-10-batches-bin/test_batch.bin").is_file());
}

const CIFAR_PIPELINE: &str = r#"name: c
seed: 1
device: cpu
datasets:
  cifar: {source: cifar10, val_fraction: 0.34, limit: {train: 15}}
models:
  resnet18: {preset: tiny}
training:
  std:
    method: standard
    epochs: 1
    batch_size: 10
    optimizer: {name: adamw, lr: 1e-3}
    augment: [random_crop: {padding: 4}, hflip, autoaugment: cifar10]
evaluation:
  splits: [val, test]
  attacks:
    clean: {}
"#;

#[test]
fn cifar_prepare_is_keyed_by_file_contents_not_location() {
    let p = Project::new();
    p.write("c.yaml", CIFAR_PIPELINE);
    // Missing data: a located error that says how to get it, and nothing cached.
    let out = p.run(&["run", "--format", "json", "c.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("c.yaml:5:11: datasets.cifar.source")
            && err.contains("robarch data fetch cifar10"),
        "{err}"
    );
    assert_eq!(p.entries(), 0);

    cifar_fixture(&p.path("datasets/cifar-10-batches-bin"));
    let out = p.ok(&["run", "--format", "json", "c.yaml"]);
    assert!(stages(&out, "ran").contains(&"prepare/cifar".to_string()));
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(entry_dir(&p, "c.yaml", "prepare/cifar").join("dataset.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["train_size"], 15);
    assert_eq!(info["val_size"], 10, "one of each class's three images");
    assert_eq!(info["test_size"], 10);
    assert_eq!(info["classes"][9], "truck");

    // Moving the directory and pointing the pipeline at it: nothing recomputes.
    std::fs::create_dir_all(p.path("elsewhere")).unwrap();
    std::fs::rename(
        p.path("datasets/cifar-10-batches-bin"),
        p.path("elsewhere/c10"),
    )
    .unwrap();
    p.write(
        "c.yaml",
        &CIFAR_PIPELINE.replace("source: cifar10,", "source: cifar10, path: elsewhere/c10,"),
    );
    let out = p.ok(&["run", "--format", "json", "c.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));

    // A pipeline in another directory: `path:` is relative to the pipeline file, not to where
    // robarch runs; read against the working directory instead, the error says which it used.
    std::fs::create_dir_all(p.path("pipes")).unwrap();
    p.write(
        "pipes/c.yaml",
        &CIFAR_PIPELINE.replace("source: cifar10,", "source: cifar10, path: ../elsewhere/c10,"),
    );
    let out = p.ok(&["run", "--format", "json", "pipes/c.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));
    p.write(
        "pipes/c.yaml",
        &CIFAR_PIPELINE.replace("source: cifar10,", "source: cifar10, path: elsewhere/c10,"),
    );
    let out = p.run(&["run", "--format", "json", "pipes/c.yaml"]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("datasets.cifar.path")
            && err.contains("pipes/elsewhere/c10")
            && err.contains("relative to the pipeline file's directory"),
        "{err}"
    );

    // Touching a file without changing it: re-hashed, still nothing recomputes.
    let f = p.path("elsewhere/c10/test_batch.bin");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let out = p.ok(&["run", "--format", "json", "c.yaml"]);
    assert!(stages(&out, "ran").is_empty(), "{}", stdout(&out));

    // Changing one pixel byte: prepare and everything downstream rerun; status says why.
    let mut b = std::fs::read(&f).unwrap();
    b[100] ^= 0xFF;
    std::fs::write(&f, b).unwrap();
    let prepare = &status(&p, "c.yaml")["prepare/cifar"];
    assert!(
        prepare["state"] == "stale"
            && prepare["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["path"] == "dataset.source_hash"),
        "{prepare}"
    );
    let out = p.ok(&["run", "--format", "json", "c.yaml"]);
    let ran = stages(&out, "ran");
    assert!(
        ran.contains(&"prepare/cifar".to_string())
            && ran.contains(&"train/cifar/resnet18/std".to_string()),
        "{ran:?}"
    );
}

#[test]
fn imagenette_layout_trains_end_to_end_and_corrupt_images_fail_cleanly() {
    let p = Project::new();
    let root = p.path("datasets/imagenette2-160");
    crate::common::imagenette_fixture(&root, 4);
    let yaml = CIFAR_PIPELINE
        .replace(
            "cifar: {source: cifar10, val_fraction: 0.34, limit: {train: 15}}",
            "nette: {source: imagenette-160, resolution: 16}",
        )
        .replace("  splits: [val, test]\n", "")
        .replace(
            "[random_crop: {padding: 4}, hflip, autoaugment: cifar10]",
            "[random_resized_crop, hflip, autoaugment: imagenet]",
        );
    p.write("n.yaml", &yaml);
    p.ok(&["run", "--format", "json", "n.yaml"]);
    let dir = entry_dir(&p, "n.yaml", "prepare/nette");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(
        info["classes"],
        serde_json::json!(["tench", "English springer"])
    );
    assert_eq!(
        (info["train_size"].as_u64(), info["test_size"].as_u64()),
        (Some(8), Some(8))
    );
    assert_eq!(info["channels"], 3);
    // The fixture's images are larger than 16 px: every one is resampled, and the summary says
    // so and how.
    assert_eq!(
        (info["resampled"]["train"].as_u64(), info["resampled"]["test"].as_u64()),
        (Some(8), Some(8)),
        "{info}"
    );
    assert!(
        info["resampled"]["how"].as_str().unwrap().contains("centre-cropped to 16x16"),
        "{info}"
    );

    // A truncated JPEG: the run fails naming the file, and no prepare entry is written.
    let bad = root.join("val/n01440764/n01440764_0.JPEG");
    let b = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &b[..b.len() / 3]).unwrap();
    let before = p.entries();
    let out = p.run(&["run", "--format", "json", "n.yaml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("n01440764_0.JPEG"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(p.entries(), before);
}

#[test]
fn the_plan_of_a_study_shows_before_its_data_is_fetched_but_does_not_run() {
    let p = Project::new();
    p.write(
        "c.yaml",
        &CIFAR_PIPELINE.replace(
            "  cifar: {source: cifar10, val_fraction: 0.34, limit: {train: 15}}\n",
            "  cifar: {source: cifar10, val_fraction: 0.34, limit: {train: 15}}\n  nette: {source: imagenette-160, resolution: 32, val_fraction: 0.2}\n",
        ),
    );
    // status: every stage missing, the data stages saying what provides them; exit 0.
    let out = p.ok(&["status", "c.yaml"]);
    let text = stdout(&out);
    for (id, name) in [("prepare/cifar", "cifar10"), ("prepare/nette", "imagenette-160")] {
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!("{id}")) || l.contains(&format!("{id}  (")))
            .unwrap_or_else(|| panic!("no {id} in:\n{text}"));
        assert!(
            line.starts_with("missing") && line.contains(&format!("run `robarch data fetch {name}`")),
            "{line}"
        );
    }
    assert!(
        text.lines().all(|l| l.starts_with("missing")),
        "{text}"
    );
    let st = status(&p, "c.yaml");
    assert_eq!(st["prepare/cifar"]["state"], "missing");
    assert!(st["prepare/cifar"]["data"]
        .as_str()
        .unwrap_or_default()
        .contains("c.yaml:5:11: datasets.cifar.source: datasets/cifar-10-batches-bin is not there yet"));
    assert_eq!(st["train/nette/resnet18/std"]["state"], "missing");
    // dag and a dry run work too.
    assert!(stdout(&p.ok(&["dag", "c.yaml"])).contains("train/nette/resnet18/std"));
    let out = p.ok(&["run", "--dry-run", "--format", "json", "c.yaml"]);
    assert_eq!(
        stages(&out, "pending").len(),
        json_len(&out),
        "{}",
        stdout(&out)
    );
    // A run fails early, naming each missing dataset and its fetch command, computing nothing.
    let out = p.run(&["run", "c.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("c cannot run before its data is there")
            && err.contains("prepare/cifar: c.yaml:5:11: datasets.cifar.source")
            && err.contains("prepare/nette: c.yaml:6:11: datasets.nette.source")
            && err.contains("robarch data fetch imagenette-160"),
        "{err}"
    );
    assert_eq!(p.entries(), 0);
    // gc refuses: the keys past the missing data are placeholders.
    let out = p.run(&["gc", "c.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs their data there"), "{}", stderr(&out));

    // With CIFAR-10 there, its stages get real keys; ImageNette's still wait for theirs.
    cifar_fixture(&p.path("datasets/cifar-10-batches-bin"));
    let st = status(&p, "c.yaml");
    assert!(st["prepare/cifar"]["data"].is_null(), "{}", st["prepare/cifar"]);
    assert!(st["prepare/nette"]["data"].as_str().is_some());
    assert!(!p.run(&["run", "c.yaml"]).status.success());
}

fn json_len(o: &std::process::Output) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["stages"].as_array().map_or(0, Vec::len)
}
