//! The oracle property: for any input and any split of it into triggers, the streaming result
//! equals the same SQL run once as a batch query over all the input. Random inputs and splits,
//! many seeds; a failure prints its seed, and `DFSTREAM_SEED=N` replays just that seed.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use dfstream::batch::TextCounters;
use dfstream::query::lines::TriggerSlot;
use dfstream::query::plan::{Params, QueryFile};
use dfstream::query::{OutputMode, QuerySpec, StreamingQuery};
use dfstream::source::{InputUnit, Place};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::{Line, ReplayHint, batch_query, lines_of, rows, runtime, seeds, sorted_rows};

const WORDS: &[&str] = &[
    "the",
    "The",
    "THE",
    "stream",
    "Streaming",
    "data",
    "DataFusion",
    "arrow",
    "Don't",
    "STOP—café",
    "42",
    "naïve",
    "ÄÖÜ",
    "straße",
    "snake_case",
    "x1",
    "日本語",
    "a",
    "b",
    "c",
    "word",
    "count",
];
const SEPARATORS: &[&str] = &[" ", " ", " ", "  ", "\t", ", ", ". ", "!", " -- ", "…"];

/// A random input: a few files of random lines (empty lines, CRLF, invalid UTF-8, no final
/// newline included). Returns (file name, bytes).
pub(crate) fn random_files(rng: &mut StdRng) -> Vec<(String, Vec<u8>)> {
    let files = rng.random_range(1..12);
    (0..files)
        .map(|f| {
            let mut text = Vec::new();
            let lines = rng.random_range(0..25);
            for l in 0..lines {
                let words = rng.random_range(0..9);
                for w in 0..words {
                    if w > 0 {
                        text.extend_from_slice(
                            SEPARATORS[rng.random_range(0..SEPARATORS.len())].as_bytes(),
                        );
                    }
                    text.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
                }
                if rng.random_bool(0.03) {
                    text.extend_from_slice(b" \xff\xfe bad");
                }
                let last = l + 1 == lines;
                if !last || rng.random_bool(0.7) {
                    text.extend_from_slice(if rng.random_bool(0.2) { b"\r\n" } else { b"\n" });
                }
            }
            (format!("f{f:02}.txt"), text)
        })
        .collect()
}

/// Splits `n` items into consecutive non-empty groups at random.
pub(crate) fn random_split(rng: &mut StdRng, n: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < n {
        let len = rng.random_range(1..=(n - start).min(4));
        groups.push(start..start + len);
        start += len;
    }
    groups
}

/// The result of a streaming run in `mode` over `files` split into triggers by `split`.
async fn stream(
    sql: &str,
    params: &Params,
    mode: OutputMode,
    partitions: usize,
    dir: &std::path::Path,
    files: &[(String, Vec<u8>)],
    split: &[std::ops::Range<usize>],
) -> Vec<Vec<RecordBatch>> {
    let (mut query, slot, _) = plan(sql, params, mode, partitions, None).await;
    let mut outputs = Vec::new();
    for range in split {
        slot.set(
            files[range.clone()]
                .iter()
                .enumerate()
                .map(|(i, (name, _))| InputUnit {
                    place: Place::File(dir.join(name)),
                    display: name.clone(),
                    ts_micros: ts_of(range.start + i),
                    range: None,
                    size: None,
                    version: None,
                    source: Default::default(),
                })
                .collect(),
        );
        outputs.push(query.run_trigger().await.unwrap().rows);
    }
    outputs
}

/// Plans `sql` over a fresh trigger slot (whose counters are returned too).
pub(crate) async fn plan(
    sql: &str,
    params: &Params,
    mode: OutputMode,
    partitions: usize,
    watermark: Option<std::time::Duration>,
) -> (StreamingQuery, TriggerSlot, Arc<TextCounters>) {
    let counters = Arc::new(TextCounters::default());
    let slot = TriggerSlot::new(Arc::clone(&counters), 16 << 20);
    let file = QueryFile {
        path: "oracle.sql".into(),
        sql: sql.to_string(),
    };
    let spec = QuerySpec {
        file: &file,
        params,
        mode: Some(mode),
        partitions,
        event_time: None,
        watermark,
    };
    let query = StreamingQuery::plan(spec, slot.clone())
        .await
        .unwrap_or_else(|e| panic!("planning failed: {e}"));
    (query, slot, counters)
}

pub(crate) fn params_of(params: &[(&str, &str)]) -> Params {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn ts_of(file_index: usize) -> i64 {
    1_700_000_000_000_000 + file_index as i64 * 7_000_000
}

/// Checks the property for `sql` over `count` seeds, in complete mode and as `updates` says
/// in update mode. `ordered` compares row order too.
fn check(sql: &str, params: &[(&str, &str)], updates: Updates, ordered: bool, count: u64) {
    check_against(sql, sql, params, updates, ordered, count);
}

/// Which rows each update-mode trigger must emit, exactly (Spark's update mode: the result
/// rows its input updated, whether or not their values changed).
#[derive(Clone, Copy)]
enum Updates {
    /// Update mode is not checked (the query's result is not a table of groups).
    None,
    /// The rows of the groups the trigger's input touched: result rows whose first `n`
    /// columns (the group) are a row's group in the batch query over that input alone.
    Groups(usize),
    /// The result rows that are new or changed since the trigger before (session windows,
    /// whose groups merge: the merged session is a new row).
    NewRows,
    /// A changelog keyed by the first `n` result columns, whose rows can leave the result (a
    /// HAVING): each row starts with its operation. Applied in order to the table so far, a
    /// trigger's upserts and deletes must give the batch result over the input so far; a
    /// delete carries the row it deletes, and only rows that left the result are deleted.
    Changelog(usize),
}

impl Updates {
    /// Asserts that `updates[k]` holds exactly the rows trigger `k` updated, given the batch
    /// oracle's sorted results over the input of triggers `0..=k` (`results`) and of trigger
    /// `k` alone (`alone`).
    fn assert_exact(
        self,
        updates: &[Vec<RecordBatch>],
        results: &[Vec<String>],
        alone: &[Vec<String>],
        context: &str,
    ) {
        assert_eq!(updates.len(), results.len(), "{context}");
        let group = |row: &str, n: usize| row.split('|').take(n).collect::<Vec<_>>().join("|");
        if let Updates::Changelog(n) = self {
            let mut table = std::collections::BTreeMap::new();
            for (k, update) in updates.iter().enumerate() {
                let keys_now: std::collections::HashSet<String> =
                    results[k].iter().map(|row| group(row, n)).collect();
                for change in rows(update) {
                    let (op, row) = change.split_once('|').unwrap();
                    let key = group(row, n);
                    match op {
                        "upsert" => {
                            table.insert(key, row.to_string());
                        }
                        "delete" => {
                            let deleted = table.remove(&key);
                            assert_eq!(
                                deleted.as_deref(),
                                Some(row),
                                "trigger {k}: a delete of a row the table did not hold\n{context}"
                            );
                            assert!(
                                !keys_now.contains(&key),
                                "trigger {k}: {row} deleted, but its key is in the result\n\
                                 {context}"
                            );
                        }
                        other => panic!("operation {other:?}"),
                    }
                }
                let mut applied: Vec<String> = table.values().cloned().collect();
                applied.sort();
                assert_eq!(
                    applied, results[k],
                    "update mode, trigger {k}: the changelog applied so far\n{context}"
                );
            }
            return;
        }
        let mut before: &[String] = &[];
        for (k, update) in updates.iter().enumerate() {
            let expected: Vec<String> = match self {
                Updates::None | Updates::Changelog(_) => return,
                Updates::Groups(n) => {
                    let touched: std::collections::HashSet<String> =
                        alone[k].iter().map(|row| group(row, n)).collect();
                    results[k]
                        .iter()
                        .filter(|row| touched.contains(&group(row, n)))
                        .cloned()
                        .collect()
                }
                Updates::NewRows => results[k]
                    .iter()
                    .filter(|row| before.binary_search(row).is_err())
                    .cloned()
                    .collect(),
            };
            let emitted = sorted_rows(update);
            assert!(
                emitted == expected,
                "update mode, trigger {k}: emitted {emitted:?}\nbut it updated {expected:?}\n\
                 {context}"
            );
            before = &results[k];
        }
    }
}

/// Checks that streaming `sql` gives what the batch query `expected_sql` gives over all input.
fn check_against(
    sql: &str,
    expected_sql: &str,
    params: &[(&str, &str)],
    updates: Updates,
    ordered: bool,
    count: u64,
) {
    let rt = runtime();
    let params_map = params_of(params);
    for seed in seeds(count) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let files = random_files(&mut rng);
        let split = random_split(&mut rng, files.len());
        let partitions = rng.random_range(1..=3);
        let dir = tempfile::tempdir().unwrap();
        let mut lines_per_file: Vec<Vec<Line>> = Vec::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            std::fs::write(dir.path().join(name), bytes).unwrap();
            lines_per_file.push(lines_of(bytes, name, ts_of(i)));
        }
        let all_lines: Vec<Line> = lines_per_file.concat();
        let context = format!(
            "seed {seed} (replay: DFSTREAM_SEED={seed}), {} files split {split:?}, {partitions} partitions\nquery: {sql}",
            files.len()
        );
        rt.block_on(async {
            let expected = batch_query(expected_sql, &all_lines, params, partitions).await;
            let complete = stream(
                sql,
                &params_map,
                OutputMode::Complete,
                partitions,
                dir.path(),
                &files,
                &split,
            )
            .await;
            let last = complete.last().unwrap();
            if ordered {
                assert_eq!(rows(last), rows(&expected), "complete mode, {context}");
            } else {
                assert_eq!(
                    sorted_rows(last),
                    sorted_rows(&expected),
                    "complete mode, {context}"
                );
            }
            if !matches!(updates, Updates::None) {
                let emitted = stream(
                    sql,
                    &params_map,
                    OutputMode::Update,
                    partitions,
                    dir.path(),
                    &files,
                    &split,
                )
                .await;
                let (mut results, mut alone) = (Vec::new(), Vec::new());
                for range in &split {
                    for (lines, out) in [
                        (&lines_per_file[..range.end], &mut results),
                        (&lines_per_file[range.clone()], &mut alone),
                    ] {
                        let lines = lines.concat();
                        out.push(sorted_rows(
                            &batch_query(expected_sql, &lines, params, partitions).await,
                        ));
                    }
                }
                updates.assert_exact(&emitted, &results, &alone, &context);
            }
        });
    }
}

#[test]
fn wordcount_matches_batch_for_random_splits() {
    let sql = std::fs::read_to_string(crate::util::repo("sql/wordcount.sql")).unwrap();
    check(&sql, &[], Updates::Groups(1), false, 40);
}

#[test]
fn many_aggregate_functions_match_batch() {
    check(
        "SELECT word, count(*) AS n, sum(length(word)) AS chars, min(file) AS first_file, \
         max(length(word)) AS longest, avg(length(word)) AS mean, count(DISTINCT file) AS files, \
         min(ts) AS first_seen \
         FROM (SELECT unnest(words(lower(value))) AS word, file, ts FROM lines) GROUP BY word",
        &[],
        Updates::Groups(1),
        false,
        25,
    );
}

#[test]
fn where_clause_and_parameters_match_batch() {
    check(
        "SELECT word, count(*) AS count \
         FROM (SELECT unnest(words(lower(value))) AS word FROM lines) \
         WHERE length(word) >= $min_len AND word <> 'the' GROUP BY word",
        &[("min_len", "3")],
        Updates::Groups(1),
        false,
        25,
    );
}

#[test]
fn two_column_group_by_matches_batch() {
    check(
        "SELECT file, word, count(*) AS count \
         FROM (SELECT file, unnest(words(lower(value))) AS word FROM lines) GROUP BY file, word",
        &[],
        Updates::Groups(2),
        false,
        25,
    );
}

#[test]
fn global_aggregate_without_group_by_matches_batch() {
    check(
        "SELECT count(*) AS lines, sum(length(value)) AS chars, max(value) AS last_line, \
         count(DISTINCT value) AS distinct_lines FROM lines",
        &[],
        Updates::None,
        false,
        25,
    );
}

#[test]
fn having_order_by_limit_apply_to_the_whole_result() {
    check(
        "SELECT word, count(*) AS count \
         FROM (SELECT unnest(words(lower(value))) AS word FROM lines) \
         GROUP BY word HAVING count(*) > 1 ORDER BY count DESC, word LIMIT 5",
        &[],
        Updates::None,
        true,
        25,
    );
}

#[test]
fn update_mode_deletes_rows_that_a_having_drops_from_the_result() {
    // Rows leave (a count passes 2), and enter and leave (between 2 and 4).
    for having in [
        "count(*) < 3",
        "count(*) BETWEEN 2 AND 4 AND max(length(word)) > 1",
    ] {
        check(
            &format!(
                "SELECT word, count(*) AS count \
                 FROM (SELECT unnest(words(lower(value))) AS word FROM lines) \
                 GROUP BY word HAVING {having}"
            ),
            &[],
            Updates::Changelog(1),
            false,
            25,
        );
    }
    // Without GROUP BY: the one row leaves the result.
    check(
        "SELECT count(*) AS lines, max(length(value)) AS longest FROM lines \
         HAVING count(*) < 20",
        &[],
        Updates::Changelog(0),
        false,
        15,
    );
    // A filter over a GROUP BY subquery, with a two-column key.
    check(
        "SELECT * FROM (SELECT file, word, count(*) AS count \
         FROM (SELECT file, unnest(words(lower(value))) AS word FROM lines) \
         GROUP BY file, word) WHERE count % 2 = 1",
        &[],
        Updates::Changelog(2),
        false,
        15,
    );
}

#[test]
fn window_function_over_the_aggregate_matches_batch() {
    check(
        "SELECT word, count, rank() OVER (ORDER BY count DESC) AS place FROM ( \
           SELECT word, count(*) AS count \
           FROM (SELECT unnest(words(lower(value))) AS word FROM lines) GROUP BY word) \
         ORDER BY place, word",
        &[],
        Updates::None,
        true,
        15,
    );
}

#[test]
fn stateless_query_appends_exactly_the_input_rows() {
    let rt = runtime();
    for seed in seeds(20) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let files = random_files(&mut rng);
        let split = random_split(&mut rng, files.len());
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            std::fs::write(dir.path().join(name), bytes).unwrap();
            expected.extend(
                lines_of(bytes, name, ts_of(i))
                    .into_iter()
                    .map(|l| format!("{}|{}", l.file, l.value)),
            );
        }
        expected.sort();
        let outputs = rt.block_on(stream(
            "SELECT file, value FROM lines",
            &Params::new(),
            OutputMode::Append,
            rng.random_range(1..=3),
            dir.path(),
            &files,
            &split,
        ));
        let mut got: Vec<String> = outputs.iter().flat_map(|o| rows(o)).collect();
        got.sort();
        assert_eq!(got, expected, "seed {seed}");
    }
}

#[test]
fn sliding_window_wordcount_matches_batch() {
    // Files arrive 7 s apart (see ts_of); 25 s windows every 10 s: size not a multiple of slide.
    let sql = std::fs::read_to_string(crate::util::repo("sql/window_wordcount.sql")).unwrap();
    check(
        &sql,
        &[("size", "25 seconds"), ("slide", "10 seconds")],
        Updates::Groups(3),
        false,
        25,
    );
}

#[test]
fn tumbling_window_wordcount_matches_batch() {
    let sql = std::fs::read_to_string(crate::util::repo("sql/tumbling_wordcount.sql")).unwrap();
    check(
        &sql,
        &[("size", "20 seconds")],
        Updates::Groups(3),
        false,
        25,
    );
}

/// Append mode with a watermark: every window the final watermark has closed is emitted
/// exactly once, with the count the batch query gives it over the rows that were not late;
/// late rows are exactly those older than the watermark when their trigger began.
fn check_append(sql: &str, expected_sql: &str, params: &[(&str, &str)], count: u64) {
    let rt = runtime();
    let params_map = params_of(params);
    let delay = 20_000_000i64; // --watermark 20s
    for seed in seeds(count) {
        let _hint = ReplayHint(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let files = random_files(&mut rng);
        let split = random_split(&mut rng, files.len());
        let partitions = rng.random_range(1..=3);
        // Event times move forward 7 s a file, out of order by up to 40 s (some late).
        let ts: Vec<i64> = (0..files.len())
            .map(|i| ts_of(i) - rng.random_range(0..40) * 1_000_000)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        // The expected late rows and watermark.
        let mut watermark = i64::MIN;
        let mut accepted: Vec<Line> = Vec::new();
        let mut late = 0;
        for range in &split {
            let mut trigger_max = i64::MIN;
            for i in range.clone() {
                let lines = lines_of(&files[i].1, &files[i].0, ts[i]);
                if !lines.is_empty() {
                    trigger_max = trigger_max.max(ts[i]);
                }
                if ts[i] < watermark {
                    late += lines.len();
                } else {
                    accepted.extend(lines);
                }
            }
            if trigger_max != i64::MIN {
                watermark = watermark.max(trigger_max - delay);
            }
        }
        let context = format!(
            "seed {seed} (replay: DFSTREAM_SEED={seed}), split {split:?}, {late} late rows"
        );
        rt.block_on(async {
            let delay = std::time::Duration::from_micros(delay as u64);
            let (mut query, slot, counters) = plan(
                sql,
                &params_map,
                OutputMode::Append,
                partitions,
                Some(delay),
            )
            .await;
            let mut emitted = Vec::new();
            for range in &split {
                slot.set(
                    range
                        .clone()
                        .map(|i| InputUnit {
                            place: Place::File(dir.path().join(&files[i].0)),
                            display: files[i].0.clone(),
                            ts_micros: ts[i],
                            range: None,
                            size: None,
                            version: None,
                            source: Default::default(),
                        })
                        .collect(),
                );
                emitted.extend(rows(&query.run_trigger().await.unwrap().rows));
            }
            assert_eq!(
                counters.snapshot().late_rows,
                late as u64,
                "late rows, {context}"
            );
            assert_eq!(
                slot.watermark(),
                (watermark != i64::MIN).then_some(watermark),
                "{context}"
            );
            // The batch query over the accepted rows, restricted to closed windows.
            let expected = batch_query(expected_sql, &accepted, params, partitions).await;
            // Whole seconds throughout, so the formatted times compare as strings.
            let closed_until = (watermark != i64::MIN).then(|| {
                let w = datafusion::arrow::array::TimestampMicrosecondArray::from(vec![watermark])
                    .with_timezone("UTC");
                let batch = RecordBatch::try_from_iter([("w", Arc::new(w) as _)]).unwrap();
                rows(&[batch]).remove(0)
            });
            let mut expected: Vec<String> = rows(&expected)
                .into_iter()
                .filter(|r| {
                    let end = r.split('|').nth(1).unwrap();
                    closed_until.as_deref().is_some_and(|w| end <= w)
                })
                .collect();
            expected.sort();
            emitted.sort();
            let mut unique = emitted.clone();
            unique.dedup();
            assert_eq!(
                unique.len(),
                emitted.len(),
                "a window emitted twice, {context}"
            );
            assert_eq!(emitted, expected, "{context}");
        });
    }
}

#[test]
fn append_mode_emits_each_closed_tumbling_window_once() {
    let sql = std::fs::read_to_string(crate::util::repo("sql/tumbling_wordcount.sql")).unwrap();
    check_append(&sql, &sql, &[("size", "20 seconds")], 25);
}

#[test]
fn append_mode_emits_each_closed_sliding_window_once() {
    let sql = std::fs::read_to_string(crate::util::repo("sql/window_wordcount.sql")).unwrap();
    check_append(
        &sql,
        &sql,
        &[("size", "25 seconds"), ("slide", "10 seconds")],
        25,
    );
}

/// Session windows computed without session(): a word's rows sorted by time start a new session
/// where the previous row is `$gap` or more before (window functions over all rows at once).
pub const SESSIONS_BY_WINDOW_FUNCTIONS: &str = "
    WITH w AS (SELECT ts, unnest(words(lower(value))) AS word FROM lines),
    marked AS (
      SELECT ts, word,
        CASE WHEN lag(ts) OVER (PARTITION BY word ORDER BY ts) > ts - CAST($gap AS INTERVAL)
          THEN 0 ELSE 1 END AS starts_session
      FROM w),
    numbered AS (
      SELECT ts, word, sum(starts_session) OVER (PARTITION BY word ORDER BY ts
        ROWS UNBOUNDED PRECEDING) AS session_no
      FROM marked)
    SELECT min(ts) AS window_start, max(ts) + CAST($gap AS INTERVAL) AS window_end, word,
      count(*) AS count
    FROM numbered GROUP BY word, session_no";

#[test]
fn session_window_wordcount_matches_batch() {
    // Files arrive 7 s apart (see ts_of): with a 10 s gap a word's session goes on while it
    // appears in consecutive files, and sessions of earlier triggers merge with later rows.
    let sql = std::fs::read_to_string(crate::util::repo("sql/session_wordcount.sql")).unwrap();
    check_against(
        &sql,
        SESSIONS_BY_WINDOW_FUNCTIONS,
        &[("gap", "10 seconds")],
        Updates::NewRows,
        false,
        30,
    );
}

#[test]
fn sessions_without_other_keys_match_batch() {
    // One key for all rows: files 7 s apart join while none is empty (8 s gap).
    let oracle = "
        WITH marked AS (
          SELECT ts, CASE WHEN lag(ts) OVER (ORDER BY ts) > ts - CAST($gap AS INTERVAL)
            THEN 0 ELSE 1 END AS starts_session
          FROM lines),
        numbered AS (
          SELECT ts, sum(starts_session) OVER (ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session_no
          FROM marked)
        SELECT min(ts) AS window_start, max(ts) + CAST($gap AS INTERVAL) AS window_end,
          count(*) AS lines
        FROM numbered GROUP BY session_no";
    check_against(
        "SELECT session['start'] AS window_start, session['end'] AS window_end, count(*) AS lines \
         FROM (SELECT session(ts, $gap) AS session FROM lines) GROUP BY session",
        oracle,
        &[("gap", "8 seconds")],
        Updates::NewRows,
        false,
        20,
    );
}

#[test]
fn append_mode_emits_each_closed_session_once() {
    // Out-of-order event times also merge sessions backwards, and bridge two open sessions.
    let sql = std::fs::read_to_string(crate::util::repo("sql/session_wordcount.sql")).unwrap();
    check_append(
        &sql,
        SESSIONS_BY_WINDOW_FUNCTIONS,
        &[("gap", "10 seconds")],
        30,
    );
}

#[test]
fn triggers_with_many_groups_merge_in_parallel_and_match_batch() {
    // Over 64k groups in a trigger: merging and finishing run hash-partitioned on 2 threads.
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let file = |keys: std::ops::Range<usize>, step: usize| -> Vec<u8> {
        keys.step_by(step)
            .map(|k| format!("k{k} w{} x\n", k % 7))
            .collect::<String>()
            .into_bytes()
    };
    let files = vec![
        ("a.txt".to_string(), file(0..80_000, 1)),
        ("b.txt".to_string(), file(40_000..140_000, 2)),
        ("c.txt".to_string(), file(0..150_000, 3)),
    ];
    let mut lines_per_file = Vec::new();
    for (i, (name, bytes)) in files.iter().enumerate() {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        lines_per_file.push(lines_of(bytes, name, ts_of(i)));
    }
    let wordcount = "SELECT word, count(*) AS n, min(file) AS first_file, \
                     sum(length(word)) AS chars \
                     FROM (SELECT unnest(words(value)) AS word, file FROM lines) GROUP BY word";
    // Sliding windows: the panes of the partitions merge first, then copy out on 2 threads.
    let sliding = "SELECT window_start, word, count(*) AS n, min(file) AS first_file \
                   FROM (SELECT unnest(hop(ts, '20 seconds', '10 seconds')) AS window_start, \
                           word, file \
                         FROM (SELECT ts, file, unnest(words(value)) AS word FROM lines)) \
                   GROUP BY window_start, word";
    assert!(per_pane(sliding, &[]));
    rt.block_on(async {
        for (sql, keys) in [(wordcount, 1), (sliding, 2)] {
            // The batch results over the first one, two and three files, and over each.
            let (mut results, mut alone) = (Vec::new(), Vec::new());
            for end in 1..=files.len() {
                let lines = lines_per_file[..end].concat();
                results.push(sorted_rows(&batch_query(sql, &lines, &[], 2).await));
                let lines = &lines_per_file[end - 1];
                alone.push(sorted_rows(&batch_query(sql, lines, &[], 2).await));
            }
            let expected = results.last().unwrap();
            assert!(expected.len() > 100_000, "{}", expected.len());
            let split = [0..1, 1..2, 2..3];
            let outputs = stream(
                sql,
                &Params::new(),
                OutputMode::Complete,
                2,
                dir.path(),
                &files,
                &split,
            )
            .await;
            let got = sorted_rows(outputs.last().unwrap());
            assert_eq!(got.len(), expected.len(), "complete mode: {sql}");
            assert!(got == *expected, "complete mode: results differ for {sql}");
            let updates = stream(
                sql,
                &Params::new(),
                OutputMode::Update,
                2,
                dir.path(),
                &files,
                &split,
            )
            .await;
            Updates::Groups(keys).assert_exact(&updates, &results, &alone, sql);
        }
    });
}

/// Whether `sql` is planned to aggregate sliding-window rows per pane.
pub(crate) fn per_pane(sql: &str, params: &[(&str, &str)]) -> bool {
    let params = params_of(params);
    runtime().block_on(async {
        let (query, _, _) = plan(sql, &params, OutputMode::Complete, 2, None).await;
        query.aggregates_per_pane()
    })
}

#[test]
fn sliding_windows_aggregate_per_pane_only_where_results_cannot_change() {
    let params = [("size", "25 seconds"), ("slide", "10 seconds")];
    let window_sql =
        std::fs::read_to_string(crate::util::repo("sql/window_wordcount.sql")).unwrap();
    assert!(per_pane(&window_sql, &params));
    let over = |select: &str, filter: &str, group: &str| {
        format!(
            "SELECT window_start, word, {select} FROM ( \
               SELECT unnest(hop(ts, $size, $slide)) AS window_start, word, file \
               FROM (SELECT ts, file, unnest(words(lower(value))) AS word FROM lines)) \
             {filter} GROUP BY window_start, word{group}"
        )
    };
    // Rows and other aggregates may be filtered and computed per pane...
    let safe = over(
        "count(*) AS n, count(DISTINCT file) AS files, min(file) AS first",
        "WHERE word <> 'the'",
        "",
    );
    assert!(per_pane(&safe, &params));
    check(&safe, &params, Updates::Groups(2), false, 15);
    // ...but whatever reads the window start needs the row in each window.
    for unsafe_sql in [
        over("count(*) AS n, max(window_start) AS latest", "", ""),
        over(
            "count(*) AS n",
            "WHERE window_start >= TIMESTAMP '2023-11-14T22:13:30Z'",
            "",
        ),
        over(
            "count(*) FILTER (WHERE window_start > TIMESTAMP '2023-11-14T22:13:30Z') AS n",
            "",
            "",
        ),
    ] {
        assert!(!per_pane(&unsafe_sql, &params), "{unsafe_sql}");
        check(&unsafe_sql, &params, Updates::Groups(2), false, 10);
    }
}

#[test]
fn append_mode_finds_the_window_key_whatever_its_name_or_place() {
    // tumble() straight in the GROUP BY, the key second.
    let sql = "SELECT tumble(ts, $size) AS minute, \
                 tumble(ts, $size) + CAST($size AS INTERVAL) AS ends, word, count(*) AS count \
               FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines) \
               GROUP BY word, tumble(ts, $size)";
    check_append(sql, sql, &[("size", "20 seconds")], 10);
    // An unnested hop() renamed twice on its way up.
    let sql = "SELECT w, w + CAST($size AS INTERVAL) AS ends, word, count(*) AS count \
               FROM (SELECT slot AS w, word FROM ( \
                 SELECT unnest(hop(ts, $size, $slide)) AS slot, word \
                 FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines))) \
               GROUP BY word, w";
    assert!(per_pane(
        sql,
        &[("size", "25 seconds"), ("slide", "10 seconds")]
    ));
    check_append(
        sql,
        sql,
        &[("size", "25 seconds"), ("slide", "10 seconds")],
        10,
    );
}
