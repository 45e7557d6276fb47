//! `--progress`: one JSON record per committed batch with Spark's `StreamingQueryProgress`
//! names, its numbers checked against the input, and one idle event per idle period.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Workspace, assert_ok, repo, signal};

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Adds the files in order, with distinct modification times.
fn add_in_order(ws: &Workspace, texts: &[(&str, &str)]) {
    for (name, text) in texts {
        ws.add_file(name, text);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where `--progress` writes in this workspace, and the flag's value.
fn progress_file(ws: &Workspace) -> (std::path::PathBuf, String) {
    let path = ws.dir.path().join("progress.jsonl");
    let flag = path.display().to_string();
    (path, flag)
}

fn words(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

#[test]
fn each_batch_writes_a_record_with_sparks_names_and_the_inputs_numbers() {
    let ws = Workspace::new();
    let texts = [
        ("a.txt", "to be or\nnot to be\n"),
        ("b.txt", "that is\n"),
        ("c.txt", "the question to be\nasked\nagain\n"),
    ];
    add_in_order(&ws, &texts);
    let (progress, progress_flag) = progress_file(&ws);
    let args = [
        "--trigger",
        "available-now",
        "--max-files-per-trigger",
        "1",
        "--checkpoint-interval",
        "0",
        "--no-console",
        "--progress",
        &progress_flag,
    ];
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    let all = records(&progress);
    assert_eq!(all.len(), 3, "{all:?}");
    let mut seen = BTreeSet::new();
    for (i, record) in all.iter().enumerate() {
        let (name, text) = texts[i];
        for field in [
            "id",
            "runId",
            "name",
            "timestamp",
            "batchId",
            "batchDuration",
            "numInputRows",
            "inputRowsPerSecond",
            "processedRowsPerSecond",
            "durationMs",
            "stateOperators",
            "sources",
            "sink",
        ] {
            assert!(record.get(field).is_some(), "{field} missing: {record}");
        }
        for phase in [
            "triggerExecution",
            "latestOffset",
            "queryPlanning",
            "addBatch",
            "walCommit",
            "commitOffsets",
        ] {
            assert!(record["durationMs"][phase].is_u64(), "{phase}: {record}");
        }
        assert_eq!(record["batchId"], i as u64);
        assert_eq!(record["id"], all[0]["id"]);
        assert_eq!(record["runId"], all[0]["runId"]);
        assert_eq!(record["name"], "wordcount.sql");
        assert_eq!(
            record["numInputRows"],
            text.lines().count() as u64,
            "{record}"
        );
        assert_eq!(record["input"]["files"], 1);
        assert_eq!(record["input"]["bytes"], text.len() as u64);
        let new = words(text);
        seen.extend(new.iter().cloned());
        let state = &record["stateOperators"][0];
        assert_eq!(state["numRowsTotal"], seen.len() as u64, "{record}");
        assert_eq!(state["numRowsUpdated"], new.len() as u64, "{record}");
        // Complete mode: the whole table every batch.
        assert_eq!(record["sink"]["numOutputRows"], seen.len() as u64);
        assert!(
            record["sink"]["description"]
                .as_str()
                .unwrap()
                .starts_with("parquet "),
            "{record}"
        );
        let source = &record["sources"][0];
        assert_eq!(source["numInputRows"], record["numInputRows"]);
        assert_eq!(source["input"]["bytes"], text.len() as u64, "{record}");
        assert_eq!(source["endOffset"][0]["name"], name, "{record}");
        // What was listed and left for later batches by --max-files-per-trigger.
        let waiting = &texts[i + 1..];
        assert_eq!(
            source["latestOffset"],
            serde_json::json!({
                "waitingFiles": waiting.len(),
                "waitingBytes": waiting.iter().map(|(_, t)| t.len()).sum::<usize>(),
            }),
            "{record}"
        );
        // A batch starts where the source's previous one ended.
        let previous = i.checked_sub(1).map(|p| &all[p]["sources"][0]["endOffset"]);
        assert_eq!(
            &source["startOffset"],
            previous.unwrap_or(&Value::Null),
            "{record}"
        );
    }
    // The state files on disk, as of the last commit.
    let on_disk: u64 = std::fs::read_dir(ws.checkpoint.join("state"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let reported = &all[2]["stateOperators"][0]["customMetrics"]["stateBytesOnDisk"];
    assert!(on_disk > 0);
    assert_eq!(reported, on_disk, "{:?}", all[2]);
    // A restart is the same query (id) in a new run (runId).
    ws.add_file("d.txt", "more\n");
    assert_ok(&ws.run(&repo("sql/wordcount.sql"), &args));
    let all = records(&progress);
    assert_eq!(all.len(), 4);
    assert_eq!(all[3]["id"], all[0]["id"]);
    assert_ne!(all[3]["runId"], all[0]["runId"]);
    assert_eq!(all[3]["batchId"], 3);
    // ... also across a restart.
    assert_eq!(
        all[3]["sources"][0]["startOffset"],
        all[2]["sources"][0]["endOffset"]
    );
    assert_eq!(
        all[3]["sources"][0]["latestOffset"],
        serde_json::json!({"waitingFiles": 0, "waitingBytes": 0})
    );
}

/// With a directory and a socket, each source's figures are its own input's.
#[test]
fn each_source_counts_its_own_rows_and_bytes() {
    let ws = Workspace::new();
    let file_text: &[u8] = b"one two\nthree\n\xffbad utf8\n";
    ws.add_file("a.txt", file_text);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let socket_lines = "alpha beta\ngamma\ndelta\nepsilon\n";
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut stream, socket_lines.as_bytes()).unwrap();
    });
    let (progress, progress_flag) = progress_file(&ws);
    let job = crate::util::Job::spawn(
        ws.command(
            &repo("sql/wordcount.sql"),
            &[
                "--socket",
                &addr,
                "--trigger",
                "continuous",
                "--checkpoint-interval",
                "0",
                "--no-console",
                "--progress",
                &progress_flag,
            ],
        )
        .stdout(Stdio::null()),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while records(&progress)
        .iter()
        .filter_map(|r| r["numInputRows"].as_u64())
        .sum::<u64>()
        < 7
    {
        assert!(std::time::Instant::now() < deadline, "{}", job.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    job.stop();
    server.join().unwrap();
    let all: Vec<Value> = records(&progress)
        .into_iter()
        .filter(|r| r.get("batchId").is_some())
        .collect();
    let mut rows = std::collections::BTreeMap::new();
    let mut bytes = std::collections::BTreeMap::new();
    let mut lossy = std::collections::BTreeMap::new();
    for record in &all {
        let sources = record["sources"].as_array().unwrap();
        assert_eq!(sources.len(), 2, "{record}");
        let sum: u64 = sources
            .iter()
            .map(|s| s["numInputRows"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, record["numInputRows"].as_u64().unwrap(), "{record}");
        for source in sources {
            let kind = if source["description"].as_str().unwrap().contains(&addr) {
                "socket"
            } else {
                "files"
            };
            *rows.entry(kind).or_insert(0) += source["numInputRows"].as_u64().unwrap();
            *bytes.entry(kind).or_insert(0) += source["input"]["bytes"].as_u64().unwrap();
            *lossy.entry(kind).or_insert(0) += source["input"]["lossyLines"].as_u64().unwrap();
            // The socket's latest offset is the log's end when the batch was planned: at or
            // past where the batch's last range ends.
            if kind == "socket" && !source["endOffset"].is_null() {
                let end = source["endOffset"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .clone();
                let latest = &source["latestOffset"];
                let position = |v: &Value, offset: &str| {
                    (v["segment"].as_u64().unwrap(), v[offset].as_u64().unwrap())
                };
                assert!(
                    position(latest, "offset") >= position(&end, "end"),
                    "{record}"
                );
            }
        }
    }
    assert_eq!(rows["files"], 3, "{all:?}");
    assert_eq!(rows["socket"], 4, "{all:?}");
    assert_eq!(bytes["files"], file_text.len() as u64, "{all:?}");
    assert_eq!(bytes["socket"], socket_lines.len() as u64, "{all:?}");
    assert_eq!((lossy["files"], lossy["socket"]), (1, 0), "{all:?}");
}

#[test]
fn an_idle_period_writes_one_idle_event() {
    let ws = Workspace::new();
    let (progress, progress_flag) = progress_file(&ws);
    let mut child = ws
        .command(
            &repo("sql/wordcount.sql"),
            &[
                "--trigger",
                "50ms",
                "--checkpoint-interval",
                "0",
                "--no-console",
                "--progress",
                &progress_flag,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kinds = |path: &std::path::Path| -> Vec<String> {
        records(path)
            .iter()
            .map(|r| match r.get("event") {
                Some(event) => event.as_str().unwrap().to_string(),
                None => format!("batch {}", r["batchId"]),
            })
            .collect()
    };
    std::thread::sleep(Duration::from_millis(600));
    ws.add_file("a.txt", "one two\n");
    assert!(ws.wait_for_commit(0, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(600));
    ws.add_file("b.txt", "three\n");
    assert!(ws.wait_for_commit(1, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(600));
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    // Twelve triggers or so in each idle stretch, one event for each stretch.
    assert_eq!(
        kinds(&progress),
        ["idle", "batch 0", "idle", "batch 1", "idle"],
        "{:?}",
        records(&progress)
    );
    let idle = &records(&progress)[0];
    assert_eq!(idle["id"], records(&progress)[1]["id"]);
    assert!(idle["timestamp"].as_str().unwrap().ends_with('Z'), "{idle}");
}

#[test]
fn progress_to_stderr_with_a_dash() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "x y\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--no-console", "--progress", "-"],
    );
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {log}"));
    let record: Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["numInputRows"], 1);
}

#[test]
fn event_times_the_watermark_and_closed_windows_are_in_the_records() {
    let ws = Workspace::new();
    let texts = [
        ("a.txt", "2026-01-01T00:00:00Z x\n2026-01-01T00:00:04Z y\n"),
        ("b.txt", "2026-01-01T00:00:20Z z\n"),
        ("c.txt", "2026-01-01T00:00:40Z w\n"),
        // No time, and behind the watermark (35 s after c.txt).
        (
            "d.txt",
            "bad v\n2026-01-01T00:00:01Z late\n2026-01-01T00:00:41Z u\n",
        ),
    ];
    add_in_order(&ws, &texts);
    let (progress, progress_flag) = progress_file(&ws);
    let out = ws.run(
        &repo("sql/tumbling_wordcount.sql"),
        &[
            "--param",
            "size=10s",
            "--event-time",
            "to_timestamp(split_part(value, ' ', 1))",
            "--watermark",
            "5s",
            "--mode",
            "append",
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--checkpoint-interval",
            "0",
            "--no-console",
            "--progress",
            &progress_flag,
        ],
    );
    assert_ok(&out);
    let all = records(&progress);
    assert_eq!(all.len(), 4, "{all:?}");
    let first = &all[0]["eventTime"];
    assert_eq!(first["min"], "2026-01-01T00:00:00.000000Z", "{first}");
    assert_eq!(first["max"], "2026-01-01T00:00:04.000000Z", "{first}");
    assert_eq!(first["avg"], "2026-01-01T00:00:02.000000Z", "{first}");
    assert_eq!(first["watermark"], "2025-12-31T23:59:59.000000Z", "{first}");
    assert_eq!(
        all[2]["eventTime"]["watermark"],
        "2026-01-01T00:00:35.000000Z"
    );
    // Each line's words (the time's digits are words too: 2026, 01, 01t00, 00, 00z, x) make
    // groups of its window; the window [0 s, 10 s) closes at batch 1 (watermark 15 s), and
    // [20 s, 30 s) at batch 2 (35 s): their groups leave the state.
    let state = |i: usize, field: &str| all[i]["stateOperators"][0][field].as_u64().unwrap();
    assert_eq!(
        [0, 1, 2].map(|i| state(i, "numRowsRemoved")),
        [0, 8, 6],
        "{all:?}"
    );
    assert_eq!([0, 1, 2].map(|i| state(i, "numRowsTotal")), [8, 6, 6]);
    // Append mode emits each window once, when it closes.
    assert_eq!(
        [0, 1, 2].map(|i| all[i]["sink"]["numOutputRows"].as_u64().unwrap()),
        [0, 8, 6]
    );
    let last = &all[2]["stateOperators"][0];
    assert!(last["memoryUsedBytes"].as_u64().unwrap() > 0, "{last}");
    // The line without a time is skipped, the late one dropped: counted for the batch and
    // for the source they came from.
    for (i, skipped) in [0, 0, 0, 1].into_iter().enumerate() {
        let record = &all[i];
        for input in [&record["input"], &record["sources"][0]["input"]] {
            assert_eq!(input["rowsWithoutEventTime"], skipped, "{record}");
            assert_eq!(input["lateRows"], skipped, "{record}");
        }
        assert_eq!(
            record["stateOperators"][0]["numRowsDroppedByWatermark"], skipped,
            "{record}"
        );
    }
}
