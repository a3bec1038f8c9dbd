//! The bad-input corpus: every file in `tests/corpus/bad/` is a pipeline or command line that
//! must be refused. Its header says how to run it and what must come back:
//!
//! ```text
//! # <what is wrong>
//! # args: run p.yaml          (the command line; the file's body is written as p.yaml)
//! # exit: 2
//! # stderr: <text the error must contain>   (one line or more)
//! ```
//!
//! Each case must exit with that status, print every expected text, and write nothing: no cache,
//! no reports, no file beside p.yaml.
use crate::common::*;
use std::path::PathBuf;

struct Case {
    file: PathBuf,
    args: Vec<String>,
    exit: i32,
    stderr: Vec<String>,
    body: String,
}

fn parse(file: PathBuf) -> Case {
    let text = std::fs::read_to_string(&file).unwrap();
    let (mut args, mut exit, mut expect) = (None, None, Vec::new());
    let mut body = Vec::new();
    let mut header = true;
    for line in text.lines() {
        if header && line.starts_with('#') {
            let l = line.trim_start_matches('#').trim();
            if let Some(a) = l.strip_prefix("args:") {
                args = Some(a.split_whitespace().map(str::to_string).collect());
            } else if let Some(e) = l.strip_prefix("exit:") {
                exit = Some(e.trim().parse().unwrap());
            } else if let Some(s) = l.strip_prefix("stderr:") {
                expect.push(s.trim().to_string());
            }
        } else {
            header = false;
            body.push(line);
        }
    }
    let name = file.display().to_string();
    Case {
        args: args.unwrap_or_else(|| panic!("{name}: no `# args:`")),
        exit: exit.unwrap_or_else(|| panic!("{name}: no `# exit:`")),
        stderr: {
            assert!(!expect.is_empty(), "{name}: no `# stderr:`");
            expect
        },
        body: if body.is_empty() {
            String::new()
        } else {
            body.join("\n") + "\n"
        },
        file,
    }
}

fn check(case: &Case) -> Result<(), String> {
    let p = Project::new();
    p.write("p.yaml", &case.body);
    let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let out = p.run(&args);
    let err = stderr(&out);
    let name = case
        .file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if out.status.code() != Some(case.exit) {
        return Err(format!(
            "{name}: exit {:?}, expected {}:\n{err}",
            out.status.code(),
            case.exit
        ));
    }
    for e in &case.stderr {
        if !err.contains(e.as_str()) {
            return Err(format!("{name}: expected `{e}` in:\n{err}"));
        }
    }
    let mut written: Vec<String> = std::fs::read_dir(p.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "p.yaml")
        .collect();
    written.sort();
    if !written.is_empty() {
        return Err(format!("{name}: wrote {written:?}"));
    }
    Ok(())
}

#[test]
fn every_bad_spec_and_command_line_is_refused_clearly_and_writes_nothing() {
    let dir = std::path::Path::new(crate::common::ROOT).join("tests/corpus/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let cases: Vec<Case> = files.into_iter().map(parse).collect();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(c) = cases.get(i) else { break };
                if let Err(e) = check(c) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The fuzz target's body (`fuzz/`, `scripts/fuzz.sh`) on its seeds and on every prefix of them
/// cut at 24 points: each must come back without a panic.
#[test]
fn the_fuzz_target_survives_its_seeds_and_their_prefixes() {
    let root = std::path::Path::new(crate::common::ROOT);
    let mut seeds = Vec::new();
    for dir in ["pipelines", "tests/corpus/bad"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                seeds.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    assert!(seeds.len() > 60);
    let mut runs = 0;
    for text in &seeds {
        let step = (text.len() / 24).max(1);
        for cut in (0..=text.len()).step_by(step) {
            if text.is_char_boundary(cut) {
                robarch::plan::fuzz_one(&text[..cut]);
                runs += 1;
            }
        }
    }
    println!("{runs} texts planned or refused");
}
