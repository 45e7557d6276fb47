//! The real binary on real directories: triggers, output modes, Parquet read back with
//! DataFusion, files dropped in while it runs, and stop/restart continuing exactly.

use std::process::Stdio;
use std::time::Duration;

use crate::util::{
    Line, Workspace, assert_logged, assert_ok, batch_query, lines_of, read_parquet, repo, rows,
    runtime, sorted_rows, stderr, stdout,
};

/// The oracle for wordcount over the given files of `ws`.
fn wordcount_oracle(ws: &Workspace, files: &[(&str, &str)]) -> Vec<String> {
    let lines: Vec<Line> = files
        .iter()
        .flat_map(|(name, text)| lines_of(text.as_bytes(), &ws.file_column(name), 0))
        .collect();
    let sql = std::fs::read_to_string(repo("sql/wordcount.sql")).unwrap();
    sorted_rows(&runtime().block_on(batch_query(&sql, &lines, &[], 2)))
}

#[test]
fn once_prints_a_spark_style_table_and_writes_parquet() {
    let ws = Workspace::new();
    let text = "Don't STOP—café 42\nthe cat the hat\n";
    ws.add_file("a.txt", text);
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    let console = stdout(&out);
    assert!(console.contains("Batch: 0"), "{console}");
    assert!(console.contains("| word"), "{console}");
    assert!(console.contains("| café"), "{console}");
    assert!(!console.contains("Batch: 1"), "{console}");
    let result = read_parquet(&ws.output);
    assert_eq!(
        sorted_rows(&result),
        wordcount_oracle(&ws, &[("a.txt", text)])
    );
    let schema = result[0].schema();
    assert_eq!(schema.field(0).name(), "word");
    assert_eq!(schema.field(1).name(), "count");
    assert_eq!(
        schema.field(1).data_type(),
        &datafusion::arrow::datatypes::DataType::Int64
    );
}

#[test]
fn num_rows_limits_the_console_table() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "a b c d e f g\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--num-rows", "3"],
    );
    assert_ok(&out);
    let console = stdout(&out);
    let data_rows = console
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("word"))
        .count();
    assert_eq!(data_rows, 3, "{console}");
    assert!(
        console.contains("only showing top 3 of 7 rows"),
        "{console}"
    );
}

#[test]
fn available_now_uses_as_many_batches_as_max_files_needs() {
    let ws = Workspace::new();
    let files = [
        ("1.txt", "one two\n"),
        ("2.txt", "two three\n"),
        ("3.txt", "three four\n"),
    ];
    for (name, text) in files {
        ws.add_file(name, text);
    }
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "available-now", "--max-files-per-trigger", "1"],
    );
    assert_ok(&out);
    let console = stdout(&out);
    for n in 0..3 {
        assert!(console.contains(&format!("Batch: {n}")), "{console}");
    }
    assert!(!console.contains("Batch: 3"), "{console}");
    assert_eq!(ws.commits(), [0, 1, 2]);
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &files)
    );
}

#[test]
fn max_bytes_per_trigger_bounds_each_batch_by_size_and_takes_a_big_file_alone() {
    let ws = Workspace::new();
    // Lines of 10 bytes: 1000, 1000, 1000, 3000 and 1000 bytes.
    let sizes = [100, 100, 100, 300, 100];
    let texts: Vec<(String, String)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &lines)| (format!("{i}.txt"), format!("word{i} abc\n").repeat(lines)))
        .collect();
    for (name, text) in &texts {
        ws.add_file(name, text);
        std::thread::sleep(Duration::from_millis(20)); // taken in this order
    }
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &[
            "--trigger",
            "available-now",
            "--max-bytes-per-trigger",
            "2500",
        ],
    );
    assert_ok(&out);
    let log = crate::util::stderr(&out);
    let files_per_batch: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("] batch ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(" files").map(|(head, _)| head))
        .collect();
    assert_eq!(files_per_batch, ["0: 2", "1: 1", "2: 1", "3: 1"], "{log}");
    let files: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &files)
    );
}

#[test]
fn latest_first_takes_the_newest_files_first() {
    let ws = Workspace::new();
    for (i, name) in ["old.txt", "mid.txt", "new.txt"].iter().enumerate() {
        ws.add_file(name, format!("{name}\n"));
        let t = std::time::SystemTime::now() - Duration::from_secs(300 - 100 * i as u64);
        std::fs::File::options()
            .write(true)
            .open(ws.input.join(name))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let lines = ws.dir.path().join("lines.sql");
    std::fs::write(&lines, "SELECT value FROM lines").unwrap();
    let run = |extra: &[&str]| {
        let ws = &ws;
        let _ = std::fs::remove_dir_all(&ws.checkpoint);
        let _ = std::fs::remove_dir_all(&ws.output);
        let mut args = vec![
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
        ];
        args.extend(extra);
        assert_ok(&ws.run(&lines, &args));
        (0..3)
            .map(|n| {
                let file = ws.output.join(format!("batch-{n:012}.parquet"));
                rows(&read_parquet(&file)).concat()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&[]), ["old.txt", "mid.txt", "new.txt"]);
    assert_eq!(run(&["--latest-first"]), ["new.txt", "mid.txt", "old.txt"]);
}

#[test]
fn a_restart_counts_only_new_files_and_the_output_is_the_total() {
    let ws = Workspace::new();
    let first = [("a.txt", "alpha beta\nbeta\n"), ("b.txt", "gamma\n")];
    for (name, text) in first {
        ws.add_file(name, text);
    }
    let query = repo("sql/wordcount.sql");
    assert_ok(&ws.run(&query, &["--trigger", "available-now"]));
    // Nothing new: no batch, no output change.
    let again = ws.run(&query, &["--trigger", "available-now"]);
    assert_ok(&again);
    assert!(!stdout(&again).contains("Batch:"), "{}", stdout(&again));
    ws.add_file("c.txt", "beta gamma delta\n");
    let out = ws.run(&query, &["--trigger", "available-now"]);
    assert_ok(&out);
    assert!(stdout(&out).contains("Batch: 1"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 files"),
        "only the new file is read: {}",
        stderr(&out)
    );
    let all = [first[0], first[1], ("c.txt", "beta gamma delta\n")];
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &all)
    );
}

#[test]
fn restarts_across_many_snapshots_stay_exact() {
    // Snapshot every 2 batches and keep little history, so recovery must combine a snapshot,
    // later deltas and the seen-files record.
    let ws = Workspace::new();
    let query = repo("sql/wordcount.sql");
    let mut files = Vec::new();
    for round in 0..5 {
        for i in 0..3 {
            let name = format!("r{round}-{i}.txt");
            let text = format!("w{i} w{round} shared\nx{}\n", round * i);
            ws.add_file(&name, &text);
            files.push((name, text));
        }
        let out = ws.run(
            &query,
            &[
                "--trigger",
                "available-now",
                "--max-files-per-trigger",
                "2",
                "--snapshot-interval",
                "2",
                "--retain-batches",
                "1",
                "--no-console",
            ],
        );
        assert_ok(&out);
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &refs)
    );
    let offsets = std::fs::read_dir(ws.checkpoint.join("offsets"))
        .unwrap()
        .count();
    assert!(offsets < 6, "old offsets are removed, {offsets} left");
}

#[test]
fn update_mode_writes_changed_rows_per_batch_with_batch_id() {
    let ws = Workspace::new();
    ws.add_file("1.txt", "a b\n");
    ws.add_file("2.txt", "b c\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &[
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--mode",
            "update",
        ],
    );
    assert_ok(&out);
    let mut names: Vec<String> = std::fs::read_dir(&ws.output)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != ".dfstream-lock")
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["batch-000000000000.parquet", "batch-000000000001.parquet"]
    );
    let rows = sorted_rows(&read_parquet(&ws.output));
    assert_eq!(rows, ["0|a|1", "0|b|1", "1|b|2", "1|c|1"]);
}

#[test]
fn stateless_query_appends_lines_with_their_file_and_arrival_time() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "first\n\nthird\r\nlast without newline");
    let query = ws.dir.path().join("lines.sql");
    std::fs::write(&query, "SELECT file, value, ts FROM lines").unwrap();
    let out = ws.run(&query, &["--trigger", "once"]);
    assert_ok(&out);
    let result = read_parquet(&ws.output);
    let got: Vec<String> = rows(&result)
        .into_iter()
        .map(|r| r.rsplit_once('|').unwrap().0.to_string())
        .collect();
    let file = ws.file_column("a.txt");
    assert_eq!(
        got,
        [
            format!("{file}|first"),
            format!("{file}|"),
            format!("{file}|third"),
            format!("{file}|last without newline")
        ]
    );
    let ts = result[0].schema().field(2).data_type().clone();
    assert_eq!(
        ts,
        datafusion::arrow::datatypes::DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into())
        )
    );
}

#[test]
fn watches_the_directory_and_updates_the_result_as_files_arrive() {
    let ws = Workspace::new();
    let mut child = ws
        .command(&repo("sql/wordcount.sql"), &["--trigger", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Files arrive while it runs: written under hidden names, then renamed.
    ws.add_file("1.txt", "hello world\n");
    assert!(
        ws.wait_for_commit(0, Duration::from_secs(20)),
        "first file not processed"
    );
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &[("1.txt", "hello world\n")])
    );
    // A temporary file is ignored until renamed.
    std::fs::write(ws.input.join(".2.txt.tmp"), "partial").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ws.commits(), [0], "hidden files are not input");
    std::fs::rename(ws.input.join(".2.txt.tmp"), ws.input.join("2.txt")).unwrap();
    assert!(
        ws.wait_for_commit(1, Duration::from_secs(20)),
        "second file not processed"
    );
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &[("1.txt", "hello world\n"), ("2.txt", "partial")])
    );
    // SIGTERM: a clean stop with exit code 0.
    crate::util::signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn an_interval_trigger_batches_what_arrived_during_the_interval() {
    // A 2 s interval: two files landing just after batch 0 form batch 1, which runs an
    // interval after batch 0 (a trigger that fired on each file would split them, or run
    // sooner). Batch 0's commit falls due half-way through the interval and must not start a
    // batch early. The files must land within batch 0's interval; on a machine too loaded for
    // that, the attempt is repeated.
    let interval = Duration::from_secs(2);
    for attempt in 1..=3 {
        let ws = Workspace::new();
        let child = ws
            .quiet(
                &repo("sql/wordcount.sql"),
                &[
                    "--trigger",
                    "2s",
                    "--checkpoint-interval",
                    "1s",
                    "--no-console",
                ],
            )
            .spawn()
            .unwrap();
        ws.add_file("1.txt", "a\n");
        // Batch 0 planned (its commit comes up to a second later).
        assert!(crate::util::wait_for(
            &ws.checkpoint.join("offsets").join("0"),
            Duration::from_secs(20)
        ));
        ws.add_file("2.txt", "b\n");
        std::thread::sleep(Duration::from_millis(100));
        ws.add_file("3.txt", "c\n");
        let landed = dfstream::time::now_micros();
        assert!(ws.wait_for_commit(1, Duration::from_secs(20)));
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        let batches = interval_batches(&ws);
        let (first_trigger, first_files) = &batches[0];
        if landed >= first_trigger + interval.as_micros() as i64 {
            eprintln!("attempt {attempt}: the files landed after batch 0's interval; again");
            continue;
        }
        assert_eq!(first_files, &["1.txt"]);
        let (second_trigger, second_files) = &batches[1];
        assert_eq!(second_files, &["2.txt", "3.txt"], "both files in one batch");
        let apart = second_trigger - first_trigger;
        assert!(
            apart >= interval.as_micros() as i64 - 5_000,
            "batch 1 ran {apart} µs after batch 0, within the {interval:?} interval"
        );
        return;
    }
    panic!("in three attempts the files never landed within one interval: too loaded a machine");
}

/// Each batch's trigger time and file names, from the checkpoint's offsets.
fn interval_batches(ws: &Workspace) -> Vec<(i64, Vec<String>)> {
    let (checkpoint, _) =
        futures::executor::block_on(dfstream::state::checkpoint::Checkpoint::open_read_only(
            &dfstream::storage::Location::Local(ws.checkpoint.clone()),
        ))
        .unwrap();
    ws.commits()
        .into_iter()
        .map(|n| {
            let offsets = futures::executor::block_on(checkpoint.offsets(n)).unwrap();
            let mut names: Vec<String> =
                dfstream::source::files::files_of(&offsets.sources["files"])
                    .unwrap()
                    .into_iter()
                    .map(|f| f.name.rsplit('/').next().unwrap().to_string())
                    .collect();
            names.sort();
            (offsets.trigger_micros.unwrap(), names)
        })
        .collect()
}

#[test]
fn datafusion_reads_the_output_directory_as_a_table() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y x\n");
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]));
    // What a user types in DataFusion CLI: SELECT * FROM 'output/'.
    let got = runtime().block_on(async {
        let ctx = datafusion::prelude::SessionContext::new().enable_url_table();
        let sql = format!(
            "SELECT word, count FROM '{}/' ORDER BY count DESC, word",
            ws.output.display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap()
    });
    assert_eq!(rows(&got), ["x|2", "y|1"]);
}

#[test]
fn max_file_age_bounds_the_taken_record_without_recounting() {
    let ws = Workspace::new();
    let set_age = |name: &str, text: &str, secs_ago: u64| {
        ws.add_file(name, text);
        let t = std::time::SystemTime::now() - Duration::from_secs(secs_ago);
        std::fs::File::options()
            .write(true)
            .open(ws.input.join(name))
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    set_age("old.txt", "old words\n", 7200);
    set_age("new.txt", "new words\n", 0);
    let args = [
        "--trigger",
        "available-now",
        "--max-file-age",
        "1h",
        "--snapshot-interval",
        "1",
        "--no-console",
    ];
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    let both = [("old.txt", "old words\n"), ("new.txt", "new words\n")];
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &both)
    );
    let snapshot = std::fs::read_to_string(ws.checkpoint.join("sources/0.snapshot")).unwrap();
    assert!(
        snapshot.contains("new.txt") && !snapshot.contains("old.txt"),
        "{snapshot}"
    );
    // A restart neither recounts the forgotten file nor takes a new file that is too old.
    set_age("older.txt", "ancient\n", 3 * 3600);
    let out = ws.run(&repo("sql/wordcount.sql"), &args);
    assert_ok(&out);
    assert_logged(&out, "older than --max-file-age");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        wordcount_oracle(&ws, &both)
    );
    assert_eq!(ws.commits(), [0]);
}

#[test]
fn event_time_drives_windows_and_lines_without_one_are_counted_skips() {
    let ws = Workspace::new();
    let text = "2026-01-01T00:00:05Z alpha beta\n2026-01-01T00:00:25Z alpha\nnot-a-time gamma\n\n2026-01-01T00:00:15Z beta\n";
    ws.add_file("a.txt", text);
    let expr = "to_timestamp(split_part(value, ' ', 1))";
    let out = ws.run(
        &repo("sql/tumbling_wordcount.sql"),
        &[
            "--trigger",
            "once",
            "--param",
            "size=20 seconds",
            "--event-time",
            expr,
        ],
    );
    assert_ok(&out);
    assert_logged(&out, "2 lines without an event time");
    assert!(
        stderr(&out).contains("not-a-time gamma"),
        "a sample is logged: {}",
        stderr(&out)
    );
    let second = 1_000_000;
    let base = 1_767_225_600 * second; // 2026-01-01T00:00:00Z
    let file = ws.file_column("a.txt");
    let lines: Vec<Line> = [(5, "alpha beta"), (25, "alpha"), (15, "beta")]
        .iter()
        .map(|(s, words)| Line {
            value: format!("2026-01-01T00:00:{s:02}Z {words}"),
            ts_micros: base + s * second,
            file: file.clone(),
        })
        .collect();
    let sql = std::fs::read_to_string(repo("sql/tumbling_wordcount.sql")).unwrap();
    let expected = runtime().block_on(batch_query(&sql, &lines, &[("size", "20 seconds")], 2));
    let got = sorted_rows(&read_parquet(&ws.output));
    assert_eq!(got, sorted_rows(&expected));
    assert!(
        got.contains(&"2026-01-01T00:00:00Z|2026-01-01T00:00:20Z|beta|2".to_string()),
        "{got:?}"
    );
}

#[test]
fn an_event_time_that_is_not_a_timestamp_is_refused() {
    let ws = Workspace::new();
    for (expr, needle) in [
        ("length(value)", "not a timestamp"),
        ("to_timestamp(", "--event-time"),
    ] {
        let out = ws.run(
            &repo("sql/wordcount.sql"),
            &["--trigger", "once", "--event-time", expr],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_logged(&out, needle);
    }
}

#[test]
fn append_mode_with_a_watermark_emits_each_window_once_across_restarts() {
    let ws = Workspace::new();
    let line = |secs: u32, words: &str| {
        format!("2026-01-01T00:{:02}:{:02}Z {words}\n", secs / 60, secs % 60)
    };
    // Three files in order; the third has a late line (5 s, after the watermark reached 27 s).
    let files = [
        ("1.txt", line(2, "a b") + &line(12, "a")),
        ("2.txt", line(21, "b") + &line(33, "c")),
        ("3.txt", line(5, "late") + &line(47, "a c")),
    ];
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--no-console",
        "--param",
        "size=10 seconds",
        "--event-time",
        "to_timestamp(split_part(value, ' ', 1))",
        "--watermark",
        "6s",
        "--mode",
        "append",
        "--checkpoint-interval",
        "0",
    ];
    let query = crate::util::words_after_the_time_file(&ws, "sql/tumbling_wordcount.sql");
    for (name, text) in &files {
        ws.add_file(name, text);
        std::thread::sleep(Duration::from_millis(5));
        // A restart after every file: the watermark and the state must come back exactly.
        assert_ok(&ws.run(&query, &args));
    }
    // Before the final flush, only windows ending by the watermark (47 - 6 = 41 s) are out.
    let emitted = sorted_rows(&read_parquet(&ws.output));
    assert!(
        !emitted.is_empty()
            && emitted
                .iter()
                .all(|r| r.split('|').nth(1).unwrap() <= "2026-01-01T00:00:40Z"),
        "{emitted:?}"
    );
    let mut with_flush: Vec<&str> = args.to_vec();
    with_flush.push("--final-flush");
    let out = ws.run(&query, &with_flush);
    assert_ok(&out);
    assert_logged(&out, "late rows dropped");
    let all = sorted_rows(&read_parquet(&ws.output));
    let w = |s: u32| format!("2026-01-01T00:00:{s:02}Z");
    let expected: Vec<String> = [
        (0, "a", 1),
        (0, "b", 1),
        (10, "a", 1),
        (20, "b", 1),
        (30, "c", 1),
        (40, "a", 1),
        (40, "c", 1),
    ]
    .iter()
    .map(|(s, word, n)| format!("{}|{}|{word}|{n}", w(*s), w(s + 10)))
    .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(all, expected, "each window once, the late line dropped");
}

#[test]
fn an_idle_timeout_closes_windows_when_input_stops() {
    let ws = Workspace::new();
    let query = crate::util::words_after_the_time_file(&ws, "sql/tumbling_wordcount.sql");
    let job = crate::util::Job::spawn(
        ws.command(
            &query,
            &[
                "--param",
                "size=2 seconds",
                "--event-time",
                "to_timestamp(split_part(value, ' ', 1))",
                "--watermark",
                "1s",
                "--mode",
                "append",
                "--idle-timeout",
                "200ms",
                "--no-console",
            ],
        )
        .stdout(Stdio::null()),
    );
    // One file, then silence: the window [0 s, 2 s) needs the watermark at 2 s, but the data
    // only takes it to 0 s.
    ws.add_file(
        "a.txt",
        "2026-01-01T00:00:00Z quiet\n2026-01-01T00:00:01Z quiet\n",
    );
    let rows = crate::util::wait_for_output(
        &ws.output,
        Duration::from_secs(20),
        |rows| !rows.is_empty(),
        || "the window never closed".to_string(),
    );
    let log = job.stop();
    assert!(
        log.contains("advancing the watermark by wall-clock time"),
        "{log}"
    );
    assert_eq!(rows, ["2026-01-01T00:00:00Z|2026-01-01T00:00:02Z|quiet|2"]);
}

#[test]
fn clean_source_removes_files_only_once_no_recovery_can_need_them() {
    for mode in ["delete", "archive"] {
        let ws = Workspace::new();
        let archive = ws.dir.path().join("archive");
        let texts: Vec<(String, String)> = (0..9)
            .map(|i| (format!("f{i}.txt"), format!("word{i} common\n")))
            .collect();
        let mut args = vec![
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
            "--checkpoint-interval",
            "0",
            "--snapshot-interval",
            "2",
            "--retain-batches",
            "2",
            "--clean-source",
            mode,
        ];
        if mode == "archive" {
            args.extend(["--archive-dir", archive.to_str().unwrap()]);
        }
        for (name, text) in &texts[..8] {
            ws.add_file(name, text);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
        let left = |dir: &std::path::Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        // Batches 0-7, one file each; with two batches of history kept and snapshots every
        // second batch, recovery could still restore batch 5 and re-run 6 and 7.
        assert_eq!(left(&ws.input), ["f6.txt", "f7.txt"], "{mode}");
        if mode == "archive" {
            assert_eq!(left(&archive).len(), 6);
            assert_eq!(
                std::fs::read_to_string(archive.join("f3.txt")).unwrap(),
                "word3 common\n"
            );
        }
        // Damaged commits 6 and 7: recovery restores batch 5 and re-runs 6 and 7, whose files
        // are still there; a new file makes the result be written again.
        for n in [6, 7] {
            let path = ws.checkpoint.join(format!("commits/{n}"));
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[3] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
        }
        ws.add_file(&texts[8].0, &texts[8].1);
        let out = ws.run(&repo("sql/wordcount.sql"), &args);
        assert_ok(&out);
        assert_logged(&out, "recovering from batch 5");
        assert!(
            !stderr(&out).contains("vanished before"),
            "{}",
            stderr(&out)
        );
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            sorted_rows(&read_parquet(&ws.output)),
            wordcount_oracle(&ws, &files),
            "{mode}"
        );
    }
}

#[test]
fn now_is_the_trigger_time_and_a_replay_sees_the_same() {
    let ws = Workspace::new();
    let query = ws.dir.path().join("seen.sql");
    std::fs::write(
        &query,
        "SELECT value, now() AS seen, current_timestamp AS also, today() AS day FROM lines",
    )
    .unwrap();
    let batch = |n: u64| {
        let file = ws.output.join(format!("batch-{n:012}.parquet"));
        rows(&read_parquet(&file))
    };
    ws.add_file("a.txt", "a\n");
    std::thread::sleep(Duration::from_millis(5));
    ws.add_file("b.txt", "b\n");
    // Two triggers in one run, a few milliseconds apart.
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--no-console",
    ];
    let out = ws
        .command(&query, &args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "5")
        .output()
        .unwrap();
    assert_ok(&out);
    let (first, second) = (batch(0), batch(1));
    let seen = |row: &str| row.split('|').nth(1).unwrap().to_string();
    assert!(
        seen(&first[0]) < seen(&second[0]),
        "each trigger has its own time: {first:?} {second:?}"
    );
    for row in first.iter().chain(&second) {
        let cells: Vec<&str> = row.split('|').collect();
        assert_eq!(
            cells[1], cells[2],
            "now() and current_timestamp agree: {row}"
        );
        assert!(
            cells[1].starts_with(cells[3]),
            "today() is now's day: {row}"
        );
    }
    // Batch 1 re-run after a crash before its commit: the same time as its first run.
    std::fs::remove_file(ws.checkpoint.join("commits/1")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let out = ws.run(&query, &args);
    assert_ok(&out);
    assert_logged(&out, "re-running batch 1");
    assert_eq!(batch(1), second);
}

#[test]
fn a_volatile_function_in_a_stateful_query_is_warned_about() {
    let ws = Workspace::new();
    let query = ws.dir.path().join("r.sql");
    std::fs::write(
        &query,
        "SELECT count(*) AS n, sum(random()) AS r FROM lines",
    )
    .unwrap();
    ws.add_file("a.txt", "a\n");
    let out = ws.run(&query, &["--trigger", "once", "--no-console"]);
    assert_ok(&out);
    assert_logged(&out, "random() gives another value each time it runs");
}

#[test]
fn a_group_whose_state_keeps_every_value_is_warned_about_once() {
    // count(DISTINCT) keeps each distinct value in its group's state: past 100,000 of them
    // the job warns (once) that triggers touching the group cost its history; a count does not.
    let ws = Workspace::new();
    let lines: String = (0..100_001).map(|i| format!("hot v{i}\n")).collect();
    ws.add_file("a.txt", &lines);
    ws.add_file("b.txt", "hot w\n");
    let query = ws.dir.path().join("distinct.sql");
    let sql = |aggregate: &str| {
        format!(
            "SELECT k, {aggregate} AS n FROM (SELECT split_part(value, ' ', 1) AS k, \
             split_part(value, ' ', 2) AS v FROM lines) GROUP BY k"
        )
    };
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--mode",
        "update",
    ];
    std::fs::write(&query, sql("count(DISTINCT v)")).unwrap();
    let out = ws.run(&query, &args);
    assert_ok(&out);
    let log = stderr(&out);
    assert_eq!(log.matches("holds 100001 values").count(), 1, "{log}");
    assert!(!log.contains("holds 100002 values"), "warned twice: {log}");
    assert!(stdout(&out).contains("100002"), "{}", stdout(&out));
    let ws = Workspace::new();
    ws.add_file("a.txt", &lines);
    std::fs::write(&query, sql("count(v)")).unwrap();
    let out = ws.run(&query, &args);
    assert_ok(&out);
    assert!(!stderr(&out).contains("values:"), "{}", stderr(&out));
    // string_agg keeps one string: warned past 1 MiB of it (~1.5 MB here).
    let ws = Workspace::new();
    ws.add_file("a.txt", &lines);
    std::fs::write(&query, sql("length(string_agg(v || v, ','))")).unwrap();
    let out = ws.run(&query, &args);
    assert_ok(&out);
    assert!(
        stderr(&out).contains(" bytes: an aggregate"),
        "{}",
        stderr(&out)
    );
}
