//! The socket source against real servers on 127.0.0.1: results equal the batch oracle;
//! reconnects when the server comes late, drops or restarts; SIGKILL mid-stream counts every
//! logged line exactly once.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    Job, Line, Workspace, batch_query, bin, lines_of, read_parquet_live, repo, runtime, sorted_rows,
};

/// Starts a job reading `addr` (and `extra` flags), with Parquet output in complete mode.
fn start_job(ws: &Workspace, query: &std::path::Path, addr: &str, extra: &[&str]) -> Job {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg(query)
        .args(["--socket", addr, "--trigger", "continuous", "--no-console"])
        .arg("--output")
        .arg(&ws.output)
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .args(extra)
        .env("RUST_LOG", "dfstream=info")
        // Small log segments, so that segments roll and are deleted during a test.
        .env("DFSTREAM_WAL_SEGMENT_BYTES", "2000")
        .stdout(Stdio::null());
    Job::spawn(&mut cmd)
}

/// Waits until the complete-mode result satisfies `done`.
fn wait_for_result(ws: &Workspace, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = ws.output.join("result.parquet");
        if path.exists() {
            let got = sorted_rows(&read_parquet_live(&path));
            if done(&got) {
                return got;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the result"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn total_count(rows: &[String]) -> i64 {
    rows.iter()
        .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
        .sum()
}

fn wordcount_oracle(lines: &[Line]) -> Vec<String> {
    let sql = std::fs::read_to_string(repo("sql/wordcount.sql")).unwrap();
    sorted_rows(&runtime().block_on(batch_query(&sql, lines, &[], 2)))
}

#[test]
fn socket_lines_count_like_the_batch_oracle_with_files_alongside() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "from a file\n");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent: &[u8] = b"hello world\r\nhello socket\n\ncaf\xe9 ok\nthis line is far too long for the limit\nlast line without newline";
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        // In pieces, so lines span reads.
        for chunk in sent.chunks(7) {
            conn.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let job = start_job(
        &ws,
        &repo("sql/wordcount.sql"),
        &addr,
        &[
            "--input",
            ws.input.to_str().unwrap(),
            "--max-line-bytes",
            "30",
        ],
    );
    server.join().unwrap();
    // The oracle: the same bytes through the text policy (the long line skipped).
    let mut lines: Vec<Line> = lines_of(
        b"hello world\r\nhello socket\n\ncaf\xe9 ok\nlast line without newline\n",
        &addr,
        0,
    );
    lines.extend(lines_of(b"from a file\n", "a.txt", 0));
    let expected = wordcount_oracle(&lines);
    let want = total_count(&expected);
    let got = wait_for_result(&ws, |rows| total_count(rows) >= want);
    let log = job.stop();
    assert_eq!(got, expected);
    assert!(
        log.contains("1 long lines skipped") && log.contains("1 lines decoded lossily"),
        "{log}"
    );
}

#[test]
fn reconnects_when_the_server_comes_late_drops_and_restarts() {
    let ws = Workspace::new();
    // A port nobody listens on yet.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let job = start_job(&ws, &repo("sql/wordcount.sql"), &addr.to_string(), &[]);
    // The job tries, fails and retries before the server is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job.log().contains("retrying in") {
        assert!(Instant::now() < deadline, "no retry:\n{}", job.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener = TcpListener::bind(addr).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"one two\n").unwrap();
    drop(conn); // a drop
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"two three\n").unwrap();
    drop(conn);
    drop(listener); // the server goes away, and comes back
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(addr).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"three four\n").unwrap();
    let got = wait_for_result(&ws, |rows| total_count(rows) >= 6);
    drop(conn);
    let log = job.stop();
    assert_eq!(got, ["four|1", "one|1", "three|2", "two|2"]);
    assert!(
        log.contains("cannot connect") && log.contains("retrying in"),
        "{log}"
    );
    assert!(log.contains("reconnecting"), "{log}");
}

#[test]
fn sigkill_mid_stream_counts_every_logged_line_exactly_once() {
    sigkill_storm(false);
}

#[test]
fn sigkill_mid_stream_with_damaged_newest_state_counts_every_logged_line_once() {
    sigkill_storm(true);
}

/// SIGKILLs a socket job mid-stream four times (after each kill, with `damage`, a byte of the
/// newest state file is flipped, so the next start falls back and replays from the log),
/// then lets a last run read the stream to its end.
fn sigkill_storm(damage: bool) {
    let ws = Workspace::new();
    let query = ws.dir.path().join("lines.sql");
    std::fs::write(
        &query,
        "SELECT value, count(*) AS n FROM lines GROUP BY value",
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // The server numbers its lines across connections and remembers where each began.
    let next = Arc::new(AtomicU64::new(1));
    let done = Arc::new(AtomicBool::new(false));
    let firsts = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Lines go on until the last run is connected; then the stream ends at `limit`.
    let limit = Arc::new(AtomicU64::new(u64::MAX));
    let (n2, d2, f2, l2) = (
        Arc::clone(&next),
        Arc::clone(&done),
        Arc::clone(&firsts),
        Arc::clone(&limit),
    );
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        while !d2.load(Ordering::SeqCst) {
            let Ok((conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            f2.lock().unwrap().push(n2.load(Ordering::SeqCst));
            feed(conn, &n2, &l2, &d2);
        }
    });
    let mut kills = 0;
    for round in 0..4 {
        let job = start_job(
            &ws,
            &query,
            &addr,
            &[
                "--max-batch-rows",
                "500",
                "--snapshot-interval",
                "3",
                "--retain-batches",
                "6",
            ],
        );
        std::thread::sleep(Duration::from_millis(300 + 100 * round));
        let mut job = job;
        job.child.kill().unwrap(); // SIGKILL
        job.wait();
        kills += 1;
        if damage {
            crate::crash::damage_newest_state(&ws.checkpoint);
        }
    }
    // A last run sees the stream to its end.
    let job = start_job(
        &ws,
        &query,
        &addr,
        &["--snapshot-interval", "3", "--retain-batches", "6"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while firsts.lock().unwrap().len() <= kills {
        assert!(Instant::now() < deadline, "the last run did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let last = next.load(Ordering::SeqCst) + 300;
    limit.store(last, Ordering::SeqCst);
    let got = wait_for_result(&ws, |rows| {
        rows.iter().any(|r| r.starts_with(&format!("n{last:06}|")))
    });
    done.store(true, Ordering::SeqCst);
    job.stop();
    server.join().unwrap();
    // Every value once; each connection's lines form a prefix of what was sent to it (the
    // tail that never reached the log is lost), and the last connection's lines are all there.
    let mut seen = std::collections::BTreeSet::new();
    for row in &got {
        let (value, n) = row.split_once('|').unwrap();
        assert_eq!(n, "1", "{value} counted {n} times");
        seen.insert(value[1..].parse::<u64>().unwrap());
    }
    let firsts = firsts.lock().unwrap().clone();
    assert!(firsts.len() > kills, "connections: {firsts:?}");
    for (i, &first) in firsts.iter().enumerate() {
        let end = firsts.get(i + 1).copied().unwrap_or(last + 1);
        let logged: Vec<u64> = (first..end).filter(|n| seen.contains(n)).collect();
        let prefix: Vec<u64> = (first..first + logged.len() as u64).collect();
        assert_eq!(
            logged, prefix,
            "connection {i} ({first}..{end}) lost a line in the middle"
        );
        if i + 1 == firsts.len() {
            assert_eq!(
                logged.len() as u64,
                end - first,
                "the last connection lost lines"
            );
        }
    }
    assert!(seen.len() > 1000);
}

/// Sends numbered lines until `limit` (then holds the connection open until `done`), or
/// until the peer is gone.
fn feed(mut conn: TcpStream, next: &AtomicU64, limit: &AtomicU64, done: &AtomicBool) {
    loop {
        let n = next.load(Ordering::SeqCst);
        if n > limit.load(Ordering::SeqCst) {
            if done.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let line = format!("n{n:06}\n");
        if conn.write_all(line.as_bytes()).is_err() {
            return;
        }
        next.store(n + 1, Ordering::SeqCst);
        if n.is_multiple_of(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn the_socket_shortcut_runs_wordcount_continuously() {
    let ws = Workspace::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let job = Job::spawn(
        Command::new(bin())
            .args(["socket", "127.0.0.1", &port, "--no-console", "--output"])
            .arg(&ws.output)
            .arg("--checkpoint")
            .arg(&ws.checkpoint),
    );
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"to be or not to be\n").unwrap();
    let got = wait_for_result(&ws, |rows| total_count(rows) >= 6);
    assert_eq!(got, ["be|2", "not|1", "or|1", "to|2"]);
    assert!(job.stop().contains("trigger Continuous"));
}

#[test]
fn verify_says_it_cannot_check_socket_input() {
    let ws = Workspace::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let job = start_job(
        &ws,
        &repo("sql/wordcount.sql"),
        &addr,
        &["--checkpoint-interval", "0"],
    );
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"a b\n").unwrap();
    wait_for_result(&ws, |rows| total_count(rows) >= 2);
    job.stop();
    let out = Command::new(bin())
        .arg("verify")
        .arg(repo("sql/wordcount.sql"))
        .arg("--output")
        .arg(&ws.output)
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("socket"));
}
