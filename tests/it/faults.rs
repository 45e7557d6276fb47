//! Regression tests for issue 12: the defects a fault sweep found (idle CPU and signals, log
//! segments and a full disk under the socket log, stale output of a replayed batch, `reset` on
//! a directory that is not a checkpoint, a missing `metadata`, two faults together, a changed
//! `--input`). Each runs the real binary.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::crash::{assert_exact, flip, random_text, seed, verify_over};
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
/// ends it cleanly (how fast: `cargo bench --bench stop_latency`).
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
    took.expect("the job ignored the signal for 5 s");
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

fn dfstream() -> Command {
    Command::new(bin())
}

fn reset(dir: &Path) -> Output {
    dfstream()
        .args(["reset", "--checkpoint"])
        .arg(dir)
        .output()
        .unwrap()
}

/// Asserts exit code 2 (refused before start) with `needle` in the message.
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "{needle:?} in:\n{}",
        stderr(out)
    );
}

fn wordcount() -> PathBuf {
    repo("sql/wordcount.sql")
}

#[test]
fn a_replayed_batch_without_rows_removes_what_its_first_run_wrote() {
    let stateless = "SELECT value FROM lines";
    for (mode, query) in [("update", None), ("append", Some(stateless))] {
        let ws = Workspace::new();
        let query = match query {
            Some(sql) => {
                let path = ws.dir.path().join("q.sql");
                std::fs::write(&path, sql).unwrap();
                path
            }
            None => wordcount(),
        };
        ws.add_file("a.txt", "apple apple\n");
        let args = ["--trigger", "once", "--mode", mode, "--no-console"];
        assert_ok(&ws.run(&query, &args));
        let first = ws.output.join("batch-000000000000.parquet");
        assert!(first.exists(), "{mode}: batch 0 wrote rows");
        // The job died after its sink wrote, before the commit; the input went meanwhile.
        std::fs::remove_file(ws.checkpoint.join("commits/0")).unwrap();
        let _ = std::fs::remove_file(ws.checkpoint.join("state/0.delta"));
        std::fs::remove_file(ws.input.join("a.txt")).unwrap();
        let out = ws.run(&query, &args);
        assert_ok(&out);
        assert_logged(&out, "vanished");
        assert!(
            !first.exists(),
            "{mode}: the replay of batch 0 read nothing, yet its first run's file stayed"
        );
    }
}

#[test]
fn reset_refuses_what_is_not_a_checkpoint_and_deletes_only_its_own_files() {
    let ws = Workspace::new();
    let project = ws.dir.path().join("proj");
    std::fs::create_dir_all(project.join("state")).unwrap();
    std::fs::write(project.join("state/important.txt"), "precious").unwrap();
    std::fs::write(project.join("metadata"), "my notes").unwrap();
    let out = reset(&project);
    assert_refused(&out, "not a dfstream checkpoint");
    assert_eq!(
        std::fs::read_to_string(project.join("state/important.txt")).unwrap(),
        "precious"
    );
    assert!(project.join("metadata").exists());

    let file = ws.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(reset(&file).status.code(), Some(2));
    assert!(file.exists());

    // A real checkpoint holding a file of the user's: dfstream's files go, the user's stays.
    ws.add_file("a.txt", "x y\n");
    assert_ok(&ws.run(&wordcount(), &["--trigger", "once", "--no-console"]));
    std::fs::write(ws.checkpoint.join("state/notes.txt"), "mine").unwrap();
    assert_ok(&reset(&ws.checkpoint));
    assert_eq!(
        std::fs::read_to_string(ws.checkpoint.join("state/notes.txt")).unwrap(),
        "mine"
    );
    let left: Vec<_> = std::fs::read_dir(ws.checkpoint.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    for gone in ["metadata", "offsets", "commits", "sources"] {
        assert!(!ws.checkpoint.join(gone).exists(), "{gone} is left");
    }
    // And the next run starts over.
    assert_ok(&ws.run(&wordcount(), &["--trigger", "once", "--no-console"]));
    assert_eq!(ws.commits(), [0]);
    // A reset cut short after deleting offsets and commits leaves state files: still a
    // checkpoint, that a run refuses and a reset finishes.
    for gone in ["metadata", "offsets", "commits"] {
        let path = ws.checkpoint.join(gone);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = ws.run(&wordcount(), &["--trigger", "once", "--no-console"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_ok(&reset(&ws.checkpoint));
    assert_ok(&ws.run(&wordcount(), &["--trigger", "once", "--no-console"]));
}

#[test]
fn a_checkpoint_with_batches_but_no_metadata_is_refused() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    assert_ok(&ws.run(&wordcount(), &["--trigger", "once", "--no-console"]));
    let result = ws.output.join("result.parquet");
    let before = std::fs::read(&result).unwrap();
    std::fs::remove_file(ws.checkpoint.join("metadata")).unwrap();
    ws.add_file("b.txt", "z\n");
    let other = ws.dir.path().join("other.sql");
    std::fs::write(&other, "SELECT count(*) AS n FROM lines").unwrap();
    let out = ws.run(&other, &["--trigger", "once", "--no-console"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("no metadata") && message.contains("dfstream reset"),
        "{message}"
    );
    assert_eq!(std::fs::read(&result).unwrap(), before, "output untouched");
    // The same query is refused too: nothing says it made the checkpoint.
    let out = ws.run(&wordcount(), &["--trigger", "once", "--no-console"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_sources_snapshot_written_during_a_replay_holds_only_replayed_files() {
    let ws = Workspace::new();
    let mut rng = StdRng::seed_from_u64(seed() + 12);
    for i in 0..4 {
        ws.add_file(&format!("f{i}.txt"), random_text(&mut rng));
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = |snapshot_interval: &str| {
        let args = [
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
            "--checkpoint-interval",
            "0",
            "--snapshot-interval",
            snapshot_interval,
        ];
        let out = ws.run(&wordcount(), &args);
        assert_ok(&out);
        out
    };
    let forget = |batches: std::ops::Range<u64>| forget_commits(&ws, batches);
    run("1000");
    assert_eq!(ws.commits(), [0, 1, 2, 3]);
    // A crash after commit 0 with batches 1 to 3 run but not committed (--checkpoint-interval
    // allows that): the next start replays them, writing snapshots at batches 1 and 3.
    forget(1..4);
    run("2");
    assert!(ws.checkpoint.join("sources/1.snapshot").exists());
    // A second crash just after the replay committed batch 1, and offsets/2 damaged too:
    // batches 2 and 3 cannot be replayed, so their files must be taken again as new input.
    forget(2..4);
    flip(&ws.checkpoint.join("offsets/2"));
    // A new file makes the job write its result again (else the last result would stay).
    ws.add_file("late.txt", "late arrival\n");
    let out = run("2");
    assert_logged(&out, "offsets/2 is damaged");
    assert_exact(&ws, "after a replay, a crash and damaged offsets");
}

/// Removes what commits `batches` (commit, state, sources snapshot), keeping their offsets:
/// as if the job died after running them, before committing them.
fn forget_commits(ws: &Workspace, batches: impl IntoIterator<Item = u64>) {
    for n in batches {
        for file in [
            format!("commits/{n}"),
            format!("state/{n}.delta"),
            format!("state/{n}.snapshot"),
            format!("sources/{n}.snapshot"),
        ] {
            let _ = std::fs::remove_file(ws.checkpoint.join(file));
        }
    }
}

#[test]
fn another_input_directory_on_the_same_checkpoint_is_refused() {
    let ws = Workspace::new();
    ws.add_file("part-0.txt", "from in\n");
    assert_ok(&ws.run(&wordcount(), &["--trigger", "once", "--no-console"]));
    let other = ws.dir.path().join("in2");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("part-0.txt"), "from in2\n").unwrap();
    let run_over = |input: &Path| {
        dfstream()
            .arg("run")
            .arg(wordcount())
            .arg("--input")
            .arg(input)
            .arg("--checkpoint")
            .arg(&ws.checkpoint)
            .args(["--trigger", "once", "--no-console"])
            .output()
            .unwrap()
    };
    let out = run_over(&other);
    assert_refused(&out, "reads other input");
    let verify = verify_over(&ws, &wordcount(), &other, &[]);
    assert_refused(&verify, "not the --input given");
    // The same directory named another way is the same input.
    let same = ws.dir.path().join("proj/../input");
    std::fs::create_dir(ws.dir.path().join("proj")).unwrap();
    assert_ok(&run_over(&same));
}

/// A line server for one test: the first connection gets `lines`, in chunks with pauses;
/// later connections get nothing. Holds connections open until `done`.
fn serve_once(lines: Vec<String>, done: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<()>) {
    serve(lines, done, false)
}

/// [`serve_once`], or with `to_every_client` the same lines to every connection.
fn serve(
    lines: Vec<String>,
    done: Arc<AtomicBool>,
    to_every_client: bool,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut open = Vec::new();
        let mut first = true;
        while !done.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            if std::mem::take(&mut first) || to_every_client {
                for chunk in lines.chunks(100) {
                    if conn.write_all(chunk.concat().as_bytes()).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            open.push(conn);
        }
    });
    (addr, server)
}

/// `count` lines of two words each, from 50 and 31 distinct words: a small state, and a line
/// torn and glued to another makes a word no line has.
fn two_word_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("w{} v{}\n", i % 50, (i * 7) % 31))
        .collect()
}

fn socket_job(ws: &Workspace, addr: &str, extra: &[&str]) -> Command {
    let mut cmd = dfstream();
    cmd.arg("run")
        .arg(wordcount())
        .args([
            "--socket",
            addr,
            "--no-console",
            "--checkpoint-interval",
            "0",
        ])
        .arg("--output")
        .arg(&ws.output)
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .args(extra)
        .env("RUST_LOG", "dfstream=info");
    cmd
}

/// The summed counts of the complete-mode result, once it exists.
fn counted_words(ws: &Workspace) -> i64 {
    let path = ws.output.join("result.parquet");
    if !path.exists() {
        return 0;
    }
    rows(&read_parquet_live(&path))
        .iter()
        .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
        .sum()
}

fn wait_for_words(ws: &Workspace, words: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while counted_words(ws) < words {
        assert!(
            Instant::now() < deadline,
            "{} of {words} words counted",
            counted_words(ws)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn socket_oracle(lines: &[String]) -> Vec<String> {
    let text = lines.concat();
    let sql = std::fs::read_to_string(wordcount()).unwrap();
    sorted_rows(&runtime().block_on(batch_query(
        &sql,
        &lines_of(text.as_bytes(), "socket", 0),
        &[],
        2,
    )))
}

fn batch_numbers(dir: &Path, suffix: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(suffix)?.parse().ok()
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_fall_back_past_damaged_state_replays_socket_lines_from_kept_log_segments() {
    let ws = Workspace::new();
    let lines = two_word_lines(3000);
    let done = Arc::new(AtomicBool::new(false));
    let (addr, server) = serve_once(lines.clone(), Arc::clone(&done));
    let retention = ["--snapshot-interval", "3", "--retain-batches", "5"];
    let job = Job::spawn(
        socket_job(
            &ws,
            &addr,
            &[&["--trigger", "continuous"], &retention[..]].concat(),
        )
        .env("DFSTREAM_WAL_SEGMENT_BYTES", "500")
        .stdout(Stdio::null()),
    );
    wait_for_words(&ws, 6000, Duration::from_secs(60));
    job.stop();
    // Damage the newest state snapshot S and the delta just after the one before it (S - 3):
    // recovery falls back to batch S - 3 and replays every batch after it from the log.
    let state = ws.checkpoint.join("state");
    let snapshot = *batch_numbers(&state, ".snapshot").last().unwrap();
    assert!(snapshot >= 5, "too few batches: newest snapshot {snapshot}");
    flip(&state.join(format!("{snapshot}.snapshot")));
    flip(&state.join(format!("{}.delta", snapshot - 2)));
    let out = socket_job(
        &ws,
        &addr,
        &[&["--trigger", "available-now"], &retention[..]].concat(),
    )
    .env("DFSTREAM_WAL_SEGMENT_BYTES", "500")
    .output()
    .unwrap();
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains(&format!("recovering from batch {}", snapshot - 3)),
        "{log}"
    );
    assert!(!log.contains("vanished before"), "{log}");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
        socket_oracle(&lines)
    );
}

#[test]
fn a_file_size_limit_on_the_socket_log_loses_no_line_and_tears_none() {
    full_log_disk(FullDisk::FileSizeLimit);
}

#[test]
fn a_full_filesystem_under_the_socket_log_loses_no_line_and_tears_none() {
    full_log_disk(FullDisk::Tmpfs);
}

/// How a test fills the disk under the socket log.
enum FullDisk {
    /// `ulimit -f 8`: appends fail once a segment reaches 8 KiB; raised with prlimit.
    FileSizeLimit,
    /// A 64 KiB tmpfs mounted at `checkpoint/wal`, filled to 8 KiB free; emptied later.
    Tmpfs,
}

/// Unmounts a test's tmpfs however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Lines arrive while appends to the socket log fail; once space is back, every line is
/// counted once and whole, over the one connection.
fn full_log_disk(how: FullDisk) {
    let ws = Workspace::new();
    let lines = two_word_lines(4000);
    let log_file = ws.dir.path().join("job.log");
    let done = Arc::new(AtomicBool::new(false));
    let (addr, server) = serve_once(lines.clone(), Arc::clone(&done));
    let mut cmd = socket_job(&ws, &addr, &["--trigger", "continuous"]);
    let mut _mounted = None;
    let filler = ws.checkpoint.join("wal/filler");
    match how {
        FullDisk::FileSizeLimit => {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs before exec.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 8 * 1024,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        FullDisk::Tmpfs => {
            let wal = ws.checkpoint.join("wal");
            std::fs::create_dir_all(&wal).unwrap();
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(&wal)
                .output();
            assert!(
                mounted.as_ref().is_ok_and(|o| o.status.success()),
                "cannot mount a 64 KiB tmpfs for the full-disk test (it needs root with the \
                 right to mount): {mounted:?}"
            );
            _mounted = Some(Mounted(wal));
            std::fs::write(&filler, vec![b'x'; 56 * 1024]).unwrap();
        }
    }
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap());
    let mut job = cmd.spawn().unwrap();
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while log().matches("retrying in").count() < 3 {
        assert!(Instant::now() < deadline, "no failed append:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        counted_words(&ws) < 8000,
        "everything counted despite the full disk"
    );
    // Space again: the waiting lines go into the log, whole, and the job goes on.
    match how {
        FullDisk::FileSizeLimit => {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: prlimit with a valid pid and limit, and no old limit asked for.
            let raised = unsafe {
                libc::prlimit(
                    job.id() as libc::pid_t,
                    libc::RLIMIT_FSIZE,
                    &unlimited,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(raised, 0, "{}", std::io::Error::last_os_error());
        }
        FullDisk::Tmpfs => std::fs::remove_file(&filler).unwrap(),
    }
    wait_for_words(&ws, 8000, Duration::from_secs(60));
    signal(&job, "TERM");
    assert!(job.wait().unwrap().success(), "{}", log());
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    let log = log();
    assert_eq!(
        log.matches("connected to").count(),
        1,
        "a failed append must not drop the connection:\n{log}"
    );
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
        socket_oracle(&lines),
        "a line lost, torn or counted twice"
    );
}

#[test]
fn socket_lines_of_a_replay_batch_lost_to_damaged_offsets_are_read_again() {
    let ws = Workspace::new();
    let lines = two_word_lines(3000);
    let done = Arc::new(AtomicBool::new(false));
    let (addr, server) = serve_once(lines.clone(), Arc::clone(&done));
    let job = Job::spawn(
        socket_job(&ws, &addr, &["--trigger", "continuous"])
            .args(["--snapshot-interval", "1000"])
            .stdout(Stdio::null()),
    );
    wait_for_words(&ws, 6000, Duration::from_secs(60));
    job.stop();
    let last = *ws.commits().last().unwrap();
    assert!(last >= 3, "too few batches: {last}");
    let run = || {
        let out = socket_job(&ws, &addr, &["--trigger", "available-now"])
            .args(["--snapshot-interval", "2"])
            .output()
            .unwrap();
        assert_ok(&out);
        out
    };
    // A crash after commit 0 with the later batches run but not committed: they are replayed
    // from their log ranges, the replay committing batch 1 with a snapshot.
    forget_commits(&ws, 1..=last);
    run();
    // A second crash just after that commit, and offsets/2 damaged: batches 2 and later cannot
    // be replayed, so their lines must be taken again from where batch 1 ended.
    forget_commits(&ws, 2..=last);
    flip(&ws.checkpoint.join("offsets/2"));
    let out = run();
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_logged(&out, "offsets/2 is damaged");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
        socket_oracle(&lines)
    );
}

#[test]
fn a_replay_whose_log_segment_is_gone_is_refused_at_start() {
    let ws = Workspace::new();
    let lines: Vec<String> = (0..1000).map(|i| format!("w{}\n", i % 50)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let (addr, server) = serve(lines.clone(), Arc::clone(&done), true);
    let job =
        Job::spawn(socket_job(&ws, &addr, &["--trigger", "continuous"]).stdout(Stdio::null()));
    wait_for_words(&ws, 1000, Duration::from_secs(60));
    job.stop();
    let result = std::fs::read(ws.output.join("result.parquet")).unwrap();
    // The last batch must be re-run, but its log is deleted by hand (and the server would
    // send lines again, which must not be read in its place).
    forget_commits(&ws, [*ws.commits().last().unwrap()]);
    for segment in std::fs::read_dir(ws.checkpoint.join("wal")).unwrap() {
        std::fs::remove_file(segment.unwrap().path()).unwrap();
    }
    let out = socket_job(&ws, &addr, &["--trigger", "available-now"])
        .output()
        .unwrap();
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_refused(&out, "deleted or cut short");
    assert_eq!(
        std::fs::read(ws.output.join("result.parquet")).unwrap(),
        result,
        "nothing counted short"
    );
}

#[test]
fn a_batch_that_fails_every_time_can_be_set_aside_and_the_rest_goes_on() {
    let ws = Workspace::new();
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT word, sum(100 / (length(word) - 1)) AS s \
         FROM (SELECT unnest(words(value)) AS word FROM lines) GROUP BY word",
    )
    .unwrap();
    let args = ["--trigger", "once", "--no-console"];
    ws.add_file("a.txt", "hello world\n");
    assert_ok(&ws.run(&query, &args));
    ws.add_file("bad.txt", "x\n");
    for _ in 0..2 {
        // The batch fails, and fails again when it is re-run at the next start.
        let out = ws.run(&query, &args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        for needle in ["batch 1 failed (input:", "bad.txt", "Divide by zero"] {
            assert_logged(&out, needle);
        }
        assert_logged(&out, "dfstream checkpoint skip-batch 1 --checkpoint");
    }
    let checkpoint_command = |args: &[&str]| {
        dfstream()
            .arg("checkpoint")
            .args(args)
            .arg("--checkpoint")
            .arg(&ws.checkpoint)
            .output()
            .unwrap()
    };
    assert_refused(&checkpoint_command(&["skip-batch", "0"]), "is committed");
    assert_refused(&checkpoint_command(&["skip-batch", "7"]), "no good offsets");
    let out = checkpoint_command(&["skip-batch", "1"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("batch 1 set aside (bad.txt)"),
        "{}",
        stdout(&out)
    );
    // A run killed inside the set-aside batch, then one that finishes: it stays set aside.
    ws.add_file("c.txt", "more words\n");
    // Killed once it has begun re-running the batch (its offsets written again).
    ws.kill_once_a_batch_begins(&query, &args);
    assert!(!ws.commits().contains(&1), "the kill fell after the batch");
    let show = checkpoint_command(&["show"]);
    assert!(
        stdout(&show).contains("skipped    batch 1, input set aside: bad.txt"),
        "{}",
        stdout(&show)
    );
    let progress = ws.dir.path().join("progress.jsonl");
    let with_progress = [&args[..], &["--progress", progress.to_str().unwrap()]].concat();
    let out = ws.run(&query, &with_progress);
    assert_ok(&out);
    assert_logged(&out, "set aside by `dfstream checkpoint skip-batch`");
    // Its progress record says so.
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&progress)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["batchId"], 1);
    assert_eq!(record["setAside"], true, "{record}");
    assert_eq!(record["numInputRows"], 0, "{record}");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(ws.commits(), [0, 1, 2]);
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["hello|25", "more|33", "words|25", "world|25"]
    );
    // verify leaves the set-aside file out too.
    let verify = verify_over(&ws, &query, &ws.input, &[]);
    assert_ok(&verify);
    assert!(stdout(&verify).contains("OK"), "{}", stdout(&verify));
}

/// A word count whose final aggregation over the state fails (a division by zero) once a
/// word is counted twice: after the batch's rows were merged into the state in memory.
fn fails_at_a_second_count(ws: &Workspace) -> std::path::PathBuf {
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT word, 100 / (count(*) - 2) AS s \
         FROM (SELECT unnest(words(value)) AS word FROM lines) GROUP BY word",
    )
    .unwrap();
    query
}

/// `dfstream checkpoint skip-batch BATCH` on the job in `ws`.
fn skip_batch(ws: &Workspace, batch: u64) -> std::process::Output {
    dfstream()
        .args([
            "checkpoint",
            "skip-batch",
            &batch.to_string(),
            "--checkpoint",
        ])
        .arg(&ws.checkpoint)
        .output()
        .unwrap()
}

#[test]
fn the_batches_before_a_failing_one_are_committed_and_only_it_is_re_run() {
    let ws = Workspace::new();
    let query = fails_at_a_second_count(&ws);
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--snapshot-interval",
        "1",
        // Batch 0 waits for the failure to be committed.
        "--checkpoint-interval",
        "1h",
        "--no-console",
    ];
    ws.add_file("a.txt", "c d\n");
    ws.add_file("b.txt", "c\n");
    let out = ws.run(&query, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_logged(&out, "batch 1 failed (input: b.txt)");
    // Batch 0 finished within the commit interval: committed when batch 1 failed, without
    // a snapshot of the state that already counted b.txt.
    assert_eq!(ws.commits(), [0]);
    assert_ok(&skip_batch(&ws, 1));
    ws.add_file("e.txt", "e\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(ws.commits(), [0, 1, 2]);
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["c|-100", "d|-100", "e|-100"]
    );
}

#[test]
fn after_recovery_worked_around_damage_a_failing_batch_commits_nothing_early() {
    // Recovery that worked around a damaged file owes a snapshot; a failing batch cannot
    // write it (the state in memory may hold part of it), so the batches before it are not
    // committed early either: retention must not drop what the next recovery falls back on.
    let ws = Workspace::new();
    let query = fails_at_a_second_count(&ws);
    let args = |interval: &'static str| {
        [
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--checkpoint-interval",
            interval,
            "--retain-batches",
            "1",
            "--no-console",
        ]
    };
    ws.add_file("a.txt", "c d\n");
    ws.add_file("b.txt", "e\n");
    assert_ok(&ws.run(&query, &args("0")));
    assert_eq!(ws.commits(), [0, 1]);
    assert!(crate::crash::damage_newest_state(&ws.checkpoint));
    ws.add_file("f.txt", "x y\n");
    ws.add_file("g.txt", "c\n");
    let out = ws.run(&query, &args("1h"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_logged(&out, "is damaged");
    assert_logged(&out, "failed (input: g.txt)");
    assert_eq!(ws.commits(), [0], "{}", stderr(&out));
    // Set aside, the rest is counted exactly once.
    let failed: u64 = stderr(&out)
        .split("skip-batch ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_ok(&skip_batch(&ws, failed));
    assert_ok(&ws.run(&query, &args("0")));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["c|-100", "d|-100", "e|-100", "x|-100", "y|-100"]
    );
}

#[test]
fn a_log_left_in_an_outside_wal_dir_is_refused_for_a_new_checkpoint_and_reset_clears_it() {
    let ws = Workspace::new();
    let wal_dir = ws.dir.path().join("outside-wal");
    let wal = wal_dir.display().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let (addr, server) = serve_once(two_word_lines(100), Arc::clone(&done));
    let mut child = socket_job(&ws, &addr, &["--wal-dir", &wal])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_words(&ws, 200, Duration::from_secs(30));
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    done.store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert!(
        std::fs::read_dir(&wal_dir).unwrap().count() > 0,
        "logged outside"
    );
    // A new checkpoint over that log would count its lines again: refused.
    let other = Workspace::new();
    let out = socket_job(&other, "127.0.0.1:9", &["--wal-dir", &wal])
        .output()
        .unwrap();
    assert_refused(&out, "logged for another checkpoint");
    // And again at the next start, although that refused start left a checkpoint behind.
    let out = socket_job(&other, "127.0.0.1:9", &["--wal-dir", &wal])
        .output()
        .unwrap();
    assert_refused(&out, "logged for another checkpoint");
    // `reset --wal-dir` clears the log with the checkpoint.
    let out = dfstream()
        .arg("reset")
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .args(["--wal-dir", &wal])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(std::fs::read_dir(&wal_dir).unwrap().count(), 0);
}
