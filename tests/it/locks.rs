//! Stage locks on a cache shared by processes on one machine and by nodes of a cluster: a lock
//! names its owner (host, pid, start time) and is renewed while its stage runs. With real
//! processes: a live owner renews its lock and keeps it past its lease; a killed owner's lock is
//! taken over at once; another host's lock is taken over when its lease ran out (stamped three
//! leases ago, or seen unchanged for a lease when the clocks disagree).
use crate::common::*;
use std::time::{Duration, Instant};

const TRAIN: &str = "train/digits/resnet18/at";

fn lock_of(p: &Project) -> std::path::PathBuf {
    let key = explain(p, "p.yaml", TRAIN)["key"]
        .as_str()
        .unwrap()
        .to_string();
    p.path(&format!("cache/locks/{key}.lease"))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn train_log(p: &Project) -> String {
    std::fs::read_to_string(p.path(&format!("cache/logs/tiny/{TRAIN}.log"))).unwrap_or_default()
}

fn outcome(o: &std::process::Output, id: &str) -> String {
    json_out(o)["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["outcome"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn a_live_owner_keeps_its_lock_past_the_lease_and_a_killed_owners_is_taken_over() {
    // A holds the training's lock for 6 s with 1 s leases: it renews it (four times a second),
    // and B, on the same cache, waits for it and then finds the stage done.
    let p = Project::new();
    p.write("p.yaml", TINY);
    let lock = lock_of(&p);
    let a = p
        .cmd(&["run", "--format", "json", "p.yaml"])
        .env("ROBARCH_LEASE_SECS", "1")
        .env("ROBARCH_WORKER_FAULT", format!("stage-run:{TRAIN}@1=sleep:6"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("A's lock", || lock.exists());
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&lock).unwrap_or_default()).unwrap_or_default()
    };
    let first = read();
    std::thread::sleep(Duration::from_millis(1500));
    let later = read();
    assert_eq!(later["token"], first["token"], "still A's");
    assert!(
        later["beat"].as_u64() >= first["beat"].as_u64().map(|b| b + 3),
        "renewed: {first} then {later}"
    );
    assert!(later["renewed_unix"].as_f64() > first["renewed_unix"].as_f64());
    let start = Instant::now();
    let b = p
        .cmd(&["run", "--format", "json", "p.yaml"])
        .env("ROBARCH_LEASE_SECS", "1")
        .output()
        .unwrap();
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(outcome(&a, TRAIN), "ran");
    assert_eq!(
        outcome(&b, TRAIN),
        "cached",
        "B waited for A's lock and found the stage done:\n{}",
        stderr(&b)
    );
    assert!(start.elapsed() >= Duration::from_secs(2), "B waited: {:?}", start.elapsed());
    assert!(!stderr(&b).contains("taking over"), "{}", stderr(&b));
    assert!(!lock.exists(), "released");

    // A killed owner (its run killed, its worker with it): the lock stays behind, naming a pid
    // that is gone; the next run takes it over at once, long before its 60 s lease ends.
    let p = Project::new();
    p.write("p.yaml", TINY);
    let lock = lock_of(&p);
    let mut a = p
        .cmd(&["run", "p.yaml"])
        .env("ROBARCH_LEASE_SECS", "60")
        .env("ROBARCH_WORKER_FAULT", format!("stage-run:{TRAIN}@1=sleep:60"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("A's lock", || lock.exists());
    let owner: serde_json::Value = serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
    let worker = owner["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill with signal 0 only asks whether the process exists.
    wait_for("the worker to die with its run", || unsafe {
        libc::kill(worker, 0) != 0
    });
    assert!(lock.exists(), "a killed owner leaves its lock");
    let start = Instant::now();
    let b = p
        .cmd(&["run", "--format", "json", "p.yaml"])
        .env("ROBARCH_LEASE_SECS", "60")
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(outcome(&b, TRAIN), "ran");
    assert!(start.elapsed() < Duration::from_secs(50), "{:?}", start.elapsed());
    let log = train_log(&p);
    assert!(
        log.contains("taking over a stale lock") && log.contains(&format!("pid {worker}")) && log.contains("is gone"),
        "{log}"
    );
}

#[test]
fn another_hosts_lock_is_taken_over_when_its_lease_runs_out() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let owner = |renewed: f64, lease: f64| {
        serde_json::json!({
            "host": "node-17", "boot": "x", "pid": 4242, "start": 1, "token": "feed",
            "renewed_unix": renewed, "lease_s": lease, "beat": 7, "what": TRAIN,
        })
        .to_string()
    };
    // Stamped as renewed 100 s ago, on a 30 s lease (more than three leases).
    let p = Project::new();
    p.write("p.yaml", TINY);
    let lock = lock_of(&p);
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, owner(now - 100.0, 30.0)).unwrap();
    let out = p.run(&["run", "--format", "json", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = train_log(&p);
    assert!(
        log.contains("pid 4242 on node-17, has not renewed it"),
        "{log}"
    );

    // A clock an hour ahead: by its own clock the lock is fresh; it is taken over only once it
    // sat unchanged for its 2 s lease while this run waited.
    let p = Project::new();
    p.write("p.yaml", TINY);
    let lock = lock_of(&p);
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, owner(now + 3600.0, 2.0)).unwrap();
    let start = Instant::now();
    let out = p.run(&["run", "--format", "json", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
    assert!(train_log(&p).contains("left it unchanged for"), "{}", train_log(&p));

    // `gc` keeps what a live lock is computing: a fresh lock of another host, for a key no
    // pipeline given names, and the leftover staging directory of that key.
    let key = "ab".repeat(32);
    let held = p.path(&format!("cache/locks/{key}.lease"));
    std::fs::write(&held, owner(now + 3600.0, 600.0)).unwrap();
    let staging = p.path(&format!("cache/tmp/entry-{key}-x1"));
    std::fs::create_dir_all(&staging).unwrap();
    // Slurm records: another pipeline's go with gc, this one's stay.
    for name in ["tiny", "other"] {
        let d = p.path(&format!("cache/slurm/{name}/out"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("7.out"), "").unwrap();
        std::fs::write(p.path(&format!("cache/slurm/{name}/state.json")), r#"{"jobs": {}}"#).unwrap();
    }
    p.ok(&["gc", "p.yaml"]);
    assert!(held.exists() && staging.exists(), "gc left a live lock's stage alone");
    assert!(p.path("cache/slurm/tiny/out/7.out").exists());
    assert!(!p.path("cache/slurm/other").exists());
    std::fs::write(&held, owner(now - 10_000.0, 600.0)).unwrap();
    p.ok(&["gc", "p.yaml"]);
    assert!(!held.exists() && !staging.exists(), "a dead lock's leftovers go");
}
