//! `--engine ballista`: a trigger's plan as a job on an Apache DataFusion Ballista cluster
//! (scheduler and executors in the test process, or `dfstream cluster` processes) gives the
//! local engine's answer, counts and watermark, trigger by trigger; jobs switch engines on one
//! checkpoint; a cluster that is not dfstream's is a clear error. Built with `--features
//! ballista` only.

use std::sync::Arc;

use dfstream::query::OutputMode;
use dfstream::query::engine::{Engine, EngineChoice};
use dfstream::source::{InputUnit, Place};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::oracle::{params_of, plan, random_files, random_split, ts_of};
use crate::util::{ReplayHint, runtime, seeds, sorted_rows};

/// A query compared: its SQL and parameters, output mode, and whether it runs with a 20 s
/// watermark.
struct Case {
    sql: String,
    params: Vec<(&'static str, &'static str)>,
    mode: OutputMode,
    watermark: bool,
}

fn cases() -> Vec<Case> {
    let case = |sql: String, params, mode, watermark| Case {
        sql,
        params,
        mode,
        watermark,
    };
    let file = |name: &str| std::fs::read_to_string(crate::util::repo(name)).unwrap();
    vec![
        case(file("sql/wordcount.sql"), vec![], OutputMode::Update, false),
        case(
            file("sql/tumbling_wordcount.sql"),
            vec![("size", "20 seconds")],
            OutputMode::Append,
            true,
        ),
        case(
            file("sql/window_wordcount.sql"),
            vec![("size", "25 seconds"), ("slide", "10 seconds")],
            OutputMode::Complete,
            true,
        ),
        case(
            file("sql/session_wordcount.sql"),
            vec![("gap", "10 seconds")],
            OutputMode::Update,
            false,
        ),
        // Two scans of the stream: each task's report knows every file's source.
        case(
            "SELECT value AS v FROM lines WHERE length(value) > 10 \
             UNION ALL SELECT upper(value) AS v FROM lines WHERE length(value) <= 10"
                .into(),
            vec![],
            OutputMode::Append,
            true,
        ),
        case(
            "SELECT upper(value) AS v, file FROM lines WHERE length(value) > 3 AND ts < now()"
                .into(),
            vec![],
            OutputMode::Append,
            false,
        ),
    ]
}

/// One random input: files with their event times, split into triggers.
struct Input {
    dir: tempfile::TempDir,
    files: Vec<(String, Vec<u8>)>,
    ts: Vec<i64>,
    split: Vec<std::ops::Range<usize>>,
    partitions: usize,
}

impl Input {
    fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let files = random_files(&mut rng);
        let split = random_split(&mut rng, files.len());
        let partitions = rng.random_range(1..=3);
        // Out of order by up to 40 s: some rows are late.
        let ts = (0..files.len())
            .map(|i| ts_of(i) - rng.random_range(0..40) * 1_000_000)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        Self {
            dir,
            files,
            ts,
            split,
            partitions,
        }
    }

    /// Trigger `range`'s units (sources "even" and "odd", by file).
    fn units(&self, range: std::ops::Range<usize>) -> Vec<InputUnit> {
        range
            .map(|i| InputUnit {
                place: Place::File(self.dir.path().join(&self.files[i].0)),
                display: self.files[i].0.clone(),
                ts_micros: self.ts[i],
                range: None,
                size: Some(self.files[i].1.len() as u64),
                version: None,
                source: Arc::from(if i % 2 == 0 { "even" } else { "odd" }),
            })
            .collect()
    }
}

/// Each trigger's sorted rows, counts and watermark, for `case` over `input` on `engine`.
async fn run(
    engine: &Engine,
    case: &Case,
    input: &Input,
) -> Vec<(Vec<String>, String, Option<i64>)> {
    let delay = case.watermark.then(|| std::time::Duration::from_secs(20));
    let params = params_of(&case.params);
    let (mut query, slot, counters) =
        plan(&case.sql, &params, case.mode, input.partitions, delay).await;
    query.use_engine(engine.clone()).unwrap();
    let mut out = Vec::new();
    for range in &input.split {
        slot.set(input.units(range.clone()));
        let before = counters.snapshot();
        let rows = sorted_rows(&query.run_trigger().await.unwrap().rows);
        let mut counts = counters.snapshot() - before;
        counts.read_nanos = 0;
        let by_source = counters.take_by_source();
        let times = counters.take_event_times();
        let counts = format!("{counts:?} {by_source:?} {:?}", times.summary());
        out.push((rows, counts, slot.watermark()));
    }
    out
}

#[test]
fn the_cluster_engine_gives_the_local_engines_rows_counts_and_watermarks() {
    let rt = runtime();
    rt.block_on(async {
        let choice = EngineChoice::Standalone { executors: 2 };
        let cluster = Engine::start(&choice, Default::default()).await.unwrap();
        for seed in seeds(12) {
            let _hint = ReplayHint(seed);
            let input = Input::random(seed);
            for case in cases() {
                let local = run(&Engine::Local, &case, &input).await;
                let shipped = run(&cluster, &case, &input).await;
                for (k, (local, shipped)) in local.iter().zip(&shipped).enumerate() {
                    assert_eq!(
                        local, shipped,
                        "seed {seed}, trigger {k} of {:?}, {} partitions, query {}",
                        input.split, input.partitions, case.sql
                    );
                }
            }
        }
    });
}

#[test]
fn a_cluster_without_dfstreams_codec_is_a_clear_error_at_start() {
    let rt = runtime();
    rt.block_on(async {
        // Ballista's own standalone cluster: no dfstream functions, codec or version.
        let address = ballista_scheduler::standalone::new_standalone_scheduler()
            .await
            .unwrap();
        let url = format!("http://localhost:{}", address.port());
        let client = loop {
            match ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::connect(url.clone()).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        };
        ballista_executor::new_standalone_executor(client, 1, Default::default())
            .await
            .unwrap();
        let choice: EngineChoice = format!("ballista://localhost:{}", address.port())
            .parse()
            .unwrap();
        let started = std::time::Instant::now();
        let error = match Engine::start(&choice, Default::default()).await {
            Ok(_) => panic!("a plain Ballista cluster was taken for dfstream's"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("a first job on the cluster failed")
                && error.contains("dfstream cluster"),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    });
}

/// Lines of `n` words from a small vocabulary, deterministic in `seed`.
fn text(seed: u64, lines: usize) -> String {
    const VOCABULARY: &[&str] = &["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..lines)
        .map(|_| {
            let words: Vec<&str> = (0..rng.random_range(1..6))
                .map(|_| VOCABULARY[rng.random_range(0..VOCABULARY.len())])
                .collect();
            words.join(" ") + "\n"
        })
        .collect()
}

/// `word|count` of every word in `texts`, sorted.
fn counts_of<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for text in texts {
        for word in text.split_whitespace() {
            *counts.entry(word).or_default() += 1;
        }
    }
    counts.iter().map(|(w, n)| format!("{w}|{n}")).collect()
}

/// `dfstream cluster` processes on free ports of 127.0.0.1, killed when dropped.
struct ClusterProcesses {
    /// HOST:PORT of the scheduler.
    scheduler: String,
    _scheduler: crate::util::KillOnDrop,
    executors: Vec<crate::util::KillOnDrop>,
}

impl ClusterProcesses {
    /// A scheduler (with `scheduler_flags`) and `executors` executors (with `executor_flags`).
    fn start(executors: usize, scheduler_flags: &[&str], executor_flags: &[&str]) -> Self {
        use crate::util::{KillOnDrop, bin, free_port};
        let spawn = |args: &[&str]| {
            KillOnDrop(
                std::process::Command::new(bin())
                    .args(args)
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let scheduler = format!("127.0.0.1:{}", free_port());
        let scheduler_process = spawn(
            &[
                &["cluster", "scheduler", "--bind", &scheduler],
                scheduler_flags,
            ]
            .concat(),
        );
        let executors = (0..executors)
            .map(|_| {
                let (bind, grpc) = (
                    format!("127.0.0.1:{}", free_port()),
                    free_port().to_string(),
                );
                let args = [
                    "cluster",
                    "executor",
                    "--scheduler",
                    &scheduler,
                    "--bind",
                    &bind,
                ];
                spawn(&[&args[..], &["--grpc-port", &grpc], executor_flags].concat())
            })
            .collect();
        Self {
            scheduler,
            _scheduler: scheduler_process,
            executors,
        }
    }
}

#[test]
fn a_job_switches_between_a_cluster_and_the_local_engine_and_survives_a_kill_exactly() {
    use crate::util::{KillOnDrop, Workspace, assert_ok, state_rows};
    use std::process::Stdio;

    let processes = ClusterProcesses::start(1, &[], &["--concurrency", "2"]);
    let scheduler = &processes.scheduler;

    let ws = Workspace::new();
    let query = crate::util::repo("sql/wordcount.sql");
    let progress = ws.dir.path().join("progress.jsonl");
    let cluster = format!("ballista://{scheduler}");
    let run = |engine: &str| {
        let mut command = ws.command(
            &query,
            &[
                "--engine",
                engine,
                "--cluster-min-bytes",
                "0",
                "--trigger",
                "available-now",
                "--max-files-per-trigger",
                "2",
                "--no-console",
                "--progress",
            ],
        );
        command.arg(&progress);
        command
    };
    let mut texts = Vec::new();
    let add = |texts: &mut Vec<String>, round: u64, files: u64| {
        for f in 0..files {
            let contents = text(round * 100 + f, 40);
            ws.add_file(&format!("r{round}-{f}.txt"), &contents);
            texts.push(contents);
        }
    };

    // A cluster, then the local engine, on one checkpoint.
    add(&mut texts, 1, 5);
    assert_ok(&run(&cluster).output().unwrap());
    add(&mut texts, 2, 3);
    assert_ok(&run("local").output().unwrap());
    assert_eq!(
        state_rows(&ws, "SELECT word, count FROM state ORDER BY word"),
        counts_of(&texts)
    );

    // `verify` runs its batch query on the cluster too.
    let verified = crate::crash::verify_with(&ws, &query, &ws.input, &[], &["--engine", &cluster]);
    assert_ok(&verified);
    assert!(
        crate::util::stdout(&verified).contains("\nOK: 6 rows"),
        "{}",
        crate::util::stdout(&verified)
    );

    // The progress records count every line once, whichever engine read it (a killed run
    // may not write its last records: they are checked before).
    let records = std::fs::read_to_string(&progress).unwrap();
    let committed: std::collections::BTreeMap<u64, u64> = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| {
            (
                r["batchId"].as_u64().unwrap(),
                r["numInputRows"].as_u64().unwrap(),
            )
        })
        .collect();
    let lines: u64 = texts.iter().map(|t| t.lines().count() as u64).sum();
    assert_eq!(committed.values().sum::<u64>(), lines, "{records}");

    // Killed while its batches run on the cluster (each step paused), then started again.
    add(&mut texts, 3, 6);
    let mut job = run(&cluster);
    job.env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "150")
        .stderr(Stdio::null());
    let mut child = KillOnDrop(job.spawn().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    crate::util::signal(&child.0, "KILL");
    let _ = child.0.wait();
    assert_ok(&run(&cluster).output().unwrap());
    assert_eq!(
        state_rows(&ws, "SELECT word, count FROM state ORDER BY word"),
        counts_of(&texts)
    );
}

#[test]
fn an_executor_lost_mid_job_costs_nothing() {
    use crate::util::{Workspace, state_rows};

    let mut processes = ClusterProcesses::start(
        2,
        &["--executor-timeout", "4"],
        &["--concurrency", "1", "--heartbeat-interval", "1"],
    );
    let scheduler = processes.scheduler.clone();

    let ws = Workspace::new();
    let mut texts = Vec::new();
    for f in 0..12 {
        let contents = text(500 + f, 60_000);
        ws.add_file(&format!("big-{f}.txt"), &contents);
        texts.push(contents);
    }
    let progress = ws.dir.path().join("progress.jsonl");
    let mut job = ws.command(
        &crate::util::repo("sql/wordcount.sql"),
        &[
            "--engine",
            &format!("ballista://{scheduler}"),
            "--cluster-min-bytes",
            "0",
            "--partitions",
            "2",
            "--trigger",
            "available-now",
            "--max-bytes-per-trigger",
            "3MB",
            "--no-console",
            "--progress",
        ],
    );
    job.arg(&progress);
    let job = crate::util::Job::spawn(&mut job);
    // Lost once the first batch is done, while the next ones run on both executors (a
    // trigger of two files takes most of a second in a debug build): its task runs again on
    // the other once the scheduler declares it lost, 4 s after its last heartbeat.
    assert!(
        ws.wait_for_commit(0, std::time::Duration::from_secs(60)),
        "{}",
        job.log()
    );
    let doomed = &mut processes.executors[0].0;
    crate::util::signal(doomed, "KILL");
    let _ = doomed.wait();
    let (status, log) = job.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("batch 5:"), "{log}");
    assert_eq!(
        state_rows(&ws, "SELECT word, count FROM state ORDER BY word"),
        counts_of(&texts)
    );
    // Every line counted once in the progress records, tasks re-run or not.
    let input_rows: u64 = std::fs::read_to_string(&progress)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["numInputRows"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(input_rows, 12 * 60_000);
}

#[test]
fn an_unreachable_scheduler_is_retried_then_a_clear_error() {
    let ws = crate::util::Workspace::new();
    ws.add_file("a.txt", "some words\n");
    let address = format!("127.0.0.1:{}", crate::util::free_port());
    let started = std::time::Instant::now();
    let out = ws
        .command(
            &crate::util::repo("sql/wordcount.sql"),
            &[
                "--engine",
                &format!("ballista://{address}"),
                "--trigger",
                "once",
            ],
        )
        .output()
        .unwrap();
    let stderr = crate::util::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the Ballista scheduler at http://{address} has been unreachable"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(20));
    assert!(
        !ws.checkpoint.join("commits").exists()
            || std::fs::read_dir(ws.checkpoint.join("commits"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn static_tables_travel_with_the_plan_and_each_batch_joins_its_version() {
    use crate::util::{Workspace, assert_ok, state_rows, stderr, stdout};

    let ws = Workspace::new();
    let table = ws.dir.path().join("stop.csv");
    let query = ws.dir.path().join("q.sql");
    // A stopword list (an anti join) and a dimension (an inner join), on the cluster.
    let groups = ws.dir.path().join("groups.json");
    std::fs::write(
        &groups,
        "{\"w\":\"fox\",\"g\":\"animal\"}\n{\"w\":\"dog\",\"g\":\"animal\"}\n\
         {\"w\":\"red\",\"g\":\"colour\"}\n",
    )
    .unwrap();
    std::fs::write(
        &query,
        "SELECT g, count(*) AS n FROM (SELECT unnest(words(value)) AS w FROM lines) AS t \
         JOIN groups USING (w) WHERE NOT EXISTS (SELECT 1 FROM stop WHERE stop.word = t.w) \
         GROUP BY g",
    )
    .unwrap();
    let stop = format!("stop={}", table.display());
    let groups = format!("groups={}", groups.display());
    let tables = ["--table", &stop, "--table", &groups];
    let run = |engine: &str| {
        ws.run(
            &query,
            &[
                &tables[..],
                &[
                    "--engine",
                    engine,
                    "--cluster-min-bytes",
                    "0",
                    "--trigger",
                    "available-now",
                    "--no-console",
                ][..],
            ]
            .concat(),
        )
    };
    std::fs::write(&table, "word\nthe\n").unwrap();
    ws.add_file("a.txt", "the red fox\nthe dog\n");
    let out = run("ballista-standalone:2");
    assert_ok(&out);
    assert!(
        stderr(&out).contains("engine: ballista-standalone"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        state_rows(&ws, "SELECT g, n FROM state ORDER BY g"),
        ["animal|2", "colour|1"]
    );

    // `verify` runs the batch query with both tables on the cluster.
    let verified = crate::crash::verify_with(
        &ws,
        &query,
        &ws.input,
        &[],
        &["--engine", "ballista-standalone"],
    );
    assert_ok(&verified);
    assert!(
        stdout(&verified).contains("\nOK: 2 rows"),
        "{}",
        stdout(&verified)
    );

    // A new version of the stopwords: the next batch, on the cluster, joins with it; then
    // the local engine goes on from the same checkpoint.
    std::fs::write(&table, "word\nthe\nfox\n").unwrap();
    ws.add_file("b.txt", "fox dog red red\n");
    assert_ok(&run("ballista-standalone"));
    assert_eq!(
        state_rows(&ws, "SELECT g, n FROM state ORDER BY g"),
        ["animal|3", "colour|3"]
    );
    ws.add_file("c.txt", "fox dog\n");
    assert_ok(&run("local"));
    assert_eq!(
        state_rows(&ws, "SELECT g, n FROM state ORDER BY g"),
        ["animal|4", "colour|3"]
    );

    // `NOT IN` gathers the stream into one partition (its NULL semantics): refused, with
    // what to write instead.
    let not_in = ws.dir.path().join("not-in.sql");
    std::fs::write(
        &not_in,
        "SELECT w, count(*) AS n FROM (SELECT unnest(words(value)) AS w FROM lines) \
         WHERE w NOT IN (SELECT word FROM stop) GROUP BY w",
    )
    .unwrap();
    let out = ws.run(
        &not_in,
        &["--table", &stop, "--engine", "ballista-standalone"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run on a cluster: it moves rows between partitions")
            && stderr(&out).contains("`NOT EXISTS (SELECT ... WHERE ...)` gives the same rows"),
        "{}",
        stderr(&out)
    );

    // A table that grows too big to travel with a job while the job runs: the batch fails
    // without a commit, naming it (the query was planned with it small)...
    let mut big = String::from("word\n");
    while big.len() <= 9 << 20 {
        big.push_str(&format!("stopword-number-{}\n", big.len()));
    }
    let commits = ws.commits();
    let mut job = ws.command(
        &query,
        &[
            &tables[..],
            &[
                "--engine",
                "ballista-standalone",
                "--cluster-min-bytes",
                "0",
                "--trigger",
                "100ms",
                "--no-console",
            ][..],
        ]
        .concat(),
    );
    let job = crate::util::Job::spawn(&mut job);
    // Once it has started with the small table (and its plan has been checked).
    let started = std::time::Instant::now();
    while !job.log().contains(" running ") {
        assert!(started.elapsed().as_secs() < 60, "{}", job.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Whole at once (a half-written file could be read as a smaller version).
    let partial = ws.dir.path().join("stop.csv.partial");
    std::fs::write(&partial, &big).unwrap();
    std::fs::rename(&partial, &table).unwrap();
    ws.add_file("d.txt", "red\n");
    let (status, log) = job.wait();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("batch 3 failed")
            && log.contains("the static tables it reads (stop ")
            && log.contains("more than the 8388608 bytes a plan shipped to a cluster carries"),
        "{log}"
    );
    assert_eq!(ws.commits(), commits);
    // ... and started with it that big, the query is refused at start, saying why.
    let out = run("ballista-standalone");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a static table of more than 8 MiB in memory"),
        "{}",
        stderr(&out)
    );
    // The local engine joins with it.
    assert_ok(&run("local"));
    assert_eq!(
        state_rows(&ws, "SELECT g, n FROM state ORDER BY g"),
        ["animal|4", "colour|4"]
    );
}

#[test]
fn csv_json_and_parquet_input_give_the_batch_answer_on_a_cluster() {
    use crate::formats::{QUERIES, batch, stream, write_random_files};
    use dfstream::format::FormatKind;

    let rt = runtime();
    rt.block_on(async {
        let cluster = Engine::start(
            &EngineChoice::Standalone { executors: 2 },
            Default::default(),
        )
        .await
        .unwrap();
        for seed in seeds(3) {
            let _hint = ReplayHint(seed);
            let mut rng = StdRng::seed_from_u64(seed);
            for kind in [FormatKind::Csv, FormatKind::Json, FormatKind::Parquet] {
                let header = kind == FormatKind::Csv && rng.random_bool(0.5);
                let dir = tempfile::tempdir().unwrap();
                let count = rng.random_range(1..6);
                let files = write_random_files(&mut rng, kind, header, count, 1..40, dir.path());
                let split = random_split(&mut rng, files.len());
                for (sql, mode) in QUERIES {
                    let expected = batch(sql, kind, header, dir.path()).await;
                    let got = stream(
                        sql,
                        kind,
                        header,
                        *mode,
                        2,
                        dir.path(),
                        &files,
                        &split,
                        &cluster,
                    )
                    .await;
                    assert_eq!(
                        sorted_rows(&got),
                        sorted_rows(&expected),
                        "seed {seed}, {kind}, split {split:?}: {sql}"
                    );
                }
            }
        }
    });
}

#[test]
fn a_job_that_fails_on_the_cluster_fails_its_batch_and_is_run_again_exactly() {
    use crate::util::{Workspace, assert_ok, state_rows, stderr};

    let ws = Workspace::new();
    let query = ws.dir.path().join("q.sql");
    std::fs::write(
        &query,
        "SELECT page, count(*) AS n, sum(user_id) AS users FROM lines GROUP BY page",
    )
    .unwrap();
    let run = || {
        ws.run(
            &query,
            &[
                "--format",
                "csv",
                "--schema",
                "page VARCHAR, user_id BIGINT",
                "--on-error",
                "fail",
                "--engine",
                "ballista-standalone",
                "--cluster-min-bytes",
                "0",
                "--trigger",
                "available-now",
                "--max-files-per-trigger",
                "1",
                // Batch 0 waits for the failure to be committed.
                "--checkpoint-interval",
                "1h",
                "--no-console",
            ],
        )
    };
    ws.add_file("a.csv", "home,1\nabout,2\nhome,3\n");
    // The second batch's file has a record the executors cannot read as a BIGINT.
    let bad = "home,4\nabout,x\nhome,6\n";
    ws.add_file("b.csv", bad);
    let out = run();
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.contains("b.csv: line 2"), "{message}");
    assert_eq!(ws.commits(), vec![0], "{message}");
    assert_eq!(
        state_rows(&ws, "SELECT page, n, users FROM state ORDER BY page"),
        ["about|1|2", "home|2|4"]
    );

    // Mended (same size), the batch runs again from its offsets: nothing twice, nothing lost.
    let good = "home,4\nabout,5\nhome,6\n";
    assert_eq!(good.len(), bad.len());
    ws.add_file("b.csv", good);
    let out = run();
    assert_ok(&out);
    assert_eq!(ws.commits(), vec![0, 1]);
    assert_eq!(
        state_rows(&ws, "SELECT page, n, users FROM state ORDER BY page"),
        ["about|2|7", "home|4|14"]
    );
}
