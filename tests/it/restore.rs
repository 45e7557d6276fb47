//! The oracle across restarts: the real binary runs random triggers over random files,
//! stopping after each group of files and starting again from its checkpoint, so every
//! trigger after the first begins from state that was written to disk and read back. After
//! every run the result must equal the same SQL run once by plain DataFusion over all the
//! input so far: for every aggregate the README promises, sliding windows aggregated per pane,
//! and session windows. A failure names its seed; `DFSTREAM_SEED=N` replays it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::{
    Line, ReplayHint, Workspace, assert_ok, batch_query, read_parquet, runtime, seeds, sorted_rows,
};

/// Lines are `TIME NUMBER words...`; the queries read the number and the words after the time.
const EVENT_TIME: &str = "to_timestamp(substr(value, 1, 20))";

/// Every aggregate the README promises, on numbers, strings and timestamps, per word.
/// (Floating-point results that merge partial states in another order are rounded.)
const AGGREGATES: &str = "
    SELECT word, count(*) AS n, sum(num) AS total, avg(num) AS mean, min(num) AS low,
      max(num) AS high, min(file) AS first_file, max(value) AS last_line, min(ts) AS first_seen,
      max(ts) AS last_seen, count(DISTINCT num) AS nums, approx_distinct(num) AS about_nums,
      round(stddev(num), 6) AS sd, round(var_pop(num), 6) AS vp, median(num) AS med,
      array_agg(num ORDER BY num) AS all_nums, first_value(num ORDER BY ts, num) AS first_num,
      last_value(num ORDER BY ts, num) AS last_num
    FROM (SELECT ts, file, value, CAST(split_part(value, ' ', 2) AS BIGINT) AS num,
            unnest(words(lower(substr(value, 22)))) AS word FROM lines)
    GROUP BY word";

/// `lines` as the rows the aggregate families below read: the number, the word, a key that is
/// NULL for some rows, and a float with NaN, -0.0 and 0.0 among its values.
const ROWS: &str = "
    (SELECT value, ts, num, word,
       CASE WHEN num % 5 = 0 THEN NULL ELSE word END AS key,
       CASE WHEN num % 7 = 0 THEN CAST('NaN' AS DOUBLE) WHEN num % 7 = 1 THEN -0.0
         WHEN num % 7 = 2 THEN 0.0 ELSE num / 10.0 END AS f
     FROM (SELECT value, ts, CAST(split_part(value, ' ', 2) AS BIGINT) AS num,
             unnest(words(lower(substr(value, 22)))) AS word FROM lines))";

/// More aggregate families, per a key that is sometimes NULL.
fn more_aggregates() -> String {
    format!(
        "SELECT key, count(*) AS n, string_agg(word, ',' ORDER BY word) AS words,
           round(corr(num, length(value)), 6) AS c, bool_and(num > 0) AS all_positive,
           bool_or(num > 90) AS some_big, bit_and(num) AS ba, bit_or(num) AS bo,
           bit_xor(num) AS bx, count(*) FILTER (WHERE num > 0) AS positive,
           sum(num) FILTER (WHERE word = 'a') AS a_sum,
           sum(CAST(num AS DECIMAL(12, 2)) / 4) AS quarter
         FROM {ROWS} GROUP BY key"
    )
}

/// Random files of `TIME NUMBER words` lines: times move forward about 5 s a file, up to 30 s
/// out of order; a few words, so groups and windows recur across files.
fn random_files(rng: &mut StdRng) -> Vec<(String, String)> {
    (0..rng.random_range(2..12))
        .map(|f| {
            let mut text = String::new();
            for _ in 0..rng.random_range(0..6) {
                let t = (f * 5 + rng.random_range(0..30)) as i64;
                let words: Vec<&str> = (0..rng.random_range(0..4))
                    .map(|_| ["a", "b", "c", "Dé", "e_1"][rng.random_range(0..5)])
                    .collect();
                text.push_str(&format!(
                    "2026-01-01T00:{:02}:{:02}Z {} {}\n",
                    t / 60,
                    t % 60,
                    rng.random_range(-50..100),
                    words.join(" ")
                ));
            }
            (format!("f{f:03}.txt"), text)
        })
        .collect()
}

/// The lines of `text` as the oracle's `lines` table has them.
fn oracle_lines(ws: &Workspace, name: &str, text: &str) -> Vec<Line> {
    text.lines()
        .map(|line| {
            let stamp = &line[..20];
            let (date, time) = stamp.trim_end_matches('Z').split_once('T').unwrap();
            assert_eq!(date, "2026-01-01");
            let seconds: i64 = time
                .split(':')
                .map(|p| p.parse::<i64>().unwrap())
                .fold(0, |acc, p| acc * 60 + p);
            Line {
                value: line.to_string(),
                ts_micros: (1_767_225_600 + seconds) * 1_000_000,
                file: ws.file_column(name),
            }
        })
        .collect()
}

/// Runs `sql` (with `params`) as a stream over random files in random groups, restarting the
/// process from its checkpoint between groups, and checks each run's result against
/// `oracle_sql` over the input so far.
fn check_across_restarts(sql: &str, oracle_sql: &str, params: &[(&str, &str)], count: u64) {
    check_mode_across_restarts(sql, oracle_sql, params, Mode::Complete, count);
}

/// The output mode a restart check runs in, and how its result table is read back.
#[derive(Clone, Copy)]
enum Mode {
    /// `result.parquet` is the table.
    Complete,
    /// The batch files applied in batch order, each row replacing the earlier row of its
    /// group (its first `keys` columns after `batch_id`).
    Update { keys: usize },
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Complete => &[],
            Mode::Update { .. } => &["--mode", "update"],
        }
    }

    /// The job's result table so far, sorted.
    fn result(self, ws: &Workspace) -> Vec<String> {
        match self {
            Mode::Complete => sorted_rows(&read_parquet(&ws.output.join("result.parquet"))),
            Mode::Update { keys } => {
                let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&ws.output)
                    .map(|d| d.map(|e| e.unwrap().path()).collect())
                    .unwrap_or_default();
                files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
                files.sort();
                let mut table = std::collections::BTreeMap::new();
                for file in files {
                    for row in crate::util::rows(&read_parquet(&file)) {
                        let row = row.split_once('|').unwrap().1.to_string(); // batch_id
                        let group: Vec<&str> = row.split('|').take(keys).collect();
                        table.insert(group.join("|"), row.clone());
                    }
                }
                let mut rows: Vec<String> = table.into_values().collect();
                rows.sort();
                rows
            }
        }
    }
}

/// [`check_across_restarts`] in `mode`.
fn check_mode_across_restarts(
    sql: &str,
    oracle_sql: &str,
    params: &[(&str, &str)],
    mode: Mode,
    count: u64,
) {
    for seed in seeds(count) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let ws = Workspace::new();
        let query = ws.dir.path().join("query.sql");
        std::fs::write(&query, sql).unwrap();
        let files = random_files(&mut rng);
        let flags: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args: Vec<String> = vec![
            "--trigger".into(),
            "available-now".into(),
            "--no-console".into(),
            "--event-time".into(),
            EVENT_TIME.into(),
            "--max-files-per-trigger".into(),
            rng.random_range(1..=3).to_string(),
            "--snapshot-interval".into(),
            rng.random_range(1..=4).to_string(),
            "--retain-batches".into(),
            rng.random_range(0..=3).to_string(),
            "--checkpoint-interval".into(),
            "0".into(),
            "--partitions".into(),
            rng.random_range(1..=3).to_string(),
        ];
        args.extend(
            flags
                .iter()
                .flat_map(|f| ["--param".to_string(), f.clone()]),
        );
        args.extend(mode.flags().iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut lines = Vec::new();
        let mut next = 0;
        let mut runs = 0;
        while next < files.len() {
            let group = rng.random_range(1..=3).min(files.len() - next);
            for (name, text) in &files[next..next + group] {
                ws.add_file(name, text);
                lines.extend(oracle_lines(&ws, name, text));
            }
            next += group;
            let out = ws.run(&query, &args);
            assert_ok(&out);
            runs += 1;
            let expected =
                sorted_rows(&runtime().block_on(batch_query(oracle_sql, &lines, params, 2)));
            let got = mode.result(&ws);
            assert_eq!(
                got,
                expected,
                "seed {seed} (replay: DFSTREAM_SEED={seed}), after run {runs} ({next} of {} \
                 files), flags {args:?}\nquery: {sql}",
                files.len()
            );
        }
    }
}

#[test]
fn every_promised_aggregate_survives_restarts() {
    check_across_restarts(AGGREGATES, AGGREGATES, &[], 8);
}

#[test]
fn sliding_windows_per_pane_survive_restarts() {
    let sql = crate::util::words_after_the_time("sql/window_wordcount.sql");
    let params = [("size", "20 seconds"), ("slide", "5 seconds")];
    assert!(crate::oracle::per_pane(&sql, &params), "planned per pane");
    check_across_restarts(&sql, &sql, &params, 6);
}

#[test]
fn session_windows_survive_restarts() {
    let sql = crate::util::words_after_the_time("sql/session_wordcount.sql");
    let oracle = crate::oracle::SESSIONS_BY_WINDOW_FUNCTIONS
        .replace("words(lower(value))", "words(lower(substr(value, 22)))");
    check_across_restarts(&sql, &oracle, &[("gap", "10 seconds")], 6);
}

#[test]
fn more_aggregate_families_and_null_keys_survive_restarts() {
    let sql = more_aggregates();
    check_across_restarts(&sql, &sql, &[], 6);
}

#[test]
fn nan_and_signed_zero_keys_survive_restarts() {
    let sql = format!("SELECT f, count(*) AS n, sum(num) AS total FROM {ROWS} GROUP BY f");
    check_across_restarts(&sql, &sql, &[], 6);
}

#[test]
fn rollup_and_grouping_sets_survive_restarts() {
    let sql = format!(
        "SELECT word, num % 3 AS bucket, count(*) AS n, sum(num) AS total
         FROM {ROWS} GROUP BY ROLLUP(word, num % 3)"
    );
    check_across_restarts(&sql, &sql, &[], 6);
    let sql = format!(
        "SELECT word, key, count(*) AS n
         FROM {ROWS} GROUP BY GROUPING SETS ((word), (key), ())"
    );
    check_across_restarts(&sql, &sql, &[], 6);
}

#[test]
fn update_mode_batch_files_applied_in_order_survive_restarts() {
    check_mode_across_restarts(AGGREGATES, AGGREGATES, &[], Mode::Update { keys: 1 }, 6);
    let sql = more_aggregates();
    check_mode_across_restarts(&sql, &sql, &[], Mode::Update { keys: 1 }, 4);
    let sql = crate::util::words_after_the_time("sql/window_wordcount.sql");
    let params = [("size", "20 seconds"), ("slide", "5 seconds")];
    check_mode_across_restarts(&sql, &sql, &params, Mode::Update { keys: 3 }, 4);
}
