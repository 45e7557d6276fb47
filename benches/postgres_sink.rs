//! The PostgreSQL sink's rate in update mode with 100k groups per batch, against a yardstick in
//! the same run on the same server: `psql` doing the database work any exactly-once upsert
//! sink must do for the same rows (COPY into a staging table, `INSERT ... ON CONFLICT` into a
//! table keyed by the group, delete the staged rows, one transaction per batch).
//!
//! dfstream runs `SELECT value AS k, count(*) AS n FROM lines GROUP BY value` in `--mode
//! update` over files of 100k distinct lines, one file per batch, once without and once with
//! `--sink postgres://...`; the sink's time is the difference. Reports rows/s of each and the
//! ratio; both tables are checked (every key, its count) outside the timings.
//!
//! ```text
//! cargo bench --bench postgres_sink                  # 5 batches of 100k groups
//! cargo bench --bench postgres_sink -- --batches 10
//! ```

#[path = "../tests/support/servers.rs"]
mod servers;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use servers::Postgres;

const GROUPS: usize = 100_000;
const ROUNDS: usize = 3;
const SQL: &str = "SELECT value AS k, count(*) AS n FROM lines GROUP BY value";

fn main() {
    let batches = batches_arg(5);
    let server = Postgres::start();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dfstream-bench/postgres");
    let _ = std::fs::remove_dir_all(&root);
    let input = root.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut lines = String::new();
    for key in 0..GROUPS {
        writeln!(lines, "k{key:06}").unwrap();
    }
    for batch in 0..batches {
        std::fs::write(input.join(format!("f{batch:03}.txt")), &lines).unwrap();
        // The yardstick's COPY data: what the sink stages for this batch.
        let mut copy = String::new();
        for key in 0..GROUPS {
            writeln!(copy, "{batch}\tk{key:06}\t{}", batch + 1).unwrap();
        }
        std::fs::write(root.join(format!("b{batch}.copy")), copy).unwrap();
    }
    let query = root.join("q.sql");
    std::fs::write(&query, SQL).unwrap();
    let rows = (GROUPS * batches) as f64;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let plain = run_dfstream(&root, &query, round, None);
        let db = server.new_database();
        let with_sink = run_dfstream(&root, &query, round, Some(&server.url(&db)));
        check_table(&server, &db, "counts", batches);
        ours.push(with_sink - plain);
        let db = server.new_database();
        theirs.push(run_yardstick(&server, &db, &root, batches));
        check_table(&server, &db, "counts", batches);
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!("| batches x groups | dfstream sink rows/s | psql yardstick rows/s | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| {batches} x {GROUPS} | {:.0} | {:.0} | {:.2}x |",
        rows / ours,
        rows / theirs,
        theirs / ours
    );
}

/// `--batches N` from the bench's arguments.
fn batches_arg(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--batches")
        .and_then(|i| args.get(i + 1))
        .map_or(default, |n| n.parse().expect("--batches takes a number"))
}

/// Seconds for the whole job, one file per batch, with or without the sink.
fn run_dfstream(root: &Path, query: &Path, round: usize, sink_url: Option<&str>) -> f64 {
    let checkpoint = root.join(format!("checkpoint-{round}-{}", sink_url.is_some()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_dfstream"));
    command
        .arg("run")
        .arg(query)
        .arg("--input")
        .arg(root.join("input"))
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--mode", "update", "--trigger", "available-now"])
        .args(["--max-files-per-trigger", "1", "--checkpoint-interval", "0"])
        .args(["--no-console", "--partitions", "2"])
        .stdout(Stdio::null())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some(url) = sink_url {
        command.args(["--sink", &format!("{url}?table=counts")]);
    }
    let start = Instant::now();
    let status = command.status().unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert!(status.success(), "dfstream failed");
    elapsed
}

/// Seconds for psql to stage and upsert every batch, one transaction each.
fn run_yardstick(server: &Postgres, db: &str, root: &Path, batches: usize) -> f64 {
    server
        .psql(
            db,
            "CREATE TABLE counts (k TEXT, n BIGINT, UNIQUE NULLS NOT DISTINCT (k)); \
             CREATE TABLE staged (dfstream_batch_id BIGINT NOT NULL, k TEXT, n BIGINT)",
        )
        .unwrap();
    let mut script = String::new();
    for batch in 0..batches {
        let copy = root.join(format!("b{batch}.copy"));
        writeln!(
            script,
            "BEGIN;\n\\copy staged FROM '{}'\nINSERT INTO counts (k, n) SELECT k, n FROM staged \
             WHERE dfstream_batch_id = {batch} ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n;\n\
             DELETE FROM staged WHERE dfstream_batch_id <= {batch};\nCOMMIT;",
            copy.display()
        )
        .unwrap();
    }
    let script_path = root.join(format!("{db}.sql"));
    std::fs::write(&script_path, script).unwrap();
    let start = Instant::now();
    let out = Command::new(server.bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-U", "postgres", "-d", db, "-f"])
        .arg(&script_path)
        .output()
        .unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Every key once, each counted in every batch.
fn check_table(server: &Postgres, db: &str, table: &str, batches: usize) {
    let summary = server
        .psql(
            db,
            &format!(
                "SELECT count(*), count(DISTINCT k), min(n), max(n) FROM {table} WHERE k LIKE \
                 'k%'"
            ),
        )
        .unwrap();
    assert_eq!(
        summary.trim(),
        format!("{GROUPS}\t{GROUPS}\t{batches}\t{batches}"),
        "{db}.{table}"
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
