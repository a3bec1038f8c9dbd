//! A shared cache that cannot be turned against its users, and workers that cannot hang a run:
//! symbolic links planted in the cache are never written through, generated Slurm scripts run
//! nothing their paths say, `status` checks entries as `run` does, a stopped worker is ended, an
//! allocation failure is one line, and floats read back exactly.
use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file and directory under `dir`, not following links: relative name → bytes (a
/// directory's are empty, a link's are its target).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(
                    format!("{rel} ->"),
                    target.to_string_lossy().as_bytes().to_vec(),
                );
            } else if t.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link)
        .unwrap_or_else(|e| panic!("linking {} -> {}: {e}", link.display(), target.display()));
}

/// Copies a directory tree (regular files and directories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Stage id → key, from `robarch status`.
fn keys(p: &Project) -> BTreeMap<String, String> {
    status(p, "p.yaml")
        .into_iter()
        .map(|(id, s)| (id, s["key"].as_str().unwrap().to_string()))
        .collect()
}

fn entry_of(p: &Project, key: &str) -> PathBuf {
    p.path(&format!("cache/objects/{}/{key}", &key[..2]))
}

const TRAIN: &str = "train/digits/resnet18/at";
const SPARSITY: &str = "sparsity/digits/resnet18/at";
const FGSM: &str = "eval/digits/resnet18/at/fgsm/test";
const PGD: &str = "eval/digits/resnet18/at/pgd/test";
const CLEAN: &str = "eval/digits/resnet18/at/clean/train";

/// Links planted at every kind of place in the cache (an entry, a shard of entries, a file
/// inside an entry, a training's checkpoint directory and a checkpoint in it, a stage lock, the
/// logs, the run record, a top-level directory) point at a canary directory outside the cache:
/// robarch removes or refuses each, naming it, and the canary stays byte-identical.
#[test]
fn symbolic_links_in_the_cache_are_never_written_through() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let reference = reports_of(&p, "tiny");
    let k = keys(&p);
    // Three evaluations in three different shards (objects/ab): one's entry, one's shard and
    // one's file become links.
    let mut picked: Vec<&String> = Vec::new();
    for (id, key) in &k {
        if id.starts_with("eval/") && picked.iter().all(|o| k[*o][..2] != key[..2]) {
            picked.push(id);
        }
    }
    assert!(picked.len() >= 3, "{k:?}");
    let (as_entry, as_shard, as_file) = (picked[0], picked[1], picked[2]);
    let canary = p.path("canary");
    std::fs::create_dir_all(canary.join("epoch-00001")).unwrap();
    std::fs::write(
        canary.join("epoch-00001/state.json"),
        b"{\"not\": \"a checkpoint\"}",
    )
    .unwrap();
    std::fs::write(
        canary.join("epoch-00002"),
        b"a file named like a checkpoint",
    )
    .unwrap();
    std::fs::write(canary.join("precious.txt"), b"must survive").unwrap();
    std::fs::create_dir_all(canary.join("logs")).unwrap();
    std::fs::write(canary.join("logs/at.log"), b"someone else's log").unwrap();
    std::fs::write(canary.join("lease"), b"{}").unwrap();
    std::fs::write(canary.join("run.json"), b"{\"stages\": {}}").unwrap();
    // An intact copy of an entry whose files have other stat stamps: followed, a lookup would
    // trust it and re-stamp (rewrite) its meta.json.
    let entry = entry_of(&p, &k[as_entry]);
    copy_dir(&entry, &canary.join("entry"));
    let shard = entry_of(&p, &k[as_shard]).parent().unwrap().to_path_buf();
    copy_dir(&shard, &canary.join("shard"));
    let file = entry_of(&p, &k[as_file]).join("metrics.json");
    std::fs::copy(&file, canary.join("metrics.json")).unwrap();
    let before = tree(&canary);

    // A top-level directory that is a link: refused before anything is written.
    let tmp = p.path("cache/tmp");
    std::fs::remove_dir(&tmp).unwrap();
    symlink(&canary, &tmp);
    let out = p.run(&["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cache/tmp is a symbolic link")
            && stderr(&out).contains("never writes through links"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();

    // An entry, a shard and an entry's file that are links: each found by the run's lookup,
    // removed as a link, and its stages computed again.
    std::fs::remove_dir_all(&entry).unwrap();
    symlink(&canary.join("entry"), &entry);
    std::fs::remove_dir_all(&shard).unwrap();
    symlink(&canary.join("shard"), &shard);
    std::fs::remove_file(&file).unwrap();
    symlink(&canary.join("metrics.json"), &file);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "-j", "1"]);
    let err = stderr(&out);
    let rel = |d: &Path| d.strip_prefix(p.path("")).unwrap().display().to_string();
    for link in [rel(&entry), rel(&shard)] {
        assert!(err.contains(&link), "no warning names {link}:\n{err}");
    }
    assert!(err.contains("not a regular file"), "{err}");
    let ran = stages(&out, "ran");
    for id in [as_entry, as_shard, as_file] {
        assert!(
            ran.contains(id),
            "{id} was trusted through a link: ran {ran:?}"
        );
    }
    assert_eq!(
        tree(&canary),
        before,
        "the canary outside the cache changed"
    );

    // The forced training's checkpoint directory, its lock, its log directory, an evaluation's
    // log file and the run record are links.
    let ckpt = p.path(&format!("cache/ckpt/{}", k[TRAIN]));
    symlink(&canary, &ckpt);
    symlink(
        &canary.join("lease"),
        &p.path(&format!("cache/locks/{}.lease", k[TRAIN])),
    );
    let train_logs = p.path("cache/logs/tiny/train/digits/resnet18");
    std::fs::remove_dir_all(&train_logs).unwrap();
    symlink(&canary.join("logs"), &train_logs);
    let clean_log = p.path(&format!("cache/logs/tiny/{CLEAN}.log"));
    let _ = std::fs::remove_file(&clean_log);
    symlink(&canary.join("precious.txt"), &clean_log);
    let run_record = p.path("cache/runs/tiny.json");
    std::fs::remove_file(&run_record).unwrap();
    symlink(&canary.join("run.json"), &run_record);
    let out = p.ok(&[
        "run", "--format", "json", "p.yaml", "--force", TRAIN, "-j", "1",
    ]);
    let err = stderr(&out);
    for link in [
        format!("ckpt/{}", k[TRAIN]),
        format!("locks/{}.lease", k[TRAIN]),
        "logs/tiny/train/digits/resnet18".into(),
        format!("logs/tiny/{CLEAN}.log"),
    ] {
        assert!(err.contains(&link), "no warning names {link}:\n{err}");
    }
    assert_eq!(
        tree(&canary),
        before,
        "the canary outside the cache changed"
    );
    assert_eq!(reports_of(&p, "tiny"), reference, "the report differs");
    assert!(
        std::fs::read_dir(p.path("cache/ckpt"))
            .unwrap()
            .next()
            .is_none(),
        "checkpoints left"
    );
    assert!(!std::fs::symlink_metadata(&run_record)
        .unwrap()
        .file_type()
        .is_symlink());
    for (id, key) in &k {
        let e = entry_of(&p, key);
        for d in [e.parent().unwrap(), e.as_path()] {
            let t = std::fs::symlink_metadata(d).unwrap().file_type();
            assert!(t.is_dir() && !t.is_symlink(), "{id}: {}", d.display());
        }
    }

    // A checkpoint inside a real checkpoint directory, and a shard link `gc` finds later.
    std::fs::create_dir_all(&ckpt).unwrap();
    symlink(&canary.join("epoch-00001"), &ckpt.join("epoch-00001"));
    // A file newer than the training's entry, so the run's sweep keeps the directory for the
    // training to resume from.
    std::fs::write(ckpt.join("best.safetensors"), b"not weights").unwrap();
    let other = p.path("cache/objects/zz");
    symlink(&canary.join("shard"), &other);
    let out = p.ok(&["run", "--format", "json", "p.yaml", "--force", TRAIN]);
    assert!(stderr(&out).contains("epoch-00001"), "{}", stderr(&out));
    p.ok(&["gc", "p.yaml"]);
    assert!(
        std::fs::symlink_metadata(&other).is_err(),
        "gc left the link in objects/"
    );
    assert_eq!(
        tree(&canary),
        before,
        "the canary outside the cache changed"
    );
    assert_eq!(reports_of(&p, "tiny"), reference, "the report differs");
    let verify = p.ok(&["cache", "verify"]);
    assert!(
        stdout(&verify).contains(": 0 corrupt"),
        "{}",
        stdout(&verify)
    );
}

/// A directory of stand-ins for [`slurm_scripts_run_nothing_their_paths_say`]: an `sbatch` that
/// copies each script into `$SHIM_OUT` and prints a job id, a `squeue` and `sacct` that know of
/// no job, and a `worker` that records the arguments it was given (NUL-separated).
fn fake_sbatch(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tools = [
        (
            "sbatch",
            "#!/bin/sh\n\
             n=$(ls \"$SHIM_OUT\" | wc -l)\n\
             for a in \"$@\"; do last=\"$a\"; done\n\
             cp \"$last\" \"$SHIM_OUT/job-$n.sh\"\n\
             echo $((1000 + n))\n",
        ),
        ("squeue", "#!/bin/sh\nexit 0\n"),
        ("sacct", "#!/bin/sh\nexit 0\n"),
        (
            "worker",
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >> \"$SHIM_OUT/../argv\"\n",
        ),
    ];
    for (name, text) in tools {
        let f = bin.join(name);
        std::fs::write(&f, text).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    bin
}

/// Names of files under `dir` that a command in a path would have made.
fn pwned(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_keys()
        .filter(|n| n.contains("pwned-") && !n.contains("$(") && !n.contains('`'))
        .filter(|n| {
            Path::new(n.trim_end_matches('/'))
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("pwned-"))
        })
        .collect()
}

/// Every string robarch puts into a generated Slurm script is quoted (or kept inside its
/// comment): a cache and a pipeline under a directory whose name holds spaces, quotes, `$()`,
/// backticks and a newline give job and pilot scripts that, run, execute none of it, and hand
/// the worker its batch file's path intact.
#[test]
fn slurm_scripts_run_nothing_their_paths_say() {
    let p = Project::new();
    let weird = "we'ird \"dir\" $(touch pwned-1) `touch pwned-2` ;touch pwned-3\ntouch pwned-4 #";
    let base = p.path(weird);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("p.yaml"), TINY).unwrap();
    let shim_out = p.path("shim/out");
    std::fs::create_dir_all(&shim_out).unwrap();
    let bin = fake_sbatch(&p.path("shim"));
    // The Slurm executor's records of the pipeline are a link planted in the cache: removed as
    // a link, never written through.
    let canary = p.path("canary");
    std::fs::create_dir_all(canary.join("jobs")).unwrap();
    std::fs::write(canary.join("jobs/keep"), b"canary").unwrap();
    std::fs::create_dir_all(base.join("cache/slurm")).unwrap();
    symlink(&canary, &base.join("cache/slurm/tiny"));
    let untouched = tree(&canary);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for extra in [&[][..], &["--pilot"][..]] {
        let mut args = vec![
            "--cache".to_string(),
            base.join("cache").display().to_string(),
            "run".into(),
            base.join("p.yaml").display().to_string(),
            "--executor".into(),
            "slurm".into(),
            "--detach".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = p
            .cmd(&args)
            .env("PATH", &path)
            .env("SHIM_OUT", &shim_out)
            .env("ROBARCH_WORKER", bin.join("worker"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        if extra.is_empty() {
            assert!(
                stderr(&out).contains("where the cache keeps the Slurm executor's records"),
                "{}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        tree(&canary),
        untouched,
        "written through a link in the cache"
    );
    let scripts: Vec<PathBuf> = std::fs::read_dir(&shim_out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(scripts.len() >= 2, "no scripts were submitted: {scripts:?}");
    let run_in = p.path("run-here");
    std::fs::create_dir_all(&run_in).unwrap();
    for s in &scripts {
        let text = std::fs::read_to_string(s).unwrap();
        // The pilot runs robarch itself: let its worker be the recording one too, and give it
        // little to do (it fails on the fake worker at once).
        let out = Command::new("sh")
            .arg(s)
            .current_dir(&run_in)
            .env("SHIM_OUT", &shim_out)
            .env("ROBARCH_WORKER", bin.join("worker"))
            .env("SLURM_ARRAY_TASK_ID", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let _ = out;
        // The comment stays one line; the quoted path may span two.
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("# robarch: ") && lines[2].starts_with("exec "),
            "a path broke out of its comment:\n{text}"
        );
    }
    assert_eq!(
        pwned(&p.path("")),
        Vec::<String>::new(),
        "a script ran a command from a path"
    );
    // The job scripts handed the worker `job --batch <the batch file>`, byte for byte.
    let argv = std::fs::read(p.path("shim/argv")).unwrap_or_default();
    let args: Vec<String> = argv
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let batches: Vec<&String> = args.iter().filter(|a| a.ends_with(".json")).collect();
    assert!(
        !batches.is_empty(),
        "the worker got no batch file: {args:?}"
    );
    for b in batches {
        assert!(b.starts_with(&base.display().to_string()), "{b:?}");
        assert!(
            Path::new(b).is_file(),
            "the batch path arrived mangled: {b:?}"
        );
    }
}

/// `status` checks an entry as `run` does (sizes and stat stamps of its files) and changes
/// nothing: a truncated or rewritten file is `corrupt`, a directory without its meta.json
/// `incomplete`; `run` then recomputes exactly those.
#[test]
fn status_says_corrupt_or_incomplete_for_what_run_recomputes() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let fgsm = entry_dir(&p, "p.yaml", FGSM);
    let f = fgsm.join("metrics.json");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let pgd = entry_dir(&p, "p.yaml", PGD);
    let g = pgd.join("metrics.json");
    let mut same_size = std::fs::read(&g).unwrap();
    same_size[3] ^= 0x01;
    std::fs::write(&g, &same_size).unwrap();
    let sparsity = entry_dir(&p, "p.yaml", SPARSITY);
    std::fs::remove_file(sparsity.join("meta.json")).unwrap();
    let before = tree(&p.path("cache/objects"));
    let s = status(&p, "p.yaml");
    assert_eq!(s[FGSM]["state"], "corrupt", "{:?}", s[FGSM]);
    assert!(
        s[FGSM]["why"]
            .as_str()
            .unwrap()
            .contains("metrics.json has"),
        "{:?}",
        s[FGSM]
    );
    assert_eq!(s[PGD]["state"], "corrupt", "{:?}", s[PGD]);
    assert!(
        s[PGD]["why"].as_str().unwrap().contains("blake3"),
        "{:?}",
        s[PGD]
    );
    assert_eq!(s[SPARSITY]["state"], "incomplete", "{:?}", s[SPARSITY]);
    let text = stdout(&p.ok(&["status", "p.yaml"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("corrupt") && l.contains(FGSM)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("incomplete") && l.contains(SPARSITY)),
        "{text}"
    );
    let cached = s.values().filter(|v| v["state"] == "cached").count();
    assert_eq!(cached, s.len() - 3, "{s:?}");
    assert_eq!(
        tree(&p.path("cache/objects")),
        before,
        "status changed the cache"
    );
    let out = p.ok(&["run", "--format", "json", "p.yaml"]);
    let mut want = vec![FGSM.to_string(), PGD.to_string(), SPARSITY.to_string()];
    want.sort();
    assert_eq!(stages(&out, "ran"), want);
}

/// A worker stopped with SIGSTOP mid-training is reported with its stage, pid and log, killed,
/// and its stage failed, so the run ends by itself; a second run waiting on the stopped stage's
/// lock says who holds it; a rerun finishes the pipeline.
#[test]
fn a_stopped_worker_is_reported_killed_and_the_run_ends() {
    let p = Project::new();
    // Long enough a training that it is still running when its worker is stopped.
    // A 30-second limit: time for a second run to start, reach the lock and say who holds it
    // (after 5 s) on a loaded machine.
    p.write(
        "p.yaml",
        &format!("{TINY}executor: {{stall_minutes: 0.5}}\n").replace("epochs: 2", "epochs: 60"),
    );
    let mut run = p
        .cmd(&["run", "--format", "json", "p.yaml", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(run.stderr.take().unwrap()));
    // Stop the worker once the training holds its lock and has checkpointed an epoch.
    let seen = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("checkpoint saved") && l.contains("epoch=1 "));
    assert!(seen, "the training never started");
    let start = Instant::now();
    let worker = loop {
        if let Some(&w) = workers_of(run.id()).first() {
            break w;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no worker appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: signals a process this test's child started.
    unsafe { libc::kill(worker as i32, libc::SIGSTOP) };
    let stopped = Instant::now();
    // A second run on the same cache waits on the training's lock and says who holds it.
    let mut second = p
        .cmd(&["run", "--format", "json", "p.yaml", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = run.wait().unwrap();
    let took = stopped.elapsed();
    let err = rest.join("\n");
    assert!(!status.success(), "{err}");
    assert!(
        took < Duration::from_secs(60),
        "the run took {took:?} to end"
    );
    assert!(
        err.contains("no progress for 30 s")
            && err.contains(&format!("pid {worker}"))
            && err.contains(TRAIN)
            && err.contains(&format!("logs/tiny/{TRAIN}.log"))
            && err.contains("run again"),
        "{err}"
    );
    let second_err: Vec<String> =
        std::io::BufRead::lines(std::io::BufReader::new(second.stderr.take().unwrap()))
            .map_while(Result::ok)
            .collect();
    assert!(
        second.wait().unwrap().success(),
        "{}",
        second_err.join("\n")
    );
    let said = second_err.join("\n");
    assert!(
        said.contains("waiting") && said.contains(&format!("held by pid {worker}")),
        "the waiting run did not say who held the lock:\n{said}"
    );
    p.ok(&["run", "--format", "json", "p.yaml"]);
    assert!(workers_of(run.id()).is_empty());
}

/// An allocation that fails under an address-space limit is one line naming the stage, what
/// could not be allocated and the knobs; libtorch's backtrace stays in the stage's log.
#[test]
fn out_of_memory_is_one_line_with_the_knobs() {
    let p = Project::new();
    // A training whose batch of 224-pixel images cannot fit the limit below.
    p.write(
        "p.yaml",
        &TINY
            .replace("resolution: 8, limit: 120", "resolution: 224, limit: 64")
            .replace("batch_size: 32", "batch_size: 64"),
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2500000; exec \"$BIN\" run p.yaml -j 1")
        .current_dir(p.path(""))
        .env("BIN", robarch_bin())
        .env_remove("ROBARCH_CACHE")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("out of memory"))
        .unwrap_or_else(|| panic!("no out-of-memory line:\n{err}"));
    assert!(
        line.contains("`batch_size`") && line.contains("`-j`") && line.contains("--threads"),
        "{line}"
    );
    assert!(line.contains("resources.train.mem"), "{line}");
    assert!(
        !err.contains("frame #"),
        "the C++ backtrace reached the terminal:\n{err}"
    );
    assert!(err.len() < 4000, "{} bytes on stderr:\n{err}", err.len());
    let log = std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{TRAIN}.log"))).unwrap();
    assert!(log.contains("allocate"), "{log}");
}

/// Floats read back from the run record equal those written (ε = 3/255 and its derived step
/// sizes): after changing one attack's steps, `status` gives that change as the only reason.
#[test]
fn floats_round_trip_and_status_shows_no_phantom_changes() {
    let p = Project::new();
    let yaml = TINY
        .replace(
            "attack: {norm: linf, eps: 8/255, steps: 2}",
            "attack: {norm: linf, eps: 3/255, steps: 2, step_size: 0.7/255}",
        )
        .replace(
            "pgd: {eps: 8/255, steps: 3}",
            "pgd: {eps: 3/255, steps: 3, step_size: 0.75/255}",
        )
        .replace("fgsm: {eps: 8/255}", "fgsm: {eps: 3/255}");
    p.write("p.yaml", &yaml);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let s = status(&p, "p.yaml");
    assert!(s.values().all(|v| v["state"] == "cached"), "{s:?}");
    p.write(
        "p.yaml",
        &yaml.replace("steps: 3, step_size", "steps: 4, step_size"),
    );
    let s = status(&p, "p.yaml");
    for (id, v) in &s {
        if id.contains("/pgd/") {
            assert_eq!(v["state"], "stale", "{id}: {v}");
            let reasons = v["reasons"].as_array().unwrap();
            assert_eq!(reasons.len(), 1, "{id}: {v}");
            assert_eq!(reasons[0]["path"], "attack.steps", "{id}: {v}");
        } else if v["state"] == "stale" {
            let reasons = v["reasons"].as_array().unwrap();
            assert!(
                reasons.iter().all(|r| r["reason"] == "input"),
                "{id}: a parameter changed that did not: {v}"
            );
        }
    }
}

/// `run --dry-run` writes nothing: no cache skeleton, lock or remembered hashes on a fresh
/// project, and on a filled cache it leaves a corrupt entry where it is (the real run removes it).
#[test]
fn a_dry_run_writes_nothing() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    let out = p.ok(&["run", "p.yaml", "--dry-run"]);
    assert!(stdout(&out).contains("would run"), "{}", stdout(&out));
    let mut names: Vec<String> = std::fs::read_dir(p.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["p.yaml"], "the dry run wrote files");
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let f = entry_dir(&p, "p.yaml", FGSM).join("metrics.json");
    std::fs::write(&f, b"{}").unwrap();
    let before = tree(&p.path("cache"));
    let out = p.ok(&["run", "p.yaml", "--dry-run", "--format", "json"]);
    assert_eq!(stages(&out, "pending"), [FGSM.to_string()]);
    assert!(
        stderr(&out).contains("would be recomputed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        tree(&p.path("cache")),
        before,
        "the dry run changed the cache"
    );
}

/// The report is published even when its record for `--compare` cannot be written (a warning
/// names the directory and the fix, the run succeeds), and a cached report found corrupt at
/// publication is said, not silently replaced.
#[test]
fn report_records_and_corrupt_report_entries_are_named() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    p.ok(&["run", "--format", "json", "p.yaml"]);
    let reference = reports_of(&p, "tiny");
    let runs = p.path("reports/tiny/runs");
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::write(&runs, b"in the way").unwrap();
    // The cached report's table rewritten with its stat stamp kept: the run's scheduling trusts
    // the stamp, the publication hashes the file and finds it out.
    let report = entry_dir(&p, "p.yaml", "report");
    let table = std::fs::read_dir(report.join("tables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap();
    let md = std::fs::metadata(&table).unwrap();
    let mut bytes = std::fs::read(&table).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&table, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&table).unwrap();
    f.set_modified(md.modified().unwrap()).unwrap();
    drop(f);
    let out = p.ok(&["run", "p.yaml"]);
    let err = stderr(&out);
    assert!(
        err.contains("the cached report was corrupt")
            && err.contains("does not match its recorded blake3"),
        "{err}"
    );
    assert!(
        err.contains("could not be written under")
            && err.contains("reports/tiny/runs")
            && err.contains("run `robarch report`"),
        "{err}"
    );
    std::fs::remove_file(&runs).unwrap();
    assert_eq!(
        reports_of(&p, "tiny"),
        reference,
        "the published report differs"
    );
}
