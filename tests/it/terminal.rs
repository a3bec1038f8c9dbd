//! What `robarch run` shows a person: on a terminal (driven in tmux and read back with
//! `capture-pane`), a clock that moves, the running stages by name with their epochs or points,
//! an ETA, and a short ending with the report's path last; in a pipe, stable lines; `-q` and
//! `-v`.
use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two tiny architectures, three epochs on 1,000 digits at 16 px: about ten seconds of stages.
const SLOW: &str = r#"name: tiny
seed: 3
device: cpu
datasets:
  digits: {source: embedded:digits, resolution: 16, limit: 1000}
models:
  resnet18: {preset: tiny}
  vit: {preset: tiny}
training:
  at:
    attack: {norm: linf, eps: 8/255, steps: 2}
    epochs: 3
    batch_size: 32
    optimizer: {name: adamw, lr: 2e-3}
evaluation:
  limit: 500
  attacks:
    clean: {}
    fgsm: {eps: 8/255}
    pgd: {eps: 8/255, steps: 10}
analysis: [sparsity]
"#;

/// Whether tmux runs; without it, fails under `ROBARCH_REPORT_TOOLS=required` (the test
/// command installs it), else says the test skipped.
fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("ROBARCH_REPORT_TOOLS").as_deref() != Ok("required"),
            "tmux is required (ROBARCH_REPORT_TOOLS=required) but does not run"
        );
        eprintln!("SKIPPED: `tmux` is not installed (scripts/test.sh installs it with apt-get)");
    }
    ok
}

/// `robarch` with the environment a user has: no `ROBARCH_LOG`.
fn plain(p: &Project, args: &[&str]) -> std::process::Output {
    p.cmd(args).env_remove("ROBARCH_LOG").output().unwrap()
}

/// The overall bar's finished-stage count and clock, e.g. `tiny [==>   ] 3/18 stages 7s ETA 4.1s`.
fn clock(screen: &str) -> Option<(u32, String)> {
    let line = screen.lines().find(|l| l.starts_with("tiny ["))?;
    let rest = &line[line.find("] ")? + 2..];
    let mut words = rest.split_whitespace();
    let count = words.next()?.split('/').next()?.parse().ok()?;
    let _stages = words.next()?;
    Some((count, words.next()?.to_string()))
}

#[test]
fn a_terminal_shows_a_moving_clock_the_stages_and_the_report_last() {
    if !have_tmux() {
        return;
    }
    let p = Project::new();
    p.write("p.yaml", SLOW);
    let socket = format!("robarch-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let script = format!(
        "env -u ROBARCH_LOG -u ROBARCH_CACHE {} run p.yaml; echo EXIT=$?; sleep 600",
        robarch_bin().display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "160",
        "-y",
        "45",
        "-c",
        p.dir.path().to_str().unwrap(),
        &script,
    ]);
    assert!(started.status.success(), "{}", stderr(&started));
    let t0 = Instant::now();
    let mut screens = Vec::new();
    let last = loop {
        std::thread::sleep(Duration::from_millis(250));
        let s = stdout(&tmux(&["capture-pane", "-p", "-t", "t"]));
        if s.contains("EXIT=") {
            break s;
        }
        screens.push(s);
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no end: {screens:?}"
        );
    };
    tmux(&["kill-server"]);
    // The clock moves between stage ends: one count of finished stages, several times shown.
    let clocks: Vec<(u32, String)> = screens.iter().filter_map(|s| clock(s)).collect();
    let moved = clocks
        .iter()
        .any(|(n, t)| clocks.iter().any(|(m, u)| m == n && u != t));
    assert!(moved, "the clock never moved: {clocks:?}");
    let all = screens.join("\n");
    for shown in [
        "train/digits/resnet18/at epoch ",
        "train/digits/vit/at epoch ",
        " split: ",
        ", points ",
        "ETA ",
    ] {
        assert!(all.contains(shown), "`{shown}` never shown:\n{all}");
    }
    // The ending is last: the counts, then the report.
    let lines: Vec<&str> = last
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len();
    assert_eq!(lines[n - 1], "EXIT=0", "{last}");
    assert_eq!(lines[n - 2], "report: reports/tiny/index.html", "{last}");
    assert!(
        lines[n - 3].starts_with("18 stages: 18 ran, 0 cached, 0 failed, 0 skipped in "),
        "{last}"
    );
    // No tables on the screen unless asked.
    assert!(!last.contains("| Model |"), "{last}");
}

#[test]
fn quiet_verbose_and_piped_output() {
    let p = Project::new();
    p.write("p.yaml", TINY);
    // In a pipe: a stable line per stage that ran, the counts, the report; no log lines below
    // WARN on stderr, while the stage's own log keeps its epochs.
    let out = plain(&p, &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.len() < 120), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ran ") && l.ends_with("  train/digits/resnet18/at")),
        "{text}"
    );
    assert!(
        lines[lines.len() - 2].starts_with("10 stages: 10 ran, 0 cached, 0 failed, 0 skipped in "),
        "{text}"
    );
    assert_eq!(
        lines[lines.len() - 1],
        "report: reports/tiny/index.html",
        "{text}"
    );
    assert!(
        !stderr(&out).contains("checkpoint saved"),
        "{}",
        stderr(&out)
    );
    let log =
        std::fs::read_to_string(p.path("cache/logs/tiny/train/digits/resnet18/at.log")).unwrap();
    assert!(log.contains("checkpoint saved"), "{log}");

    // A no-op: no line per cached stage, and no tables unless asked.
    let text = stdout(&plain(&p, &["run", "p.yaml"]));
    assert_eq!(text.lines().count(), 2, "{text}");
    let text = stdout(&plain(&p, &["run", "p.yaml", "--print"]));
    assert!(text.contains("| Model |"), "{text}");
    assert!(
        text.trim_end().ends_with("report: reports/tiny/index.html"),
        "{text}"
    );
    let text = stdout(&plain(&p, &["report", "p.yaml", "--print"]));
    assert!(text.contains("| Model |"), "{text}");

    // -q: where the report is, nothing else.
    let out = plain(&p, &["-q", "run", "p.yaml"]);
    assert_eq!(stdout(&out), "report: reports/tiny/index.html\n");
    assert_eq!(stderr(&out), "");

    // -v: a line per cached stage, and the epochs' INFO lines, each naming its stage, at a
    // readable precision.
    let out = plain(&p, &["-v", "run", "p.yaml", "--force", "train/*"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l == "cached          prepare/digits"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    let saved: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("checkpoint saved"))
        .collect();
    assert_eq!(saved.len(), 2, "{err}");
    for l in saved {
        assert!(l.starts_with("train/digits/resnet18/at  "), "{l}");
        let loss = l
            .split("loss=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert_eq!(loss.split('.').nth(1).map(str::len), Some(4), "{l}");
        // `HH:MM:SS`, not microseconds.
        let time = l.split_whitespace().nth(1).unwrap();
        assert_eq!(time.len(), 8, "{l}");
    }
}
