//! Static tables (`--table NAME=FILE`) joined with the stream: the batch answer (checked by
//! `verify`), a changed file used from the next batch on, a batch replayed after a kill with
//! the version it recorded, and the join shapes that cannot run per trigger refused.

use std::path::Path;

use crate::util::{Workspace, assert_ok, read_parquet, repo, sorted_rows, stderr, stdout};

/// Replaces `path` atomically (written aside, then renamed), as a user should.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("tmp-new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[test]
fn a_changed_table_is_used_from_the_next_batch_and_a_replay_uses_the_version_it_recorded() {
    let ws = Workspace::new();
    let stopwords = ws.dir.path().join("stopwords.csv");
    replace(&stopwords, "word\nthe\n");
    let table = format!("stopwords={}", stopwords.display());
    let query = repo("sql/wordcount_nostop.sql");
    let args = [
        "--table",
        &table,
        "--trigger",
        "once",
        "--checkpoint-interval",
        "0",
        "--no-console",
    ];
    ws.add_file("a.txt", "the cat and the dog\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["and|1", "cat|1", "dog|1"]
    );
    // The list changes; a batch begins with it and is killed before it commits.
    replace(&stopwords, "word\nand\n");
    ws.add_file("b.txt", "the and cat\n");
    let started = ws.kill_once_a_batch_begins(&query, &args);
    assert!(ws.mid_batch_since(started), "the kill fell after the batch");
    // It changes again before the restart: the replay still joins with the version batch 1
    // recorded (`and` a stopword, `cat` not).
    replace(&stopwords, "word\ncat\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["and|1", "cat|2", "dog|1", "the|1"]
    );
    // The next new batch joins with what the file holds now.
    ws.add_file("c.txt", "cat dog\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["and|1", "cat|2", "dog|2", "the|1"]
    );
    // Three versions kept, one recorded by each batch.
    let kept = std::fs::read_dir(ws.checkpoint.join("tables"))
        .unwrap()
        .count();
    assert_eq!(kept, 3);
    let recorded: Vec<String> = (0..3)
        .map(|b| {
            let text = std::fs::read_to_string(ws.checkpoint.join(format!("offsets/{b}"))).unwrap();
            let json = text.split("\n#dfstream").next().unwrap();
            let offsets: serde_json::Value = serde_json::from_str(json).unwrap();
            offsets["tables"]["stopwords"].as_str().unwrap().to_string()
        })
        .collect();
    assert_ne!(recorded[0], recorded[1]);
    assert_ne!(recorded[1], recorded[2]);
    // `state` plans the query again with the kept table: the state is the result.
    assert_eq!(
        crate::util::state_rows(&ws, "SELECT word, count FROM state ORDER BY word"),
        sorted_rows(&read_parquet(&ws.output))
    );
    // verify cannot join with three versions at once, and says so.
    let out = crate::crash::verify_over(&ws, &query, &ws.input, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("changed during the job"),
        "{}",
        stderr(&out)
    );
    // Another --table on the same checkpoint is another job: refused.
    let other = format!("stopwords={}", repo("sql/stopwords.csv").display());
    let out = ws.run(&query, &["--table", &other, "--trigger", "once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("static tables differ"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_aggregate_over_a_table_follows_its_versions() {
    // The table's size helps plan joins, but must not be folded into the plan as an
    // answer: `count(*)` is counted again over each batch's version.
    let ws = Workspace::new();
    let stopwords = ws.dir.path().join("stop.csv");
    replace(&stopwords, "word\nthe\n");
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT value, (SELECT count(*) FROM stop) AS n, \
         (SELECT max(word) FROM stop) AS last FROM lines",
    )
    .unwrap();
    let table = format!("stop={}", stopwords.display());
    // One run, planned with the first version.
    let args = ["--table", &table, "--trigger", "100ms", "--no-console"];
    ws.add_file("a.txt", "one\n");
    let job = crate::util::Job::spawn(&mut ws.command(&query, &args));
    let wait = std::time::Duration::from_secs(30);
    assert!(ws.wait_for_commit(0, wait), "{}", job.log());
    replace(&stopwords, "word\nthe\nand\nzebra\n");
    ws.add_file("b.txt", "two\n");
    assert!(ws.wait_for_commit(1, wait), "{}", job.log());
    job.stop();
    assert_eq!(
        sorted_rows(&read_parquet(&ws.output)),
        ["one|1|the", "two|3|zebra"]
    );
}

#[test]
fn joins_with_static_tables_give_the_batch_answer() {
    let dims =
        "word,category,weight\ncat,animal,2\ndog,animal,3\nrust,language,5\nsql,language,7\n";
    let cases: &[(&str, &[&str])] = &[
        // Inner join and aggregation.
        (
            "SELECT d.category, count(*) AS n, sum(d.weight) AS w \
             FROM (SELECT unnest(words(lower(value))) AS word FROM lines) AS s \
             JOIN dims AS d ON s.word = d.word GROUP BY d.category",
            &[],
        ),
        // Left join: stream words without a category count under NULL.
        (
            "SELECT coalesce(d.category, 'other') AS category, count(*) AS n \
             FROM (SELECT unnest(words(lower(value))) AS word FROM lines) AS s \
             LEFT JOIN dims AS d ON s.word = d.word GROUP BY 1",
            &[],
        ),
        // IN over the table, stateless in append mode.
        (
            "SELECT value FROM lines WHERE split_part(value, ' ', 1) IN (SELECT d.word FROM dims AS d)",
            &["--mode", "append"],
        ),
        // The static table on the left of a RIGHT JOIN that keeps the stream's rows.
        (
            "SELECT s.word, d.weight FROM dims AS d RIGHT JOIN \
             (SELECT unnest(words(lower(value))) AS word FROM lines) AS s ON s.word = d.word",
            &["--mode", "append"],
        ),
    ];
    for (sql, extra) in cases {
        let ws = Workspace::new();
        let dims_path = ws.dir.path().join("dims.csv");
        std::fs::write(&dims_path, dims).unwrap();
        let table = format!("dims={}", dims_path.display());
        for (i, text) in [
            "cat dog rust\n",
            "sql cat bird\ndog\n",
            "rust rust fish\n",
            "cat\n",
        ]
        .iter()
        .enumerate()
        {
            ws.add_file(&format!("f{i}.txt"), text);
        }
        let query = ws.dir.path().join("q.sql");
        std::fs::write(&query, sql).unwrap();
        let mut args = vec![
            "--table",
            &table,
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--no-console",
        ];
        args.extend_from_slice(extra);
        let out = ws.run(&query, &args);
        assert_ok(&out);
        assert!(!read_parquet(&ws.output).is_empty(), "{sql}");
        crate::crash::assert_verified(&ws, &query, sql);
    }
}

#[test]
fn joins_that_cannot_run_per_trigger_are_refused_with_the_reason() {
    let ws = Workspace::new();
    let dims_path = ws.dir.path().join("dims.csv");
    std::fs::write(&dims_path, "word,category\ncat,animal\n").unwrap();
    let table = format!("dims={}", dims_path.display());
    let words = "(SELECT unnest(words(lower(value))) AS word FROM lines)";
    for (sql, needle) in [
        (
            format!("SELECT a.word FROM {words} AS a JOIN {words} AS b ON a.word = b.word"),
            "joins `lines` with itself",
        ),
        (
            format!(
                "SELECT d.word, s.word AS w FROM dims AS d LEFT JOIN {words} AS s ON s.word = d.word"
            ),
            "answers for the static table's rows",
        ),
        (
            format!("SELECT d.word FROM dims AS d FULL JOIN {words} AS s ON s.word = d.word"),
            "answers for the static table's rows",
        ),
        (
            "SELECT d.word FROM dims AS d WHERE d.word IN (SELECT value FROM lines)".to_string(),
            "answers for the static table's rows",
        ),
        (
            "SELECT value FROM lines UNION ALL SELECT word FROM dims".to_string(),
            "reads no rows of `lines`",
        ),
        (
            format!(
                "SELECT c.word, c.n, d.category FROM (SELECT word, count(*) AS n FROM {words} \
                 GROUP BY word) AS c JOIN dims AS d ON c.word = d.word"
            ),
            "a join above the GROUP BY",
        ),
    ] {
        let query = ws.dir.path().join("q.sql");
        std::fs::write(&query, &sql).unwrap();
        let out = ws.run(&query, &["--table", &table, "--trigger", "once"]);
        assert_eq!(out.status.code(), Some(2), "{sql}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{sql}: {}", stderr(&out));
    }
    for (table, needle) in [
        (
            format!("lines={}", dims_path.display()),
            "the stream table's name",
        ),
        ("dims=/no/such.csv".to_string(), "/no/such.csv"),
        (format!("dims={}", ws.dir.path().display()), "extension"),
        (format!("1x={}", dims_path.display()), "SQL identifier"),
    ] {
        let out = ws.run(
            &repo("sql/wordcount.sql"),
            &["--table", &table, "--trigger", "once"],
        );
        assert_eq!(out.status.code(), Some(2), "{table}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{table}: {}", stderr(&out));
    }
}
