//! The speed halves of behaviour tests that only check behaviour: how soon dfstream stops on a
//! signal (an idle job on SIGINT and SIGTERM, a job in a slow batch on a second SIGINT), and how
//! closely `dfstream generate continuous` keeps its rate. Each is reported as a ratio to a
//! yardstick from the same run: stops against the time to start and end the binary
//! (`dfstream --version`), the second SIGINT against the batch's remaining pause, the generator
//! against the rate it was asked for.
//!
//! ```text
//! cargo bench --bench stop_latency
//! ```

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let root = tempfile::tempdir().unwrap();
    let process = median(
        (0..10)
            .map(|_| {
                let start = Instant::now();
                let status = Command::new(dfstream()).arg("--version").output().unwrap();
                assert!(status.status.success());
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!(
        "yardstick: dfstream --version starts and ends in {:.1} ms",
        process * 1e3
    );
    for signal in ["INT", "TERM"] {
        let stop = median((0..5).map(|_| idle_stop(root.path(), signal)).collect());
        println!(
            "an idle job stops on SIG{signal} in {:.1} ms: {:.1}x a process start and end",
            stop * 1e3,
            stop / process
        );
    }
    let pause = Duration::from_secs(2);
    let second = median(
        (0..3)
            .map(|_| second_sigint_stop(root.path(), pause))
            .collect(),
    );
    println!(
        "a second SIGINT ends a job in a batch paused for {pause:?} in {:.1} ms: {:.3} of the pause",
        second * 1e3,
        second / pause.as_secs_f64()
    );
    let (asked, got) = generator_rate(root.path());
    println!(
        "generate continuous: {got:.1} files/s of the {asked:.1} asked for ({:.2})",
        got / asked
    );
}

fn dfstream() -> &'static str {
    env!("CARGO_BIN_EXE_dfstream")
}

/// A fresh input directory under `root` and a `dfstream run` word count over it.
fn job(root: &Path) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir_in(root).unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    let mut cmd = Command::new(dfstream());
    cmd.arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/wordcount.sql"))
        .arg("--input")
        .arg(dir.path().join("input"))
        .arg("--checkpoint")
        .arg(dir.path().join("checkpoint"))
        .arg("--no-console")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (dir, cmd)
}

/// Waits until `path` exists (panics after 60 s).
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Seconds from `signal` to the exit of a job that has finished a batch and is idle.
fn idle_stop(root: &Path, signal: &str) -> f64 {
    let (dir, mut cmd) = job(root);
    std::fs::write(dir.path().join("input/a.txt"), "idle words\n").unwrap();
    let mut child = cmd.spawn().unwrap();
    wait_for(&dir.path().join("checkpoint/commits/0"));
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    send(&child, signal);
    let status = child.wait().unwrap();
    let took = start.elapsed().as_secs_f64();
    assert!(status.success(), "SIG{signal}: {status:?}");
    took
}

/// Seconds from a second SIGINT to the exit of a job inside a batch whose steps pause `pause`
/// (the first SIGINT asks it to finish the batch).
fn second_sigint_stop(root: &Path, pause: Duration) -> f64 {
    let (dir, mut cmd) = job(root);
    let mut child = cmd
        .env(
            "DFSTREAM_PAUSE_BETWEEN_STEPS_MS",
            pause.as_millis().to_string(),
        )
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join("input/a.txt"), "one two\n").unwrap();
    wait_for(&dir.path().join("checkpoint/offsets/0"));
    send(&child, "INT");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    send(&child, "INT");
    let status = child.wait().unwrap();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(130));
    assert!(
        !dir.path().join("checkpoint/commits/0").exists(),
        "the batch was finished"
    );
    took
}

/// (files per second asked for, files per second written) by `generate continuous` asked for
/// a file every 20 ms for 2 s.
fn generator_rate(root: &Path) -> (f64, f64) {
    let dir = tempfile::tempdir_in(root).unwrap();
    let out = dir.path().join("stream");
    let (interval, duration) = (0.02, 2.0);
    let start = Instant::now();
    let status = Command::new(dfstream())
        .args(["generate", "continuous"])
        .arg(&out)
        .args([&interval.to_string(), &duration.to_string(), "500"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    assert!(status.success());
    // Every file written is whole: 500 lines, each ended.
    let mut files = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().count() == 500 && text.ends_with('\n'),
            "{} is not 500 whole lines",
            path.display()
        );
        files += 1;
    }
    assert!(files > 0, "no files generated");
    (1.0 / interval, files as f64 / took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
