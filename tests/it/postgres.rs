//! The PostgreSQL sink against a real server (`util::servers::Postgres`: the system's binaries,
//! one server on a loopback port for the test process), one database per test, queried back
//! with the real `psql`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crash::{oracle, random_text, run_and_kill_at_random, seed};
use crate::util::{
    Line, Workspace, assert_ok, batch_query, lines_of, repo, runtime, sorted_rows, stderr,
};

use crate::util::servers::Postgres;

/// The server of this test process, started on first use.
fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// A new database on the server.
fn database() -> Database<'static> {
    let server = server();
    let name = server.new_database();
    Database {
        url: server.url(&name),
        name,
        server,
    }
}

struct Database<'a> {
    server: &'a Postgres,
    name: String,
    url: String,
}

impl Database<'_> {
    fn sink(&self, table: &str) -> String {
        format!("{}?table={table}", self.url)
    }

    fn query(&self, sql: &str) -> String {
        self.server
            .psql(&self.name, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The table's rows as `a|b`, sorted (the oracle's form).
    fn rows(&self, sql: &str) -> Vec<String> {
        let mut rows: Vec<String> = self
            .query(sql)
            .lines()
            .map(|line| line.replace('\t', "|"))
            .collect();
        rows.sort();
        rows
    }
}

fn args_with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

const PER_FILE_WORDCOUNT: &str = "SELECT file, word, count(*) AS count FROM (SELECT file, \
                                  unnest(words(lower(value))) AS word FROM lines) GROUP BY \
                                  file, word";

/// `sql` run once as a batch query over every file of the input directory.
fn batch_answer(ws: &Workspace, sql: &str) -> Vec<String> {
    let mut lines: Vec<Line> = Vec::new();
    for entry in std::fs::read_dir(&ws.input).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with('.') {
            let text = std::fs::read(ws.input.join(&name)).unwrap();
            lines.extend(lines_of(&text, &ws.file_column(&name), 0));
        }
    }
    sorted_rows(&runtime().block_on(batch_query(sql, &lines, &[], 2)))
}

const EVERY_FILE_A_BATCH: &[&str] = &[
    "--trigger",
    "available-now",
    "--max-files-per-trigger",
    "1",
    "--checkpoint-interval",
    "0",
    "--no-console",
];

#[test]
fn update_mode_with_sigkills_during_writes_leaves_each_word_counted_once() {
    // Word counts per file upserted batch by batch while the job is killed at random moments
    // (the steps of a batch spread apart, so kills land between staging, the checkpoint's
    // commit and the table's); after a last clean run the table is the batch answer over
    // every file. Each file's keys are its own, so a batch lost or applied twice would show.
    let db = database();
    let sink = db.sink("word_counts");
    let args = args_with(EVERY_FILE_A_BATCH, &["--mode", "update", "--sink", &sink]);
    let seed = seed() + 11;
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    let wordcount = ws.dir.path().join("per_file.sql");
    std::fs::write(&wordcount, PER_FILE_WORDCOUNT).unwrap();
    let mut kills = 0;
    let mut mid_batch = 0;
    for n in 0..60 {
        if kills >= 12 {
            break;
        }
        for k in 0..rng.random_range(1..3) {
            ws.add_file(&format!("f{n:03}-{k}.txt"), random_text(&mut rng));
        }
        let run = run_and_kill_at_random(&ws, &wordcount, &args, &mut rng, 150);
        if run.killed() {
            kills += 1;
            mid_batch += usize::from(run.mid_batch());
        }
    }
    assert!(
        mid_batch >= 3,
        "only {mid_batch} of {kills} kills inside a batch (seed {seed})"
    );
    assert_ok(&ws.run(&wordcount, &args));
    assert_eq!(
        db.rows("SELECT file, word, count FROM word_counts"),
        batch_answer(&ws, PER_FILE_WORDCOUNT),
        "after {kills} SIGKILLs, seed {seed}"
    );
    // The commit record names the last batch; nothing is left staged.
    let last = ws.commits().last().copied().unwrap();
    assert_eq!(
        db.query("SELECT batch_id FROM dfstream_commits WHERE target = 'public.word_counts'")
            .trim(),
        last.to_string()
    );
    assert_eq!(
        db.query("SELECT count(*) FROM word_counts__dfstream_staged")
            .trim(),
        "0"
    );
}

#[test]
fn a_crash_between_the_checkpoints_commit_and_the_tables_is_finished_at_start() {
    // The batch is committed in the checkpoint but not yet applied to the table (only
    // staged) when the job dies: the next start applies it before anything else.
    let db = database();
    let sink = db.sink("counts");
    let ws = Workspace::new();
    let wordcount = repo("sql/wordcount.sql");
    let args = args_with(EVERY_FILE_A_BATCH, &["--sink", &sink]);
    ws.add_file("1.txt", "a b a\n");
    let child = ws
        .quiet(&wordcount, &args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "3000")
        .spawn()
        .unwrap();
    let mut child = crate::util::KillOnDrop(child);
    assert!(ws.wait_for_commit(0, Duration::from_secs(60)));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(
        db.rows("SELECT word, count FROM counts"),
        Vec::<String>::new()
    );
    assert_eq!(
        db.query("SELECT count(*) FROM counts__dfstream_staged")
            .trim(),
        "2"
    );
    // The restart finds no new input: the table gets batch 0 all the same, once.
    assert_ok(&ws.run(&wordcount, &args));
    assert_eq!(db.rows("SELECT word, count FROM counts"), ["a|2", "b|1"]);
    assert_eq!(ws.commits(), [0]);
}

#[test]
fn append_mode_inserts_every_line_once_across_crashes() {
    // A query without state: every line becomes one row. Kills at random moments, then the
    // table holds each line exactly once (no duplicates from a batch written twice).
    let db = database();
    let sink = db.sink("public.lines_out");
    let args = args_with(EVERY_FILE_A_BATCH, &["--sink", &sink]);
    let ws = Workspace::new();
    let query = ws.dir.path().join("lines.sql");
    std::fs::write(&query, "SELECT value, file FROM lines").unwrap();
    let mut rng = StdRng::seed_from_u64(seed() + 12);
    let mut kills = 0;
    for n in 0..40 {
        if kills >= 8 {
            break;
        }
        ws.add_file(&format!("f{n:03}.txt"), random_text(&mut rng));
        kills += usize::from(run_and_kill_at_random(&ws, &query, &args, &mut rng, 120).killed());
    }
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        db.rows("SELECT value, file FROM lines_out"),
        batch_answer(&ws, "SELECT value, file FROM lines"),
        "{kills} kills"
    );
}

#[test]
fn complete_mode_replaces_the_rows_and_drops_keys_that_left_the_result() {
    // Words seen fewer than three times: a word leaves the result once it is seen a third
    // time, and must leave the table too.
    let db = database();
    let sink = db.sink("rare");
    let ws = Workspace::new();
    let query = ws.dir.path().join("rare.sql");
    std::fs::write(
        &query,
        "SELECT word, count(*) AS n FROM (SELECT unnest(string_to_array(value, ' ')) AS word \
         FROM lines) GROUP BY word HAVING count(*) < 3",
    )
    .unwrap();
    let args = args_with(EVERY_FILE_A_BATCH, &["--sink", &sink]);
    ws.add_file("1.txt", "a b c\na\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(db.rows("SELECT word, n FROM rare"), ["a|2", "b|1", "c|1"]);
    ws.add_file("2.txt", "a b\n");
    ws.add_file("3.txt", "d\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(db.rows("SELECT word, n FROM rare"), ["b|2", "c|1", "d|1"]);
}

#[test]
fn update_mode_upserts_a_null_key_like_any_other() {
    // GROUP BY puts every NULL in one group: its row is updated, not inserted again.
    let db = database();
    let sink = db.sink("maybe");
    let ws = Workspace::new();
    let query = ws.dir.path().join("maybe.sql");
    std::fs::write(
        &query,
        "SELECT NULLIF(value, 'none') AS v, count(*) AS n FROM lines GROUP BY NULLIF(value, 'none')",
    )
    .unwrap();
    let args = args_with(EVERY_FILE_A_BATCH, &["--mode", "update", "--sink", &sink]);
    ws.add_file(
        "1.txt", "none
a
",
    );
    ws.add_file(
        "2.txt",
        "none
none
",
    );
    assert_ok(&ws.run(&query, &args));
    assert_eq!(
        db.rows("SELECT coalesce(v, '<NULL>'), n FROM maybe"),
        ["<NULL>|3", "a|1"]
    );
}

#[test]
fn a_changelog_deletes_the_rows_that_left_the_result() {
    // A HAVING in update mode: rows that stop passing it are deleted from the table (a NULL
    // key too), also when two batches' commits are applied together.
    let db = database();
    let sink = db.sink("rare");
    let ws = Workspace::new();
    let query = ws.dir.path().join("rare.sql");
    std::fs::write(
        &query,
        "SELECT NULLIF(word, 'none') AS w, count(*) AS n \
         FROM (SELECT unnest(words(value)) AS word FROM lines) \
         GROUP BY NULLIF(word, 'none') HAVING count(*) < 3",
    )
    .unwrap();
    let table = || db.rows("SELECT coalesce(w, '<NULL>'), n FROM rare");
    // Deletes are by the GROUP BY key: another ?key= could delete another group's row.
    let other_key = format!("{sink}&key=n");
    let refused = ws.run(
        &query,
        &args_with(
            EVERY_FILE_A_BATCH,
            &["--mode", "update", "--sink", &other_key],
        ),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("Leave ?key= out"),
        "{}",
        stderr(&refused)
    );
    let args = args_with(EVERY_FILE_A_BATCH, &["--mode", "update", "--sink", &sink]);
    ws.add_file("1.txt", "a a b none\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(table(), ["<NULL>|1", "a|2", "b|1"]);
    ws.add_file("2.txt", "a b b c none none\n");
    assert_ok(&ws.run(&query, &args));
    assert_eq!(table(), ["c|1"]);
    ws.add_file("3.txt", "c d\n");
    ws.add_file("4.txt", "e a c\n");
    let held: Vec<&str> = args
        .iter()
        .map(|&a| if a == "0" { "1h" } else { a })
        .collect(); // --checkpoint-interval 1h: both batches' commits at the end
    assert_ok(&ws.run(&query, &held));
    assert_eq!(ws.commits(), [0, 1, 2, 3]);
    assert_eq!(table(), ["d|1", "e|1"]);
}

#[test]
fn batches_committed_together_are_applied_in_order() {
    // --checkpoint-interval holds several batches' commits back: the table gets them in one
    // go, each batch's upsert over the one before (the counts accumulate across files).
    let db = database();
    let sink = db.sink("counts");
    let ws = Workspace::new();
    for (n, text) in ["a b\n", "a c\n", "a\n", "b d\n"].iter().enumerate() {
        ws.add_file(&format!("{n}.txt"), text);
    }
    let wordcount = repo("sql/wordcount.sql");
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--checkpoint-interval",
        "1h",
        "--no-console",
        "--mode",
        "update",
        "--sink",
        &sink,
    ];
    assert_ok(&ws.run(&wordcount, &args));
    assert_eq!(ws.commits(), [0, 1, 2, 3]);
    assert_eq!(db.rows("SELECT word, count FROM counts"), oracle(&ws));
}

#[test]
fn a_key_that_does_not_identify_rows_fails_the_batch_before_its_commit() {
    // ?key=count: two words with the same count are two rows of one key. The batch fails
    // while staging (phase one), so it is not committed and can be set aside.
    let db = database();
    let ws = Workspace::new();
    ws.add_file("1.txt", "a b\n");
    let sink = format!("{}&key=count", db.sink("by_count"));
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &args_with(EVERY_FILE_A_BATCH, &["--mode", "update", "--sink", &sink]),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("same key (\"count\")"),
        "{}",
        stderr(&out)
    );
    assert!(ws.commits().is_empty());
    assert_eq!(db.rows("SELECT * FROM by_count"), Vec::<String>::new());
}

#[test]
fn a_sink_added_to_a_running_checkpoint_must_rewrite_everything() {
    // Batches run before the sink was there cannot be written again in update mode (their
    // rows would be missing for good): refused. Complete mode writes the whole result.
    let db = database();
    let ws = Workspace::new();
    let wordcount = repo("sql/wordcount.sql");
    ws.add_file("1.txt", "a b\n");
    assert_ok(&ws.run(&wordcount, EVERY_FILE_A_BATCH));
    let out = ws.run(
        &wordcount,
        &args_with(EVERY_FILE_A_BATCH, &["--sink", &db.sink("late")]),
    );
    assert_ok(&out);
    ws.add_file("2.txt", "a\n");
    assert_ok(&ws.run(
        &wordcount,
        &args_with(EVERY_FILE_A_BATCH, &["--sink", &db.sink("late")]),
    ));
    assert_eq!(db.rows("SELECT word, count FROM late"), ["a|2", "b|1"]);
    let updating = Workspace::new();
    updating.add_file("1.txt", "a\n");
    let update = args_with(EVERY_FILE_A_BATCH, &["--mode", "update"]);
    assert_ok(&updating.run(&wordcount, &update));
    let out = updating.run(
        &wordcount,
        &args_with(&update, &["--sink", &db.sink("late_update")]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("new --checkpoint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn values_of_every_stored_type_read_back_as_postgresql_sees_them() {
    // Tabs, newlines and backslashes in text, NULLs, decimals, timestamps and dates survive
    // the COPY encoding; the table is created with matching column types.
    let db = database();
    let sink = db.sink("typed");
    let ws = Workspace::new();
    let query = ws.dir.path().join("typed.sql");
    std::fs::write(
        &query,
        "SELECT value AS t, length(value) AS n, length(value) > 3 AS long, \
         CAST(length(value) AS DOUBLE) / 4 AS ratio, CAST(length(value) AS DECIMAL(10, 2)) AS d, \
         CAST('2026-01-02T03:04:05.123456Z' AS TIMESTAMP) AS at, \
         arrow_cast(CAST('2026-01-02T03:04:05.123456Z' AS TIMESTAMP), \
         'Timestamp(Microsecond, Some(\"UTC\"))') AS at_tz, \
         CAST('2026-01-02' AS DATE) AS day, CAST(NULLIF(value, 'x') AS VARCHAR) AS maybe, \
         arrow_cast(value, 'Binary') AS raw FROM lines",
    )
    .unwrap();
    ws.add_file("1.txt", "tab\there\nback\\slash\nx\n");
    assert_ok(&ws.run(&query, &args_with(EVERY_FILE_A_BATCH, &["--sink", &sink])));
    let types = db.query(
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
         FROM information_schema.columns WHERE table_name = 'typed'",
    );
    assert_eq!(
        types.trim(),
        "t text, n integer, long boolean, ratio double precision, d numeric, at timestamp \
         without time zone, at_tz timestamp with time zone, day date, maybe text, raw bytea"
    );
    let rows = db.rows(
        "SELECT replace(replace(t, E'\\t', '<TAB>'), E'\\\\', '<BS>'), n, long, ratio, d, at, \
         at_tz AT TIME ZONE 'UTC', day, coalesce(maybe, '<NULL>'), convert_from(raw, 'UTF8') = t \
         FROM typed",
    );
    assert_eq!(
        rows,
        [
            "back<BS>slash|10|t|2.5|10.00|2026-01-02 03:04:05.123456|2026-01-02 03:04:05.123456|2026-01-02|back\\slash|t",
            "tab<TAB>here|8|t|2|8.00|2026-01-02 03:04:05.123456|2026-01-02 03:04:05.123456|2026-01-02|tab\there|t",
            "x|1|f|0.25|1.00|2026-01-02 03:04:05.123456|2026-01-02 03:04:05.123456|2026-01-02|<NULL>|t",
        ]
        .map(|r| r.replace('\t', "|"))
    );
}

#[test]
fn sinks_that_cannot_work_are_refused_before_any_input_is_taken() {
    let db = database();
    let wordcount = repo("sql/wordcount.sql");
    let refused = |args: &[&str], needle: &str| {
        let ws = Workspace::new();
        ws.add_file("1.txt", "a b\n");
        let out = ws.run(&wordcount, &args_with(EVERY_FILE_A_BATCH, args));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
        assert!(ws.commits().is_empty(), "a batch ran");
    };
    // Update mode needs a key the result keeps.
    let ws = Workspace::new();
    let keyless = ws.dir.path().join("keyless.sql");
    std::fs::write(
        &keyless,
        "SELECT count(*) AS n FROM (SELECT unnest(string_to_array(value, ' ')) AS word FROM \
         lines) GROUP BY word",
    )
    .unwrap();
    let out = ws.run(
        &keyless,
        &args_with(
            EVERY_FILE_A_BATCH,
            &["--mode", "update", "--sink", &db.sink("k")],
        ),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("GROUP BY key"), "{}", stderr(&out));
    // A table without the result's columns, or without a unique key for upserts.
    db.query("CREATE TABLE other (word TEXT, total BIGINT)");
    refused(&["--sink", &db.sink("other")], "has no column \"count\"");
    db.query("CREATE TABLE nokey (word TEXT, count BIGINT)");
    refused(
        &["--mode", "update", "--sink", &db.sink("nokey")],
        "no unique index",
    );
    // Columns of other types: found when phase two's statements are planned, at start.
    db.query("CREATE TABLE wrong_types (word TEXT, count DATE)");
    refused(
        &["--sink", &db.sink("wrong_types")],
        "cannot take this query's rows",
    );
    // TLS is not spoken; names PostgreSQL would cut are refused.
    refused(
        &["--sink", &format!("{}&sslmode=require", db.sink("t"))],
        "without TLS",
    );
    refused(&["--sink", &db.sink(&"x".repeat(50))], "longer than");
    // Not a postgres URL; no table.
    refused(&["--sink", "mysql://h/db?table=t"], "unknown kind of sink");
    refused(&["--sink", &db.url], "?table=");
    // The password never shows, even where the connection fails.
    let secret = format!(
        "postgres://postgres:Sec%72et@127.0.0.1:{}/nosuchdb?table=t",
        server().port
    );
    let out = Workspace::new().run(
        &wordcount,
        &args_with(EVERY_FILE_A_BATCH, &["--sink", &secret]),
    );
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("database \"nosuchdb\" does not exist"),
        "the server's message: {log}"
    );
    assert!(
        !log.contains("Secret") && !log.contains("Sec%72et"),
        "{log}"
    );
}

#[test]
fn a_table_belongs_to_one_query_and_one_job_at_a_time() {
    let db = database();
    let sink = db.sink("counts");
    let wordcount = repo("sql/wordcount.sql");
    let args = args_with(EVERY_FILE_A_BATCH, &["--sink", &sink]);
    let first = Workspace::new();
    first.add_file("1.txt", "a b\n");
    assert_ok(&first.run(&wordcount, &args));
    assert_eq!(db.rows("SELECT word, count FROM counts"), ["a|1", "b|1"]);
    // Another checkpoint (another query id) would number its batches from 0 again.
    let second = Workspace::new();
    second.add_file("1.txt", "c\n");
    let out = second.run(&wordcount, &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("another query"), "{}", stderr(&out));
    // While one job writes the table, a second is refused.
    let running = first
        .quiet(
            &wordcount,
            &["--trigger", "1s", "--no-console", "--sink", &sink],
        )
        .spawn()
        .unwrap();
    let mut running = crate::util::KillOnDrop(running);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .query(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE \
             l.locktype = 'advisory' AND d.datname = current_database()",
        )
        .trim()
        == "0"
    {
        assert!(Instant::now() < deadline, "the job never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Workspace::new().run(
        &wordcount,
        &args_with(EVERY_FILE_A_BATCH, &["--sink", &sink]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("another job"), "{}", stderr(&out));
    running.0.kill().unwrap();
}
