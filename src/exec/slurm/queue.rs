//! Talking to Slurm through its commands: `sbatch` to submit, and one `squeue` (then, for jobs
//! that left the queue, one `sacct`) per poll for every job of a run, however many there are.
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// A job's Slurm state and the reason Slurm gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, …
    pub state: String,
    pub reason: String,
    /// The job's name (robarch names its jobs `robarch:<pipeline>:<kind>`).
    pub name: String,
}

impl JobState {
    /// Whether the job is done with (it will not run again by itself). A job pending on a
    /// dependency that failed never runs (Slurm cancels it soon).
    pub fn terminal(&self) -> bool {
        self.reason == "DependencyNeverSatisfied"
            || !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "REQUEUED"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESIZING"
                | "SUSPENDED"
                | "CONFIGURING"
                | "COMPLETING"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
                | "RESV_DEL_HOLD"
                | "SPECIAL_EXIT"
        )
    }

    /// Whether the job waits for someone to release it (`scontrol release`): it will not run by
    /// itself, though it may yet.
    pub fn held(&self) -> bool {
        matches!(self.state.as_str(), "REQUEUE_HOLD" | "SPECIAL_EXIT")
            || (self.state == "PENDING"
                && (self.reason.starts_with("JobHeld") || self.reason.contains("held")))
    }

    /// The text after a job id in messages: `FAILED (NonZeroExitCode)`.
    pub fn describe(&self) -> String {
        if self.reason.is_empty() || self.reason == "None" {
            self.state.clone()
        } else {
            format!("{} ({})", self.state, self.reason)
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| {
        format!("running `{what}`: is Slurm installed here and its commands on PATH? (the Slurm executor runs sbatch, squeue and sacct)")
    })?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Submits `script` with `args`; returns the job id (`--parsable` prints `id[;cluster]`).
pub fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = run(
        Command::new("sbatch")
            .arg("--parsable")
            .args(args)
            .arg(script),
        &format!("sbatch {} {}", args.join(" "), script.display()),
    )?;
    let id = out.trim().split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("sbatch printed no job id: {out:?}");
    }
    Ok(id)
}

/// The raw job id of `job` (`123` of `123_4`), the form `squeue -j` and `sacct -j` take.
pub fn raw(job: &str) -> &str {
    job.split('_').next().unwrap_or(job)
}

/// Parses `squeue -o '%i|%T|%j|%r'` lines (one per array task with `-r`; the reason last, as
/// the one field that may hold anything).
pub fn parse_squeue(out: &str) -> HashMap<String, JobState> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(4, '|');
            let (id, state, name, reason) =
                (f.next()?, f.next()?, f.next().unwrap_or(""), f.next().unwrap_or(""));
            Some((
                id.to_string(),
                JobState {
                    state: state.to_string(),
                    reason: reason.to_string(),
                    name: name.to_string(),
                },
            ))
        })
        .collect()
}

/// Parses `sacct -n -P -X -o JobID,State,JobName,ExitCode` lines; `CANCELLED by 0` is
/// CANCELLED.
pub fn parse_sacct(out: &str) -> HashMap<String, JobState> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state, name, code) = (
                f.next()?,
                f.next()?,
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            let name = name.to_string();
            let state = state.split_whitespace().next()?.to_string();
            Some((
                id.to_string(),
                JobState {
                    state,
                    reason: if code.is_empty() || code == "0:0" {
                        String::new()
                    } else {
                        format!("exit code {code}")
                    },
                    name,
                },
            ))
        })
        .collect()
}

/// The states of `jobs` (ids as submitted, `123` or `123_4`): one `squeue` for all of them,
/// then one `sacct` for those no longer in the queue (where accounting is on). A job neither
/// knows is absent from the answer.
pub fn query(jobs: &[String]) -> Result<HashMap<String, JobState>> {
    let mut out = HashMap::new();
    if jobs.is_empty() {
        return Ok(out);
    }
    let mut raws: Vec<&str> = jobs.iter().map(|j| raw(j)).collect();
    raws.sort();
    raws.dedup();
    let list = raws.join(",");
    // `--states=all` keeps finished jobs for as long as the controller remembers them
    // (MinJobAge); `-r` gives each array task its own line.
    let text = run(
        Command::new("squeue").args([
            "-h",
            "-r",
            "--states=all",
            "-o",
            "%i|%T|%j|%r",
            "-j",
            &list,
        ]),
        "squeue",
    )
    .or_else(|e| {
        // squeue fails outright when every id it was given has left the queue.
        if format!("{e:#}").contains("Invalid job id") {
            Ok(String::new())
        } else {
            Err(e)
        }
    })?;
    let seen = parse_squeue(&text);
    let missing: Vec<&String> = jobs.iter().filter(|j| !seen.contains_key(*j)).collect();
    out.extend(seen);
    if !missing.is_empty() {
        let ids: Vec<&str> = missing.iter().map(|j| j.as_str()).collect();
        // No accounting: these are simply unknown (the caller looks at the cache instead).
        if let Ok(text) = run(
            Command::new("sacct").args([
                "-n",
                "-P",
                "-X",
                "-o",
                "JobID,State,JobName,ExitCode",
                "-j",
                &ids.join(","),
            ]),
            "sacct",
        ) {
            out.extend(
                parse_sacct(&text)
                    .into_iter()
                    .filter(|(id, _)| missing.contains(&id)),
            );
        }
    }
    Ok(out)
}

/// Cancels `jobs`.
pub fn scancel(jobs: &[String]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    run(Command::new("scancel").args(jobs), "scancel").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_parse() {
        let q = parse_squeue(
            "12|COMPLETED|robarch:t:train|None\n13_0|FAILED|robarch:t:evaluate|NonZeroExitCode\n14|PENDING|x|Dependency\n15|PENDING|x|launch failed requeued held\n",
        );
        assert_eq!(q["13_0"].name, "robarch:t:evaluate");
        assert!(q["15"].held() && !q["15"].terminal() && !q["14"].held());
        assert_eq!(q["13_0"].describe(), "FAILED (NonZeroExitCode)");
        assert_eq!(q["12"].describe(), "COMPLETED");
        assert!(q["12"].terminal() && q["13_0"].terminal() && !q["14"].terminal());
        let a = parse_sacct("15|CANCELLED by 0|j|0:15\n16|TIMEOUT|j|0:0\n17_2|OUT_OF_MEMORY|j|0:125\n");
        assert_eq!(a["15"].state, "CANCELLED");
        assert_eq!(a["15"].reason, "exit code 0:15");
        assert_eq!(a["16"].describe(), "TIMEOUT");
        assert!(a["17_2"].terminal());
        assert_eq!(raw("17_2"), "17");
    }
}
