//! Bad input gets a clear error before start (exit code 2) or a counted, logged skip, and
//! never loses or double-counts data.

use crate::util::{
    Workspace, assert_logged, assert_ok, read_parquet, repo, rows, sorted_rows, stderr, stdout,
};

fn query(ws: &Workspace, sql: &str) -> std::path::PathBuf {
    let path = ws.dir.path().join("q.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

fn assert_usage_error(out: &std::process::Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    let err = stderr(out);
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    }
    assert!(stdout(out).is_empty(), "nothing runs: {}", stdout(out));
}

#[test]
fn invalid_sql_points_at_line_and_column() {
    let ws = Workspace::new();
    let q = query(
        &ws,
        "SELECT word,\n  count(*) AS count\nFROM lines GROUP BY word BY\n",
    );
    let out = ws.run(&q, &["--trigger", "once"]);
    assert_usage_error(&out, &["q.sql:3:", "^"]);
}

#[test]
fn unknown_column_points_at_it() {
    let ws = Workspace::new();
    let q = query(&ws, "SELECT valu\nFROM lines\n");
    let out = ws.run(&q, &["--trigger", "once"]);
    assert_usage_error(&out, &["q.sql:1:8", "valu"]);
}

#[test]
fn unknown_and_missing_parameters_are_errors_before_start() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--param", "size=3"],
    );
    assert_usage_error(&out, &["unknown parameter 'size'"]);
    let q = query(&ws, "SELECT value FROM lines WHERE length(value) > $min");
    let out = ws.run(&q, &["--trigger", "once"]);
    assert_usage_error(&out, &["$min", "--param min="]);
    let out = ws.run(&q, &["--trigger", "once", "--param", "min=0"]);
    assert_ok(&out);
}

#[test]
fn a_file_must_hold_one_select() {
    let ws = Workspace::new();
    let out = ws.run(
        &query(&ws, "CREATE TABLE t (a INT)"),
        &["--trigger", "once"],
    );
    assert_usage_error(&out, &["not a query"]);
    let out = ws.run(&query(&ws, "SELECT 1; SELECT 2"), &["--trigger", "once"]);
    assert_usage_error(&out, &["q.sql"]);
    let out = ws.run(&query(&ws, "  \n"), &["--trigger", "once"]);
    assert_usage_error(&out, &["no SQL statement"]);
}

#[test]
fn queries_that_cannot_be_maintained_are_refused_with_the_reason() {
    let ws = Workspace::new();
    let nested = "SELECT count(*) FROM (SELECT value, count(*) AS c FROM lines GROUP BY value)";
    let out = ws.run(&query(&ws, nested), &["--trigger", "once"]);
    assert_usage_error(&out, &["aggregates the result of another aggregation"]);
    let join = "SELECT a.value FROM lines a JOIN lines b ON a.value = b.value";
    let out = ws.run(&query(&ws, join), &["--trigger", "once"]);
    assert_usage_error(&out, &["joins"]);
    // Was an internal error ("unexpected plan shape ... please file a bug report").
    let union = "SELECT word, count(*) AS n FROM (SELECT unnest(words(value)) AS word FROM lines) \
                 GROUP BY word UNION ALL SELECT 'total', 0";
    let out = ws.run(&query(&ws, union), &["--trigger", "once"]);
    assert_usage_error(&out, &["UNION with an aggregation", "below the GROUP BY"]);
}

#[test]
fn a_window_key_inside_rollup_is_refused_with_a_watermark_and_runs_without() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    let rollup = query(
        &ws,
        "SELECT tumble(ts, INTERVAL '1 minute') AS w, value, count(*) AS n FROM lines \
         GROUP BY ROLLUP(tumble(ts, INTERVAL '1 minute'), value)",
    );
    for mode in ["append", "update", "complete"] {
        let out = ws.run(
            &rollup,
            &["--trigger", "once", "--watermark", "1m", "--mode", mode],
        );
        assert_usage_error(&out, &["ROLLUP, CUBE or GROUPING SETS", "--watermark"]);
    }
    let out = ws.run(&rollup, &["--trigger", "once", "--no-console"]);
    assert_ok(&out);
    assert_eq!(
        rows(&read_parquet(&ws.output)).len(),
        3,
        "detail, window and grand total"
    );
}

#[test]
fn a_union_below_the_group_by_or_of_plain_rows_runs() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    let below = "SELECT v, count(*) AS n FROM \
                 (SELECT value AS v FROM lines UNION ALL SELECT upper(value) AS v FROM lines) \
                 GROUP BY v";
    let out = ws.run(&query(&ws, below), &["--trigger", "once"]);
    assert_ok(&out);
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["X Y|1", "x y|1"]);
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    let plain = "SELECT value FROM lines UNION ALL SELECT upper(value) FROM lines";
    let out = ws.run(&query(&ws, plain), &["--trigger", "once"]);
    assert_ok(&out);
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["X Y", "x y"]);
}

#[test]
fn invalid_mode_combinations_fail_at_start() {
    let ws = Workspace::new();
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--mode", "append"],
    );
    assert_usage_error(&out, &["--mode append", "watermark"]);
    // With a watermark but no window key (a hop() list that is not unnested is none either).
    for no_window in [
        "SELECT word, count(*) AS n FROM (SELECT unnest(words(value)) AS word FROM lines) \
         GROUP BY word",
        "SELECT h, count(*) AS n FROM (SELECT hop(ts, '10s', '5s') AS h FROM lines) GROUP BY h",
    ] {
        let out = ws.run(
            &query(&ws, no_window),
            &["--trigger", "once", "--mode", "append", "--watermark", "5s"],
        );
        assert_usage_error(&out, &["--mode append", "GROUP BY a window made by tumble"]);
    }
    let out = ws.run(
        &query(&ws, "SELECT value FROM lines"),
        &["--mode", "complete"],
    );
    assert_usage_error(&out, &["--mode complete needs an aggregation"]);
    let sorted = "SELECT word, count(*) c FROM (SELECT unnest(words(value)) word FROM lines) GROUP BY word ORDER BY c";
    let out = ws.run(&query(&ws, sorted), &["--mode", "update"]);
    assert_usage_error(&out, &["ORDER BY"]);
}

#[test]
fn bad_flag_values_name_the_flag() {
    let ws = Workspace::new();
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "soon"]);
    assert_usage_error(&out, &["--trigger"]);
    let out = ws.run(&repo("sql/wordcount.sql"), &["--max-line-bytes", "lots"]);
    assert_usage_error(&out, &["--max-line-bytes"]);
}

#[test]
fn a_missing_input_directory_is_an_error() {
    let ws = Workspace::new();
    let out = std::process::Command::new(crate::util::bin())
        .args(["run", "--input", "/no/such/dir", "--trigger", "once"])
        .arg(repo("sql/wordcount.sql"))
        .arg("--checkpoint")
        .arg(&ws.checkpoint)
        .output()
        .unwrap();
    assert_usage_error(&out, &["/no/such/dir"]);
}

#[test]
fn a_missing_query_file_is_an_error() {
    let ws = Workspace::new();
    let out = ws.run(std::path::Path::new("/no/such.sql"), &["--trigger", "once"]);
    assert_usage_error(&out, &["/no/such.sql"]);
}

#[test]
fn a_checkpoint_of_another_query_is_refused() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x\n");
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]));
    let other = query(&ws, "SELECT count(*) AS n FROM lines");
    let out = ws.run(&other, &["--trigger", "once"]);
    assert_usage_error(&out, &["another query", "--checkpoint"]);
}

#[test]
fn non_utf8_bytes_are_replaced_and_counted() {
    let ws = Workspace::new();
    ws.add_file("a.txt", b"caf\xe9 ok\nfine ok\n");
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("invalid UTF-8"), "{err}");
    assert!(err.contains("1 lines decoded lossily"), "{err}");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["caf|1", "fine|1", "ok|2"],
        "U+FFFD is not a word character, the rest of the line still counts"
    );
}

#[test]
fn huge_lines_are_skipped_and_counted_the_rest_still_counts() {
    let ws = Workspace::new();
    // Longer than a read chunk (1 MiB), so the line is skipped across chunks.
    let long = "y ".repeat(1_500_000);
    ws.add_file("a.txt", format!("x\n{long}\nz\n"));
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--max-line-bytes", "1KiB"],
    );
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("longer than --max-line-bytes"), "{err}");
    assert!(err.contains("1 long lines skipped"), "{err}");
    assert!(err.contains("(at least 3000000 bytes)"), "{err}");
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["x|1", "z|1"]);
}

#[test]
fn empty_files_are_fine() {
    let ws = Workspace::new();
    ws.add_file("empty.txt", "");
    ws.add_file("a.txt", "a\n");
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["a|1"]);
}

#[test]
fn a_file_that_vanishes_before_it_is_read_is_a_logged_skip() {
    // Drive the scan directly: the file is listed, then removed before the trigger reads it.
    use dfstream::batch::TextCounters;
    use dfstream::format::{Decoding, StreamFormat};
    use dfstream::query::lines::read_file;
    use dfstream::source::{InputUnit, Place};
    let counters = TextCounters::default();
    let file = InputUnit {
        place: Place::File("/no/such/file.txt".into()),
        display: "file.txt".into(),
        ts_micros: 0,
        range: None,
        size: None,
        version: None,
        source: Default::default(),
    };
    let decoding = Decoding::new(&StreamFormat::text(), &[0], 1024).unwrap();
    let mut batches = 0;
    let kept_going = read_file(&file, &decoding, &counters, |_| {
        batches += 1;
        true
    })
    .unwrap();
    assert!(kept_going);
    assert_eq!(batches, 0);
    assert_eq!(counters.snapshot().vanished_files, 1);
}

#[test]
fn glob_selects_files() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "yes\n");
    ws.add_file("b.csv", "no\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--glob", "*.txt"],
    );
    assert_ok(&out);
    assert_eq!(sorted_rows(&read_parquet(&ws.output)), ["yes|1"]);
}

#[test]
fn wrong_window_arguments_fail_at_start() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x\n");
    let window = repo("sql/window_wordcount.sql");
    for (params, needle) in [
        (
            ["size=0 seconds", "slide=1 second"],
            "size must be longer than zero",
        ),
        (
            ["size=-5 seconds", "slide=1 second"],
            "size must be longer than zero",
        ),
        (["size=1 minute", "slide=2 minutes"], "longer than the size"),
        (["size=lots", "slide=1 second"], "is not an interval"),
        (["size=1 month", "slide=1 day"], "months"),
    ] {
        let out = ws.run(
            &window,
            &[
                "--trigger",
                "once",
                "--param",
                params[0],
                "--param",
                params[1],
            ],
        );
        assert_usage_error(&out, &[needle]);
    }
}

#[test]
fn wrong_session_arguments_and_uses_fail_at_start() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x\n");
    let sessions = repo("sql/session_wordcount.sql");
    for (gap, needle) in [
        ("gap=0s", "session: gap must be longer than zero"),
        ("gap=soon", "is not an interval"),
    ] {
        let out = ws.run(&sessions, &["--trigger", "once", "--param", gap]);
        assert_usage_error(&out, &[needle]);
    }
    // Outside a GROUP BY key, session() would be the one-row session: refused.
    for sql in [
        "SELECT session(ts, '10s') AS s, value FROM lines",
        "SELECT session(ts, '10s')['start'] AS s, count(*) AS n FROM lines \
         GROUP BY session(ts, '10s')['start']",
    ] {
        let out = ws.run(&query(&ws, sql), &["--trigger", "once"]);
        assert_usage_error(&out, &["GROUP BY session(ts, $gap)"]);
    }
    let out = ws.run(
        &query(
            &ws,
            "SELECT session(1, '10s') AS s, count(*) FROM lines GROUP BY s",
        ),
        &["--trigger", "once"],
    );
    assert_usage_error(&out, &["session: the first argument must be a timestamp"]);
}

#[test]
fn flags_that_cannot_work_or_do_nothing_are_refused() {
    let ws = Workspace::new();
    let wc = repo("sql/wordcount.sql");
    let window = [
        "--param",
        "size=1 minute",
        "--param",
        "slide=30 seconds",
        "--mode",
        "append",
    ];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--socket", "127.0.0.1:99999"], &["--socket", "65535"]),
        (vec!["--socket", "no-port"], &["HOST:PORT"]),
        (
            vec!["--final-flush", "--trigger", "10s", "--watermark", "1m"],
            &["--final-flush", "available-now"],
        ),
        (vec!["--final-flush", "--trigger", "once"], &["--watermark"]),
        (
            vec!["--idle-timeout", "5s"],
            &["--idle-timeout", "--watermark"],
        ),
        (
            vec![
                "--idle-timeout",
                "5s",
                "--watermark",
                "1m",
                "--trigger",
                "once",
            ],
            &["--idle-timeout", "once"],
        ),
        (
            vec!["--param", "p=99999999999999999999999999999999999999999"],
            &["38 digits"],
        ),
        (vec!["--clean-source", "archive"], &["--archive-dir"]),
        (
            vec!["--latest-first", "--max-file-age", "1d"],
            &["--latest-first", "--max-file-age"],
        ),
        (vec!["--archive-dir", "/tmp/x"], &["--clean-source archive"]),
    ];
    for (flags, needles) in cases {
        let mut args = window.to_vec();
        args.extend(&flags);
        let out = ws.run(&repo("sql/window_wordcount.sql"), &args);
        assert_usage_error(&out, needles);
    }
    // A checkpoint path that is a regular file.
    let file = ws.dir.path().join("ckpt-file");
    std::fs::write(&file, "x").unwrap();
    let out = std::process::Command::new(crate::util::bin())
        .arg("run")
        .arg(&wc)
        .arg("--input")
        .arg(&ws.input)
        .arg("--checkpoint")
        .arg(&file)
        .args(["--trigger", "once"])
        .output()
        .unwrap();
    assert_usage_error(&out, &["is a file"]);
}

#[test]
fn a_query_that_never_reads_lines_is_refused() {
    let ws = Workspace::new();
    let unbounded = query(&ws, "SELECT value FROM generate_series(1, 100000000000)");
    let out = ws.run(&unbounded, &["--trigger", "once"]);
    assert_usage_error(&out, &["never reads", "lines"]);
}

#[test]
fn a_whole_number_past_bigint_stays_exact() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x\n");
    let sql = query(&ws, "SELECT $big + 1 AS big, value FROM lines");
    let out = ws.run(
        &sql,
        &["--trigger", "once", "--param", "big=99999999999999999999"],
    );
    assert_ok(&out);
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["100000000000000000000|x"]
    );
}

#[test]
fn many_invalid_utf8_lines_give_one_warning_per_file() {
    let ws = Workspace::new();
    let mut bytes = Vec::new();
    for i in 0..500 {
        bytes.extend_from_slice(format!("ok{i} ").as_bytes());
        bytes.extend_from_slice(b"\xff\n");
        bytes.extend_from_slice(b"bad \xff\xfe\n");
    }
    ws.add_file("a.txt", &bytes);
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console"],
    );
    assert_ok(&out);
    let err = stderr(&out);
    assert_eq!(err.matches("invalid UTF-8").count(), 1, "{err}");
    assert!(
        err.contains("1000 lines with invalid UTF-8 (the first is line 1)"),
        "{err}"
    );
    assert!(err.contains("1000 lines decoded lossily"), "{err}");
}

#[test]
fn links_are_followed_and_fifos_skipped_once() {
    let ws = Workspace::new();
    let elsewhere = ws.dir.path().join("elsewhere.txt");
    std::fs::write(&elsewhere, "linked words\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, ws.input.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/no/such/target", ws.input.join("broken.txt")).unwrap();
    let fifo = std::ffi::CString::new(ws.input.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    ws.add_file("a.txt", "plain words\n");
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert_eq!(err.matches("pipe: not a regular file").count(), 1, "{err}");
    assert_eq!(
        err.matches("broken.txt: a link to nothing").count(),
        1,
        "{err}"
    );
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["linked|1", "plain|1", "words|2"]
    );
}

#[test]
fn compressed_files_are_read_by_their_extension() {
    use std::io::Write;
    let ws = Workspace::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"gzip words\n").unwrap();
    ws.add_file("a.txt.gz", gz.finish().unwrap());
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(b"bzip words\n").unwrap();
    ws.add_file("b.bz2", bz.finish().unwrap());
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(b"xz words\n").unwrap();
    ws.add_file("c.xz", xz.finish().unwrap());
    ws.add_file(
        "d.zst",
        zstd::stream::encode_all(&b"zstd words\n"[..], 1).unwrap(),
    );
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["bzip|1", "gzip|1", "words|4", "xz|1", "zstd|1"]
    );
    // A damaged one stops the batch with a way on; moving it away lets the job go on.
    ws.add_file("e.gz", b"\x1f\x8b\x08\x00garbage");
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_logged(&out, "move it out of the input directory");
    std::fs::remove_file(ws.input.join("e.gz")).unwrap();
    let out = ws.run(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    assert_ok(&out);
    assert_logged(&out, "vanished");
}

#[test]
fn an_unreadable_file_says_how_to_go_on() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let ws = Workspace::new();
    ws.add_file("a.txt", "secret\n");
    let path = ws.input.join("a.txt");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = ws.command(&repo("sql/wordcount.sql"), &["--trigger", "once"]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root reads anything: run the job as `nobody`, from a copy of the binary and the
        // query it can reach, in a workspace it may write.
        let open = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(ws.dir.path(), open.clone()).unwrap();
        std::fs::set_permissions(&ws.input, open.clone()).unwrap();
        let bin = ws.dir.path().join("dfstream");
        std::fs::copy(crate::util::bin(), &bin).unwrap();
        let sql = ws.dir.path().join("wordcount.sql");
        std::fs::copy(repo("sql/wordcount.sql"), &sql).unwrap();
        std::fs::set_permissions(&sql, open).unwrap();
        cmd = ws.command_of(&bin, &sql, &["--trigger", "once"]);
        // SAFETY: setgid/setuid are async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_logged(&out, "read permission");
    // Moving the file away lets the batch through, with the file counted as vanished.
    std::fs::rename(&path, ws.dir.path().join("a.txt")).unwrap();
    let out = cmd.output().unwrap();
    assert_ok(&out);
    assert_logged(&out, "1 files vanished");
}

#[test]
fn a_file_that_grows_after_it_was_taken_is_read_as_it_was_taken() {
    use std::io::Write;
    let ws = Workspace::new();
    let wordcount = repo("sql/wordcount.sql");
    let args = ["--trigger", "once", "--no-console"];
    ws.add_file("a.txt", "first words\n");
    assert_ok(&ws.run(&wordcount, &args));
    // The job died before its commit, and a writer appended to the file meanwhile: the
    // replay reads the bytes the batch took (recorded in its offsets), not the new ones.
    std::fs::remove_file(ws.checkpoint.join("commits/0")).unwrap();
    let _ = std::fs::remove_file(ws.checkpoint.join("state/0.delta"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(ws.input.join("a.txt"))
        .unwrap()
        .write_all(b"late words\n")
        .unwrap();
    let out = ws.run(&wordcount, &args);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("23 bytes now, 12 when it was taken"), "{err}");
    assert!(
        err.contains("1 files changed after they were taken"),
        "{err}"
    );
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["first|1", "words|1"]
    );
    // Nor is it read again later.
    ws.add_file("b.txt", "b\n");
    assert_ok(&ws.run(&wordcount, &args));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["b|1", "first|1", "words|1"]
    );

    // A compressed file cut at its old size would not decode: it is read whole, as it is now.
    let ws = Workspace::new();
    let gzip = |text: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    };
    ws.add_file("c.gz", gzip(b"first words\n"));
    assert_ok(&ws.run(&wordcount, &args));
    std::fs::remove_file(ws.checkpoint.join("commits/0")).unwrap();
    let _ = std::fs::remove_file(ws.checkpoint.join("state/0.delta"));
    std::fs::write(
        ws.input.join("c.gz"),
        gzip(b"first words\nand more words\n"),
    )
    .unwrap();
    let out = ws.run(&wordcount, &args);
    assert_ok(&out);
    assert_logged(&out, "a compressed file is read whole");
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["and|1", "first|1", "more|1", "words|2"]
    );
}
