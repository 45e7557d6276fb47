//! The PostgreSQL sink against a real server: the system's PostgreSQL binaries, `initdb` into a
//! temp folder (as the `postgres` user when the tests run as root), one
//! server on a loopback port for the test process, one database per test. Queried back with
//! the real `psql`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::crash::{oracle, random_text, run_and_kill_at_random, seed};
use crate::util::{
    Line, Workspace, assert_ok, batch_query, free_port, lines_of, repo, runtime, sorted_rows,
    stderr,
};

struct Postgres {
    bin: PathBuf,
    port: u16,
}

/// The server of this test process, started on first use.
fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = server_binaries();
        // Under the system's temp folder: the server's user must reach it (a home folder
        // such as /root is closed to it).
        let root = std::env::temp_dir().join("dfstream-postgres-tests");
        remove_stale(&root);
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let user = as_user();
        if let Some((uid, gid)) = user {
            // The server refuses to run as root: its folder belongs to `postgres`.
            use std::os::unix::fs::PermissionsExt;
            for folder in [&root, &dir] {
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null());
        let out = run_as(initdb, user).output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap());
        // SIGQUIT: PostgreSQL's immediate shutdown, which also ends its backends.
        if let Err(e) = crate::util::spawn_for_the_test_process(postgres, libc::SIGQUIT, user) {
            panic!("cannot start PostgreSQL: {e}");
        }
        let server = Postgres { bin, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.psql("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start; its log: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    })
}

/// The newest `/usr/lib/postgresql/VERSION/bin` with a server in it.
fn server_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no PostgreSQL server under /usr/lib/postgresql: the PostgreSQL sink's tests need one \
         (apt-get install postgresql, as .ci/run does)",
    )
}

/// Running as root: the `postgres` user's ids, to run the server as.
fn as_user() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !entry.is_null(),
            "running as root without a postgres user to run PostgreSQL as"
        );
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

fn run_as(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}

/// Folders of earlier test processes that are gone (their servers died with them).
fn remove_stale(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let alive = entry
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Postgres {
    /// Runs `sql` with psql; rows as tab-separated lines.
    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A new database: its name, and the URL that reaches it.
    fn database(&self) -> Database<'_> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap();
        Database {
            url: format!("postgres://postgres@127.0.0.1:{}/{name}", self.port),
            name,
            server: self,
        }
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
    // Word counts upserted batch by batch while the job is killed at random moments (the
    // steps of a batch spread apart, so kills land between staging, the checkpoint's commit
    // and the table's); after a last clean run the table is the batch answer over every file.
    let db = server().database();
    let sink = db.sink("word_counts");
    let args = args_with(EVERY_FILE_A_BATCH, &["--mode", "update", "--sink", &sink]);
    let seed = seed() + 11;
    let mut rng = StdRng::seed_from_u64(seed);
    let ws = Workspace::new();
    let wordcount = repo("sql/wordcount.sql");
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
    let expected = oracle(&ws);
    assert_eq!(
        db.rows("SELECT word, count FROM word_counts"),
        expected,
        "after {kills} SIGKILLs, seed {seed}"
    );
    // The commit record names the last batch; nothing is left staged.
    let last = ws.commits().last().copied().unwrap();
    assert_eq!(
        db.query("SELECT batch_id FROM dfstream_commits WHERE target = 'word_counts'")
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
    let db = server().database();
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
    let db = server().database();
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
    let mut lines: Vec<Line> = Vec::new();
    for entry in std::fs::read_dir(&ws.input).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with('.') {
            let text = std::fs::read(ws.input.join(&name)).unwrap();
            lines.extend(lines_of(&text, &ws.file_column(&name), 0));
        }
    }
    let expected = sorted_rows(&runtime().block_on(batch_query(
        "SELECT value, file FROM lines",
        &lines,
        &[],
        2,
    )));
    assert_eq!(
        db.rows("SELECT value, file FROM lines_out"),
        expected,
        "{kills} kills"
    );
}

#[test]
fn complete_mode_replaces_the_rows_and_drops_keys_that_left_the_result() {
    // Words seen fewer than three times: a word leaves the result once it is seen a third
    // time, and must leave the table too.
    let db = server().database();
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
    let db = server().database();
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
fn values_of_every_stored_type_read_back_as_postgresql_sees_them() {
    // Tabs, newlines and backslashes in text, NULLs, decimals, timestamps and dates survive
    // the COPY encoding; the table is created with matching column types.
    let db = server().database();
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
    let db = server().database();
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
    assert!(log.contains("nosuchdb"), "{log}");
    assert!(
        !log.contains("Secret") && !log.contains("Sec%72et"),
        "{log}"
    );
}

#[test]
fn a_table_belongs_to_one_query_and_one_job_at_a_time() {
    let db = server().database();
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
