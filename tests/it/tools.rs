//! The generator, the mode shortcuts, the demo, `dfstream sql`, and clean shutdown on
//! SIGINT/SIGTERM, all through the real binary.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{
    Workspace, assert_ok, bin, csv_rows, python_tool, read_parquet, repo, signal, sorted_rows,
    stderr, stdout, wait_for,
};

fn dfstream(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd
}

/// File contents in a directory, sorted (names carry the clock, contents do not).
fn contents(dir: &Path) -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    all.sort();
    all
}

/// Starts the word count watching `ws` with `pause_ms` between the steps of a batch, adds a
/// file, and returns once that batch has begun (its offsets are written).
fn start_slow_batch(ws: &Workspace, pause_ms: &str) -> Child {
    let child = ws
        .command(&repo("sql/wordcount.sql"), &["--no-console"])
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", pause_ms)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ws.add_file("a.txt", "one two\n");
    assert!(wait_for(
        &ws.checkpoint.join("offsets/0"),
        Duration::from_secs(20)
    ));
    child
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (out, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let generator = dfstream(&["generate", "batch"])
            .arg(out)
            .args(["3", "5", "--seed", seed])
            .output()
            .unwrap();
        assert_ok(&generator);
    }
    assert_eq!(contents(&a), contents(&b));
    assert_ne!(contents(&a), contents(&c));
    assert_eq!(contents(&a).len(), 3);
    assert!(contents(&a).iter().all(|f| f.lines().count() == 5));
}

#[test]
fn generator_shape_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shaped");
    let vocab = dir.path().join("vocab.txt");
    std::fs::write(&vocab, "alpha beta gamma").unwrap();
    let generator = dfstream(&["generate", "single"])
        .arg(&out)
        .args([
            "--lines-per-file",
            "40",
            "--words-per-line",
            "2..3",
            "--seed",
            "1",
            "--vocab",
        ])
        .arg(&vocab)
        .args([
            "--event-time",
            "--disorder",
            "5s",
            "--late-fraction",
            "0.25",
        ])
        .output()
        .unwrap();
    assert_ok(&generator);
    let text = contents(&out).pop().unwrap();
    assert_eq!(text.lines().count(), 40);
    for line in text.lines() {
        let mut parts = line.split(' ');
        let stamp = parts.next().unwrap();
        // 2026-11-25T19:12:24.817570Z (the late fraction is checked in the unit tests)
        assert_eq!(stamp.len(), 27, "{line}");
        assert!(
            stamp.ends_with('Z') && &stamp[10..11] == "T",
            "ISO-8601 event time: {line}"
        );
        let words: Vec<&str> = parts.collect();
        assert!((2..=3).contains(&words.len()), "{line}");
        assert!(
            words.iter().all(|w| ["alpha", "beta", "gamma"].contains(w)),
            "{line}"
        );
    }
    // Size and file count for benchmarks.
    let sized = dir.path().join("sized");
    let generator = dfstream(&["generate", "batch"])
        .arg(&sized)
        .args(["--size", "64KiB", "--files", "4", "--seed", "2"])
        .output()
        .unwrap();
    assert_ok(&generator);
    let files = contents(&sized);
    assert_eq!(files.len(), 4);
    let total: usize = files.iter().map(String::len).sum();
    assert!(
        (64 * 1024..64 * 1024 + 4 * 300).contains(&total),
        "{total} bytes"
    );
}

#[test]
fn a_watcher_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stream");
    let mut generator = dfstream(&["generate", "continuous"])
        .arg(&out)
        .args(["0.02", "1.5", "500", "--seed", "3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    while generator.try_wait().unwrap().is_none() {
        if let Ok(entries) = std::fs::read_dir(&out) {
            for entry in entries {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.starts_with('.') || !seen.insert(name.clone()) {
                    continue;
                }
                let text = std::fs::read_to_string(out.join(&name)).unwrap();
                assert_eq!(
                    text.lines().count(),
                    500,
                    "{name} was visible before it was complete"
                );
                assert!(text.ends_with('\n'));
            }
        }
    }
    assert!(generator.wait().unwrap().success());
    // Several files were watched as they appeared, each whole when first seen, and the watcher
    // saw no more files than there are. (The generator's rate is measured by `cargo bench --bench stop_latency`.)
    let all = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(
        seen.len() >= 2 && all >= seen.len(),
        "{} seen, {all} in all",
        seen.len()
    );
}

#[test]
fn serve_feeds_two_clients() {
    let mut server = dfstream(&[
        "generate", "serve", "--port", "0", "--rate", "0", "--seed", "4",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let clients: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let mut texts = Vec::new();
    for client in clients {
        let mut text = String::new();
        client.take(20_000).read_to_string(&mut text).unwrap();
        texts.push(text);
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for text in &texts {
        assert!(text.lines().count() > 100, "{} lines", text.lines().count());
        assert!(text.contains("stream"));
    }
    assert_ne!(texts[0], texts[1], "each client gets its own stream");
}

#[test]
fn the_file_shortcut_runs_wordcount_with_the_trigger_given() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "to be or not to be\n");
    let out = dfstream(&["file"])
        .arg(&ws.input)
        .arg(&ws.output)
        .args(["--trigger", "available-now", "--checkpoint"])
        .arg(&ws.checkpoint)
        .current_dir(ws.dir.path()) // no sql/ here: the built-in copy is used
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("Batch: 0"));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["be|2", "not|1", "or|1", "to|2"]
    );
    let (_, meta) =
        futures::executor::block_on(dfstream::state::checkpoint::Checkpoint::open_read_only(
            &dfstream::storage::Location::Local(ws.checkpoint.clone()),
        ))
        .unwrap();
    assert_eq!(meta.query_file, "sql/wordcount.sql");
    assert_eq!(
        meta.sql,
        std::fs::read_to_string(repo("sql/wordcount.sql")).unwrap()
    );
    // The positional trigger interval becomes --trigger 0.3s.
    let job = crate::util::Job::spawn(
        dfstream(&["file"])
            .arg(&ws.input)
            .arg(&ws.output)
            .args(["0.3", "--no-console", "--checkpoint"])
            .arg(ws.dir.path().join("ck2")),
    );
    assert!(wait_for(
        &ws.dir.path().join("ck2/commits/0"),
        Duration::from_secs(20)
    ));
    let log = job.stop();
    assert!(log.contains("trigger Interval(300ms)"), "{log}");
}

#[test]
fn the_window_shortcut_runs_sliding_windows_with_its_parameters() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "to be or not to be\n");
    let out = dfstream(&["window"])
        .arg(&ws.input)
        .arg(&ws.output)
        .args([
            "1 minute",
            "30 seconds",
            "--trigger",
            "once",
            "--checkpoint",
        ])
        .arg(&ws.checkpoint)
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let (_, meta) =
        futures::executor::block_on(dfstream::state::checkpoint::Checkpoint::open_read_only(
            &dfstream::storage::Location::Local(ws.checkpoint.clone()),
        ))
        .unwrap();
    assert_eq!(meta.query_file, "sql/window_wordcount.sql");
    assert_eq!(meta.mode, "complete");
    assert_eq!(meta.params["size"], "1 minute");
    assert_eq!(meta.params["slide"], "30 seconds");
    // Every word is in two windows of a minute, 30 s apart.
    let rows = crate::util::rows(&read_parquet(&ws.output));
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert!(rows.iter().any(|r| r.ends_with("|to|2")), "{rows:?}");
    let help = dfstream(&["file", "--help"]).output().unwrap();
    assert!(
        stdout(&help).contains("Any `run` flag may follow"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn sigint_finishes_the_current_batch_and_exits_0() {
    let ws = Workspace::new();
    let mut child = start_slow_batch(&ws, "300");
    signal(&child, "INT");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        ws.commits(),
        [0],
        "the batch in progress was finished and committed"
    );
}

#[test]
fn a_second_sigint_stops_at_once_and_the_batch_is_rerun_later() {
    let ws = Workspace::new();
    // Long pauses between the batch's steps: had the job finished the batch, it would have
    // committed it. (How fast it stops is measured by `cargo bench --bench stop_latency`.)
    let mut child = start_slow_batch(&ws, "2000");
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(ws.commits().is_empty(), "did not wait for the batch");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    ));
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["one|1", "two|1"]);
}

#[test]
fn demo_counts_generated_files_until_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dfstream(&["demo", "--every", "100ms", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(
        &dir.path().join("checkpoint/commits/2"),
        Duration::from_secs(30)
    ));
    signal(&child, "INT");
    let mut console = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut console)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        console.contains("Batch: 2") && console.contains("| word"),
        "{console}"
    );
    let total: i64 = crate::util::rows(&read_parquet(&dir.path().join("output")))
        .iter()
        .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(total > 0);
}

#[test]
fn sql_prints_the_output_as_a_table_csv_or_json() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "b a b\n");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    ));
    let query = format!(
        "SELECT word, count FROM '{}/' ORDER BY count DESC, word",
        ws.output.display()
    );
    let table = dfstream(&["sql", &query]).output().unwrap();
    assert_ok(&table);
    assert!(
        stdout(&table).contains("| b    | 2     |"),
        "{}",
        stdout(&table)
    );
    let csv = dfstream(&["sql", &query, "--format", "csv"])
        .output()
        .unwrap();
    assert_eq!(stdout(&csv), "word,count\nb,2\na,1\n");
    let json = dfstream(&["sql", &query, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&json).trim(),
        r#"[{"word":"b","count":2},{"word":"a","count":1}]"#
    );
    let bad = dfstream(&["sql", "SELEC 1"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn python_datafusion_reads_the_output_as_the_readme_shows() {
    let python = python_tool("python3");
    let probe = Command::new(&python)
        .args(["-c", "import datafusion"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.status.success(),
        "{} cannot import datafusion ({}); install it as the README's test command does: \
         python3 -m venv .venv && .venv/bin/pip install datafusion==55.0.0",
        python.display(),
        stderr(&probe).trim()
    );
    let ws = Workspace::new();
    ws.add_file("a.txt", "b a b\n");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    ));
    // The README's snippet, with the output directory substituted.
    let script = format!(
        "from datafusion import SessionContext\n\
         ctx = SessionContext()\n\
         ctx.register_parquet('counts', '{}/')\n\
         for b in ctx.sql('SELECT word, count FROM counts ORDER BY count DESC, word').collect():\n\
         \x20   print(b.to_pydict())\n",
        ws.output.display()
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "{'word': ['b', 'a'], 'count': [2, 1]}");
}

#[test]
fn state_reads_the_checkpoints_groups_as_a_table_also_as_of_an_earlier_batch() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "to be or not to be\n");
    std::thread::sleep(Duration::from_millis(5));
    ws.add_file("b.txt", "that is the question to ask\n");
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--no-console",
    ];
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    let checkpoint = ws.checkpoint.display().to_string();
    let query = |extra: &[&str]| {
        let out = dfstream(&["state", "--checkpoint", &checkpoint, "--format", "csv"])
            .args(extra)
            .arg("SELECT word, count FROM state ORDER BY word")
            .output()
            .unwrap();
        assert_ok(&out);
        csv_rows(&out)
    };
    // The latest state is the complete-mode result.
    assert_eq!(query(&[]), sorted_rows(&read_parquet(&ws.output)));
    // As of batch 0: the first file's words only.
    assert_eq!(query(&["--batch", "0"]), ["be|2", "not|1", "or|1", "to|2"]);
    // The change feed: each batch's changed groups with their values after it.
    let out = dfstream(&["state", "--checkpoint", &checkpoint, "--format", "csv"])
        .arg("SELECT batch_id, word, count FROM state_changes ORDER BY batch_id, word")
        .output()
        .unwrap();
    assert_ok(&out);
    let text = stdout(&out);
    let changes: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        changes,
        [
            "0,be,2",
            "0,not,1",
            "0,or,1",
            "0,to,2",
            "1,ask,1",
            "1,is,1",
            "1,question,1",
            "1,that,1",
            "1,the,1",
            "1,to,3"
        ],
        "{}",
        stdout(&out)
    );
    // Without SQL: the first rows, as a table.
    let out = dfstream(&["state", "--checkpoint", &checkpoint])
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("| word"), "{}", stdout(&out));
    // A batch never committed is refused.
    let out = dfstream(&["state", "--checkpoint", &checkpoint, "--batch", "9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("batch 9 is not committed"));
}

#[test]
fn explain_shows_how_each_shipped_query_runs_and_refuses_what_run_would() {
    // No input directory and no checkpoint: explain reads and writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let shipped: [(&str, &[&str]); 4] = [
        ("sql/wordcount.sql", &[]),
        (
            "sql/window_wordcount.sql",
            &["--param", "size=10 minutes", "--param", "slide=1 minute"],
        ),
        ("sql/tumbling_wordcount.sql", &["--param", "size=10s"]),
        ("sql/session_wordcount.sql", &["--param", "gap=5s"]),
    ];
    for (query, params) in shipped {
        let out = dfstream(&["explain"])
            .arg(repo(query))
            .args(params)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_ok(&out);
        let text = stdout(&out);
        assert!(text.contains("output mode    complete"), "{query}: {text}");
        assert!(text.contains("state keys"), "{query}: {text}");
        assert!(
            text.contains("AggregateExec: mode=Partial"),
            "{query}: {text}"
        );
        assert!(
            text.ends_with("it would run as a stream\n"),
            "{query}: {text}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    // Sliding windows with a watermark in append mode: per pane, and what the watermark evicts.
    let out = dfstream(&["explain"])
        .arg(repo("sql/window_wordcount.sql"))
        .args(["--param", "size=10 minutes", "--param", "slide=1 minute"])
        .args(["--watermark", "10m", "--mode", "append"])
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        stdout(&out).contains("aggregated per pane"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("they leave the state"),
        "{}",
        stdout(&out)
    );
    // What run refuses, explain refuses, with exit 2 and the reason.
    let out = dfstream(&["explain"])
        .arg(repo("sql/wordcount.sql"))
        .args(["--mode", "append"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--watermark"), "{}", stderr(&out));
    let out = dfstream(&["explain"])
        .arg(repo("sql/window_wordcount.sql"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing parameter: {}",
        stderr(&out)
    );
}

#[test]
fn available_now_on_a_terminal_draws_a_backlog_bar_and_not_elsewhere() {
    let ws = Workspace::new();
    for i in 0..4 {
        ws.add_file(&format!("f{i}.txt"), "some words here\n".repeat(200));
    }
    // `script` runs the job on a pseudo-terminal, as a user at a terminal would.
    let command = format!(
        "{} run {} --input {} --output {} --checkpoint {} --trigger available-now \
         --max-files-per-trigger 1 --no-console",
        bin(),
        repo("sql/wordcount.sql").display(),
        ws.input.display(),
        ws.output.display(),
        ws.checkpoint.display()
    );
    // Its stdin stays open until the job ends: at end of input, script ends the session.
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut screen = String::new();
        stdout_pipe.read_to_string(&mut screen).unwrap();
        screen
    });
    assert!(child.wait().unwrap().success());
    drop(child.stdin.take());
    let screen = reader.join().unwrap();
    assert!(screen.contains("4/4 files"), "{screen}");
    assert!(screen.contains("12.50 KiB/12.50 KiB"), "{screen}");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["here|800", "some|800", "words|800"]
    );
    // Not a terminal: no bar.
    ws.add_file("g.txt", "more\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "available-now", "--no-console"],
    );
    assert_ok(&out);
    assert!(!stderr(&out).contains("1/1 files"), "{}", stderr(&out));
    assert!(!stderr(&out).contains('░'), "{}", stderr(&out));
}

#[test]
fn the_readmes_sql_gives_the_current_table_from_a_changelogs_batch_files() {
    // Update mode with a HAVING writes upserts and deletes; the README's query over the
    // Parquet batch files must give the batch answer (what complete mode would hold).
    let ws = Workspace::new();
    let query = ws.dir.path().join("rare.sql");
    std::fs::write(
        &query,
        "SELECT word, count(*) AS n FROM (SELECT unnest(words(value)) AS word FROM lines) \
         GROUP BY word HAVING count(*) < 3",
    )
    .unwrap();
    for (name, text) in [
        ("1.txt", "a a b x\n"),
        ("2.txt", "a b b c\n"),
        ("3.txt", "c d\n"),
    ] {
        ws.add_file(name, text);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--mode",
        "update",
        "--no-console",
    ];
    assert_ok(&ws.run(&query, &args));
    let current = format!(
        "SELECT word, n FROM (\
           SELECT *, row_number() OVER (PARTITION BY word ORDER BY batch_id DESC) AS latest \
           FROM '{}/') \
         WHERE latest = 1 AND _op = 'upsert' ORDER BY word",
        ws.output.display()
    );
    let out = dfstream(&["sql", &current, "--format", "csv"])
        .output()
        .unwrap();
    assert_ok(&out);
    // a: 3 and b: 3 left the result; c: 2, d: 1, x: 1 are in it.
    assert_eq!(stdout(&out), "word,n\nc,2\nd,1\nx,1\n");
}

#[test]
fn state_reads_a_checkpoint_while_its_job_runs_a_batch() {
    // `dfstream state` takes no lock: with the job inside batch 1 (paused between its
    // steps, holding the checkpoint's lock), it reads the state committed by batch 0.
    let ws = Workspace::new();
    ws.add_file("a.txt", "one two two\n");
    assert_ok(&ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    ));
    let mut child = ws
        .command(&repo("sql/wordcount.sql"), &["--no-console"])
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "3000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ws.add_file("b.txt", "two three\n");
    assert!(wait_for(
        &ws.checkpoint.join("offsets/1"),
        Duration::from_secs(20)
    ));
    let checkpoint = ws.checkpoint.display().to_string();
    let out = dfstream(&["state", "--checkpoint", &checkpoint, "--format", "csv"])
        .arg("SELECT word, count FROM state ORDER BY word")
        .output()
        .unwrap();
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_ok(&out);
    assert!(running, "the job ended before the state was read");
    assert_eq!(csv_rows(&out), ["one|1", "two|2"]);
}
