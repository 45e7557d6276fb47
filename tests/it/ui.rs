//! `--ui`: the status page of a running job. Each route's content type and body against the
//! job's own numbers (the `--progress` file and the input), `/metrics` parsed by Prometheus's
//! own Python parser, clients that never finish a request while the job goes on, the
//! non-loopback refusal, and the page rendered by a real headless Chromium.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Job, Workspace, python_tool, repo};

/// One HTTP/1.1 request on a new connection: status, `Content-Type`, body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    request(addr, "GET", path)
}

/// The address the job logged for its status page.
fn page_address(job: &Job) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(addr) = job.log().lines().find_map(|l| {
            l.split_once("status page at http://")
                .map(|(_, a)| a.trim_end_matches('/').to_string())
        }) {
            return addr.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no status page address:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The batch records of the `--progress` file.
fn committed(progress: &Path) -> Vec<Value> {
    std::fs::read_to_string(progress)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("batchId").is_some())
        .collect()
}

fn wait_for_batches(progress: &Path, n: usize, job: &Job) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(progress).len() < n {
        assert!(
            Instant::now() < deadline,
            "batch {n} never came:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/metrics` parsed by the `prometheus_client` package's OpenMetrics parser: each sample's
/// name and labels (`name{k="v"}`, labels sorted) to its value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python_tool("python3"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/metrics is not valid OpenMetrics text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Debian's Chromium, which `.ci/run` installs.
fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's chromium package (.ci/run does)"
    );
    path
}

/// The page's DOM after its script ran, as headless Chromium renders it.
fn rendered(addr: SocketAddr, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{addr}/"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn word_counts(texts: &[&str]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in texts.iter().flat_map(|t| t.split_whitespace()) {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn the_status_page_serves_the_jobs_numbers_on_every_route_and_in_a_real_browser() {
    let ws = Workspace::new();
    let progress = ws.dir.path().join("progress.jsonl");
    let job = Job::spawn(
        ws.command(
            &repo("sql/wordcount.sql"),
            &[
                "--trigger",
                "continuous",
                "--checkpoint-interval",
                "0",
                "--no-console",
                "--ui",
                "127.0.0.1:0",
                "--progress",
                &progress.display().to_string(),
            ],
        )
        .stdout(Stdio::null()),
    );
    let addr = page_address(&job);

    // Before any batch: no batch yet (an idle event, perhaps), and no result.
    let (status, content_type, body) = get(addr, "/api/progress");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(events.iter().all(|e| e["event"] == "idle"), "{body}");
    let result: Value = serde_json::from_str(&get(addr, "/api/result").2).unwrap();
    assert_eq!(
        (&result["batchId"], &result["numRows"]),
        (&Value::Null, &Value::from(0))
    );

    let texts = [
        "to be or not to be",
        "that is the question\nto be",
        "To Be or not",
    ];
    for (i, text) in texts.iter().enumerate() {
        ws.add_file(&format!("{i}.txt"), format!("{text}\n"));
        wait_for_batches(&progress, i + 1, &job);
    }

    // Two clients that never finish a request hold connections open; the job goes on, and
    // other clients are served meanwhile.
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial
        .write_all(b"GET /api/progress HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    ws.add_file("3.txt", "question\n");
    wait_for_batches(&progress, 4, &job);
    let texts = [texts[0], texts[1], texts[2], "question"];

    // /api/progress: the records of the --progress file.
    let records = committed(&progress);
    let (status, content_type, body) = get(addr, "/api/progress");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    let served: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("batchId").is_some())
        .collect();
    assert_eq!(served.len(), records.len(), "{body}");
    for (served, written) in served.iter().zip(&records) {
        for field in [
            "batchId",
            "numInputRows",
            "runId",
            "id",
            "stateOperators",
            "sink",
        ] {
            assert_eq!(served[field], written[field], "{field}");
        }
    }

    // /api/result: the complete result after the last batch.
    let (status, content_type, body) = get(addr, "/api/result");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let result: Value = serde_json::from_str(&body).unwrap();
    let expected = word_counts(&texts);
    assert_eq!(result["batchId"], 3);
    assert_eq!(result["columns"], serde_json::json!(["word", "count"]));
    assert_eq!(result["numRows"], expected.len());
    let rows: BTreeMap<String, u64> = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["word"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, expected);

    // /metrics: OpenMetrics text with the job's totals.
    let (status, content_type, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let metrics = parse_metrics(&body);
    let lines: u64 = texts.iter().map(|t| t.lines().count() as u64).sum();
    let bytes: u64 = texts.iter().map(|t| t.len() as u64 + 1).sum();
    assert_eq!(metrics["dfstream_batches_total"], 4.0, "{body}");
    assert_eq!(metrics["dfstream_input_rows_total"], lines as f64, "{body}");
    assert_eq!(
        metrics["dfstream_input_bytes_total"], bytes as f64,
        "{body}"
    );
    assert_eq!(metrics["dfstream_input_files_total"], 4.0, "{body}");
    assert_eq!(
        metrics["dfstream_state_rows"],
        expected.len() as f64,
        "{body}"
    );
    assert_eq!(metrics["dfstream_last_batch_id"], 3.0, "{body}");
    let on_disk = &records[3]["stateOperators"][0]["customMetrics"]["stateBytesOnDisk"];
    assert!(on_disk.as_u64().unwrap() > 0, "{:?}", records[3]);
    assert_eq!(
        metrics["dfstream_state_disk_bytes"],
        on_disk.as_f64().unwrap(),
        "{body}"
    );
    assert_eq!(
        metrics["dfstream_batch_duration_seconds_count{phase=\"trigger_execution\"}"], 4.0,
        "{body}"
    );
    assert_eq!(
        metrics["dfstream_skipped_total{what=\"long_lines\"}"], 0.0,
        "{body}"
    );
    assert!(
        !body.contains("dfstream_watermark"),
        "no watermark without --watermark: {body}"
    );

    // The page itself, and nothing but the four routes.
    let (status, content_type, page) = get(addr, "/");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(page.contains("unnest(words(lower(value)))"), "{page}");
    for path in ["/etc/passwd", "/../Cargo.toml", "/api", "/index.html"] {
        assert_eq!(get(addr, path).0, 404, "{path}");
    }
    assert_eq!(request(addr, "POST", "/api/result").0, 405);

    // Rendered by a real browser: the charts hold a point per batch and the table the result.
    let profile = tempfile::tempdir().unwrap();
    let dom = rendered(addr, profile.path());
    assert!(dom.contains(r#"id="batch">3<"#), "{dom}");
    for chart in ["rates", "durations", "state", "late", "input"] {
        assert!(
            dom.contains(&format!(r#"id="chart-{chart}" data-points="4""#)),
            "{chart}: {dom}"
        );
    }
    assert!(dom.contains(r#"id="input-latest">1<"#), "{dom}");
    assert!(
        dom.contains(&format!(r#"id="state-latest">{}<"#, expected.len())),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(r#"id="result-rows">{}<"#, expected.len())),
        "{dom}"
    );
    assert!(dom.contains("<th>word</th><th>count</th>"), "{dom}");
    for (word, count) in &expected {
        assert!(
            dom.contains(&format!("<td>{word}</td><td>{count}</td>")),
            "{word}: {dom}"
        );
    }
    assert!(dom.contains("<polyline"), "{dom}");

    // The stalled clients were cut off or are still waiting; neither held the job back.
    let _ = silent.write_all(b"\r\n");
    let _ = partial.write_all(b"\r\n");
    let log = job.stop();
    assert!(log.contains("status page at http://127.0.0.1:"), "{log}");
}

#[test]
fn a_status_page_off_loopback_needs_ui_public() {
    let ws = Workspace::new();
    ws.add_file("a.txt", "one\n");
    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--ui", "0.0.0.0:0"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--ui-public") && stderr.contains("loopback"),
        "{stderr}"
    );
    assert!(
        !ws.checkpoint.exists(),
        "refused before anything was written"
    );

    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--ui", "0.0.0.0:0", "--ui-public"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("status page at http://0.0.0.0:"),
        "{stderr}"
    );

    let out = ws.run(
        &repo("sql/wordcount.sql"),
        &["--trigger", "once", "--ui-public"],
    );
    assert_eq!(out.status.code(), Some(2), "--ui-public alone: {out:?}");
}
