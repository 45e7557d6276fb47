//! Input, output and checkpoints on a real S3 server: `moto_server` (from PyPI's
//! `moto[server]`, which `.ci/run` installs), started here on 127.0.0.1, one per test binary;
//! each test has its own bucket. The job is the real binary; the test writes and reads objects
//! with `object_store`'s S3 client, as any other program would.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::util::{
    Line, Workspace, assert_logged, assert_ok, batch_query, bin, csv_rows, free_port, lines_of,
    repo, runtime, signal, sorted_rows, stderr, stdout,
};

/// The moto server all tests share.
struct Moto {
    port: u16,
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let mut command = Command::new(crate::util::python_tool("moto_server"));
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let result = crate::util::spawn_for_the_test_process(command, libc::SIGKILL);
        if let Err(e) = result {
            panic!(
                "cannot start moto_server ({e}): the S3 tests need it; install it as the README's \
                 test command does: python3 -m venv .venv && .venv/bin/pip install \
                 'moto[server]==5.2.*'"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { port }
    })
}

/// A fresh bucket on the shared server, and a client for it.
struct Bucket {
    name: String,
    /// Where the job reaches the server (the server itself, or a proxy in front of it).
    endpoint: String,
    client: AmazonS3,
}

impl Bucket {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "dfstream-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let port = moto().port;
        // Creating a bucket is not something object_store does: one plain request.
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name(&name)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test-secret")
            .with_allow_http(true)
            .build()
            .unwrap();
        Self {
            name,
            endpoint,
            client,
        }
    }

    /// `s3://BUCKET/prefix/`.
    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}/", self.name)
    }

    fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        let bytes: Vec<u8> = bytes.into();
        runtime()
            .block_on(
                self.client
                    .put(&ObjectPath::from(key), PutPayload::from(bytes)),
            )
            .unwrap();
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        runtime().block_on(async {
            match self.client.get(&ObjectPath::from(key)).await {
                Ok(found) => Some(found.bytes().await.unwrap().to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("{e}"),
            }
        })
    }

    fn exists(&self, key: &str) -> bool {
        runtime()
            .block_on(self.client.head(&ObjectPath::from(key)))
            .is_ok()
    }

    fn wait_for(&self, key: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.exists(key) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The rows of `key`, a Parquet object.
    fn read_parquet(&self, key: &str) -> Vec<RecordBatch> {
        let bytes = bytes::Bytes::from(self.get(key).unwrap_or_else(|| panic!("no {key}")));
        ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs `dfstream verify` over these locations and asserts that it says OK.
    fn assert_verified(&self, input: &str, output: &str, checkpoint: &str) {
        let query = repo("sql/wordcount.sql");
        let out = self
            .dfstream(&["verify", query.to_str().unwrap()])
            .args([
                "--input",
                input,
                "--output",
                output,
                "--checkpoint",
                checkpoint,
            ])
            .output()
            .unwrap();
        assert_ok(&out);
        assert!(stdout(&out).starts_with("OK"), "{}", stdout(&out));
    }

    /// A `dfstream` command with this server's endpoint and credentials in the environment,
    /// as a user would export them.
    fn dfstream(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .args(args)
            .env("RUST_LOG", "dfstream=info")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true");
        command
    }
}

/// `dfstream run sql/wordcount.sql` over `input`, `output` and `checkpoint` plus `extra`.
fn run_args<'a>(
    input: &'a str,
    output: &'a str,
    checkpoint: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let query = Box::leak(
        repo("sql/wordcount.sql")
            .display()
            .to_string()
            .into_boxed_str(),
    );
    let mut args = vec![
        "run",
        query,
        "--input",
        input,
        "--output",
        output,
        "--checkpoint",
        checkpoint,
        "--no-console",
    ];
    args.extend_from_slice(extra);
    args
}

/// Word count of `files` as one batch query (the oracle).
fn oracle(files: &[(String, String)]) -> Vec<String> {
    let lines: Vec<Line> = files
        .iter()
        .flat_map(|(name, text)| lines_of(text.as_bytes(), name, 0))
        .collect();
    let sql = std::fs::read_to_string(repo("sql/wordcount.sql")).unwrap();
    sorted_rows(&runtime().block_on(batch_query(&sql, &lines, &[], 2)))
}

/// `count` files of random words from a small vocabulary (so that counts merge).
fn random_files(rng: &mut StdRng, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let lines: Vec<String> = (0..rng.random_range(1..20))
                .map(|_| {
                    (0..rng.random_range(0..8))
                        .map(|_| format!("w{}", rng.random_range(0..30)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            (format!("f{i:03}.txt"), lines.join("\n") + "\n")
        })
        .collect()
}

#[test]
fn the_oracle_holds_with_input_output_and_checkpoint_on_s3_over_random_splits() {
    for seed in [1u64, 2] {
        let mut rng = StdRng::seed_from_u64(seed);
        let bucket = Bucket::new();
        let (input, output, checkpoint) = (
            bucket.url("incoming"),
            bucket.url("counts"),
            bucket.url("ckpt"),
        );
        let files = random_files(&mut rng, 12);
        let mut sent = 0;
        let mut runs = 0;
        while sent < files.len() {
            let chunk = rng.random_range(1..=4).min(files.len() - sent);
            for (name, text) in &files[sent..sent + chunk] {
                bucket.put(&format!("incoming/{name}"), text.as_bytes());
            }
            sent += chunk;
            let max = rng.random_range(1..=3).to_string();
            let args = run_args(
                &input,
                &output,
                &checkpoint,
                &[
                    "--trigger",
                    "available-now",
                    "--max-files-per-trigger",
                    &max,
                ],
            );
            let out = bucket.dfstream(&args).output().unwrap();
            assert_ok(&out);
            runs += 1;
            // Every trigger's complete result equals the batch query over the input so far.
            assert_eq!(
                sorted_rows(&bucket.read_parquet("counts/result.parquet")),
                oracle(&files[..sent]),
                "seed {seed}, after run {runs}"
            );
        }
        assert!(
            !bucket.exists("ckpt/lock"),
            "a clean stop releases the lease"
        );
        bucket.assert_verified(&input, &output, &checkpoint);
        let show = bucket
            .dfstream(&["checkpoint", "show", "--checkpoint", &checkpoint])
            .output()
            .unwrap();
        assert_ok(&show);
        assert!(stdout(&show).contains("last batch"), "{}", stdout(&show));
        assert!(stdout(&show).contains("commits/0"), "{}", stdout(&show));
        assert!(
            !stdout(&show).contains("test-secret") && !stderr(&show).contains("test-secret"),
            "no secret in what show prints"
        );
        // The state, read from the S3 checkpoint, is the complete-mode result.
        let state = bucket
            .dfstream(&[
                "state",
                "--checkpoint",
                &checkpoint,
                "--format",
                "csv",
                "SELECT word, count FROM state",
            ])
            .output()
            .unwrap();
        assert_ok(&state);
        assert_eq!(
            csv_rows(&state),
            oracle(&files),
            "seed {seed}: the state table"
        );
    }
}

#[test]
fn input_on_s3_with_a_local_output_and_checkpoint_gives_the_batch_answer() {
    let bucket = Bucket::new();
    let ws = Workspace::new();
    let files = random_files(&mut StdRng::seed_from_u64(7), 6);
    for (name, text) in &files {
        bucket.put(&format!("in/{name}"), text.as_bytes());
    }
    let input = bucket.url("in");
    let (output, checkpoint) = (
        ws.output.display().to_string(),
        ws.checkpoint.display().to_string(),
    );
    let args = run_args(
        &input,
        &output,
        &checkpoint,
        &["--trigger", "available-now", "--max-files-per-trigger", "2"],
    );
    assert_ok(&bucket.dfstream(&args).output().unwrap());
    assert_eq!(
        sorted_rows(&crate::util::read_parquet(&ws.output)),
        oracle(&files)
    );
    bucket.assert_verified(&input, &output, &checkpoint);
    // And the other way round: local input, output and checkpoint on S3.
    for (name, text) in &files {
        ws.add_file(name, text);
    }
    let (input, output, checkpoint) = (
        ws.input.display().to_string(),
        bucket.url("out2"),
        bucket.url("ckpt2"),
    );
    let args = run_args(&input, &output, &checkpoint, &["--trigger", "once"]);
    assert_ok(&bucket.dfstream(&args).output().unwrap());
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out2/result.parquet")),
        oracle(&files)
    );
}

#[test]
fn sigkill_at_random_moments_with_the_checkpoint_on_s3_then_restart_is_exact() {
    let mut rng = StdRng::seed_from_u64(11);
    let bucket = Bucket::new();
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    let files = random_files(&mut rng, 10);
    let mut sent = 0;
    let mut kills = 0;
    while sent < files.len() {
        let args = run_args(&input, &output, &checkpoint, &["--trigger", "100ms"]);
        let mut child = bucket
            .dfstream(&args)
            .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "40")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let chunk = rng.random_range(1..=3).min(files.len() - sent);
        for (name, text) in &files[sent..sent + chunk] {
            bucket.put(&format!("in/{name}"), text.as_bytes());
        }
        sent += chunk;
        std::thread::sleep(Duration::from_millis(rng.random_range(50..900)));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    // A restart right after a SIGKILL takes the dead job's lease over at once (same host).
    let args = run_args(
        &input,
        &output,
        &checkpoint,
        &["--trigger", "available-now"],
    );
    let out = bucket.dfstream(&args).output().unwrap();
    assert_ok(&out);
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        oracle(&files),
        "after {kills} SIGKILLs"
    );
    bucket.assert_verified(&input, &output, &checkpoint);
}

#[test]
fn a_dead_pid_on_the_same_host_name_is_taken_over_only_in_the_same_pid_namespace() {
    // A lease left by a process that is gone here: taken over at once when it was a process
    // of this machine's boot and PID namespace; another container with the same host name
    // (or an older lease that does not say) is waited out, as its pid means nothing here.
    let bucket = Bucket::new();
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    bucket.put("in/a.txt", "one\n");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let lease = |namespace: Option<String>| {
        let mut record = serde_json::json!({
            "host": host.trim(),
            "pid": dead_pid,
            "started_micros": now,
            "expires_micros": now + 600_000_000,
        });
        if let Some(namespace) = namespace {
            record["pid_namespace"] = namespace.into();
        }
        bucket.put("ck/lock", serde_json::to_vec(&record).unwrap());
    };
    let args = run_args(&input, &output, &checkpoint, &["--trigger", "once"]);
    for other in [Some(format!("{}:pid:[1]", boot.trim())), None] {
        lease(other.clone());
        let out = bucket.dfstream(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{other:?}: {}", stderr(&out));
        assert_logged(&out, &format!("pid {dead_pid}"));
    }
    lease(Some(format!("{}:{}", boot.trim(), ours.display())));
    let out = bucket.dfstream(&args).output().unwrap();
    assert_ok(&out);
    assert_logged(&out, "from a process that is gone");
}

#[test]
fn a_job_whose_lease_went_stale_stops_without_writing() {
    // A 3 s lease (renewed every second, trusted for two of them). The store is away for 4 s
    // while the job idles: its lease may have expired for others meanwhile, so once the store
    // is back the job writes nothing more, and says why.
    let mut bucket = Bucket::new();
    let proxy = Proxy::start(moto().port);
    bucket.endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let ws = Workspace::new();
    let checkpoint = bucket.url("ck");
    let output = ws.output.display().to_string();
    let input = ws.input.display().to_string();
    let args = run_args(&input, &output, &checkpoint, &["--trigger", "100ms"]);
    let job = crate::util::Job::spawn(
        bucket
            .dfstream(&args)
            .env("DFSTREAM_LEASE_SECONDS", "3")
            .env("DFSTREAM_RETRY_SECONDS", "1")
            .stdout(Stdio::null()),
    );
    ws.add_file("a.txt", "one\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bucket.exists("ck/commits/0") {
        assert!(Instant::now() < deadline, "no commit:\n{}", job.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The commit's own listings (retention, clean-up) finish; then only lease renewals need
    // the store while the job idles.
    std::thread::sleep(Duration::from_millis(1500));
    proxy.stop();
    std::thread::sleep(Duration::from_secs(4));
    proxy.restart();
    ws.add_file("b.txt", "two\n");
    let (status, log) = job.wait();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("lost the lease"), "{log}");
    assert!(
        !bucket.exists("ck/offsets/1"),
        "wrote after its lease went stale"
    );
}

#[test]
fn a_second_job_on_the_same_s3_checkpoint_is_refused_naming_the_holder() {
    let bucket = Bucket::new();
    let (input, checkpoint) = (bucket.url("in"), bucket.url("ck"));
    bucket.put("in/a.txt", "a b\n");
    let first_output = bucket.url("out1");
    let args = run_args(&input, &first_output, &checkpoint, &["--trigger", "200ms"]);
    let mut first = bucket
        .dfstream(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(bucket.wait_for("ck/commits/0", Duration::from_secs(30)));
    let second_output = bucket.url("out2");
    let args = run_args(&input, &second_output, &checkpoint, &["--trigger", "once"]);
    let out = bucket.dfstream(&args).output().unwrap();
    assert!(!out.status.success());
    assert_logged(&out, "in use by another dfstream");
    assert_logged(&out, &format!("pid {}", first.id()));
    // Two jobs must not write one output either.
    let other_checkpoint = bucket.url("ck-other");
    let args = run_args(
        &input,
        &first_output,
        &other_checkpoint,
        &["--trigger", "once"],
    );
    let out = bucket.dfstream(&args).output().unwrap();
    assert!(!out.status.success());
    assert_logged(&out, "two jobs must not write one output");
    // A clean stop releases both leases: the second job then runs.
    signal(&first, "TERM");
    assert!(first.wait().unwrap().success());
    let args = run_args(&input, &second_output, &checkpoint, &["--trigger", "once"]);
    assert_ok(&bucket.dfstream(&args).output().unwrap());
}

/// A TCP proxy in front of the S3 server that can be stopped (connections refused, open
/// ones cut) and started again on the same port: the server going away and coming back.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// Requests still to answer with HTTP 503 (throttling) instead of passing on.
    throttled: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: u16) -> Self {
        let port = free_port();
        let proxy = Proxy {
            port,
            up: Arc::new(AtomicBool::new(true)),
            open: Arc::default(),
            throttled: Arc::default(),
        };
        let (up, open) = (Arc::clone(&proxy.up), Arc::clone(&proxy.open));
        let throttled = Arc::clone(&proxy.throttled);
        std::thread::spawn(move || {
            loop {
                while !up.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
                listener.set_nonblocking(true).unwrap();
                while up.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let throttle = throttled
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            if throttle {
                                slow_down(client);
                                continue;
                            }
                            let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                            let mut open = open.lock().unwrap();
                            open.push(client.try_clone().unwrap());
                            open.push(server.try_clone().unwrap());
                            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                            pipe(server, client);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                // Down: the listener closes, and every open connection is cut.
                drop(listener);
                for conn in open.lock().unwrap().drain(..) {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                }
            }
        });
        proxy
    }

    fn stop(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    fn restart(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Answers the next `requests` connections' first request with 503 Slow Down.
    fn throttle(&self, requests: u64) {
        self.throttled.store(requests, Ordering::SeqCst);
    }
}

/// Reads a request's head and answers it as a throttling S3 server does, then hangs up.
fn slow_down(mut client: TcpStream) {
    std::thread::spawn(move || {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        let _ = write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn an_unreachable_input_is_not_idle_input() {
    // Append mode with a watermark and --idle-timeout over S3 input (checkpoint and output
    // local). While the server is away, the listing fails: that must not count as idle time,
    // else the watermark would follow the wall clock and close the window before the file
    // written meanwhile is read, whose rows would then be late.
    let mut bucket = Bucket::new();
    let proxy = Proxy::start(moto().port);
    bucket.endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let ws = crate::util::Workspace::new();
    let query = crate::util::words_after_the_time_file(&ws, "sql/tumbling_wordcount.sql");
    bucket.put("in/a.txt", "2026-01-01T00:00:00Z early\n");
    let input = bucket.url("in");
    let args = [
        "run",
        query.to_str().unwrap(),
        "--input",
        &input,
        "--output",
        ws.output.to_str().unwrap(),
        "--checkpoint",
        ws.checkpoint.to_str().unwrap(),
        "--no-console",
        "--param",
        "size=2 seconds",
        "--event-time",
        "to_timestamp(substr(value, 1, 20))",
        "--watermark",
        "1s",
        "--mode",
        "append",
        "--trigger",
        "100ms",
        "--idle-timeout",
        "300ms",
    ];
    // Listings give up retrying after 2 s, so that the outage shows soon.
    let job = crate::util::Job::spawn(
        bucket
            .dfstream(&args)
            .env("DFSTREAM_RETRY_SECONDS", "2")
            .stdout(Stdio::null()),
    );
    assert!(
        ws.wait_for_commit(0, Duration::from_secs(60)),
        "{}",
        job.log()
    );
    proxy.stop();
    // Longer than the idle timeout and the window: long enough to close it by wall clock.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.log().contains("trying again every trigger") {
        assert!(
            Instant::now() < deadline,
            "the listing never failed:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    bucket.put("in/b.txt", "2026-01-01T00:00:01Z early\n");
    proxy.restart();
    let rows = crate::util::wait_for_output(
        &ws.output,
        Duration::from_secs(60),
        |rows| !rows.is_empty(),
        || job.log(),
    );
    let log = job.stop();
    assert_eq!(
        rows,
        ["2026-01-01T00:00:00Z|2026-01-01T00:00:02Z|early|2"],
        "both files' rows in the window, none late:\n{log}"
    );
    assert!(log.contains("0 late rows dropped"), "{log}");
}

#[test]
fn the_server_going_away_mid_run_and_coming_back_costs_nothing() {
    let mut bucket = Bucket::new();
    let proxy = Proxy::start(moto().port);
    // The job reaches the server through the proxy; the test writes input directly.
    bucket.endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    let files = random_files(&mut StdRng::seed_from_u64(5), 8);
    let args = run_args(&input, &output, &checkpoint, &["--trigger", "100ms"]);
    let mut job = crate::util::Job::spawn(bucket.dfstream(&args).stdout(Stdio::null()));
    for (name, text) in &files[..4] {
        bucket.put(&format!("in/{name}"), text.as_bytes());
    }
    // The server goes away once the job is well under way (a batch committed).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bucket.exists("ck/commits/0") {
        assert!(
            Instant::now() < deadline,
            "no batch committed:\n{}",
            job.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.stop();
    for (name, text) in &files[4..] {
        bucket.put(&format!("in/{name}"), text.as_bytes());
    }
    // Longer than object_store's default retries lasted (about 2 s for a refused connection).
    std::thread::sleep(Duration::from_secs(5));
    proxy.restart();
    // The job is still running, and catches up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if job.child.try_wait().unwrap().is_some() {
            panic!("the job stopped while the server was away:\n{}", job.log());
        }
        let done = bucket.exists("out/result.parquet")
            && sorted_rows(&bucket.read_parquet("out/result.parquet")) == oracle(&files);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the job never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    job.stop();
    bucket.assert_verified(&input, &output, &checkpoint);
}

#[test]
fn an_object_replaced_after_its_batch_began_is_read_as_taken_on_replay() {
    let bucket = Bucket::new();
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    bucket.put("in/a.txt", "one two\n");
    // A batch that pauses after recording its input, killed there.
    let args = run_args(&input, &output, &checkpoint, &["--trigger", "once"]);
    let mut child = bucket
        .dfstream(&args)
        .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "3000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(bucket.wait_for("ck/offsets/0", Duration::from_secs(30)));
    child.kill().unwrap();
    child.wait().unwrap();
    bucket.put("in/a.txt", "one two\nthree four five\n");
    let out = bucket.dfstream(&args).output().unwrap();
    assert_ok(&out);
    assert_logged(&out, "another version");
    let taken = vec![("a.txt".to_string(), "one two\n".to_string())];
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        oracle(&taken)
    );
}

#[test]
fn a_missing_bucket_is_a_clear_error_naming_the_url() {
    let bucket = Bucket::new();
    let ws = Workspace::new();
    let input = "s3://no-such-bucket-here/in/";
    let (output, checkpoint) = (
        ws.output.display().to_string(),
        ws.checkpoint.display().to_string(),
    );
    let args = run_args(input, &output, &checkpoint, &["--trigger", "once"]);
    let started = Instant::now();
    let out = bucket.dfstream(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_logged(&out, "s3://no-such-bucket-here/in");
    assert!(!stderr(&out).contains("test-secret"));
    // A remote checkpoint with --socket needs a local log directory.
    let remote_checkpoint = bucket.url("ck");
    let args = run_args(
        &output,
        &output,
        &remote_checkpoint,
        &["--socket", "127.0.0.1:9"],
    );
    let out = bucket.dfstream(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "--wal-dir");
}

#[test]
fn latest_first_takes_the_newest_object_first() {
    let bucket = Bucket::new();
    let files = random_files(&mut StdRng::seed_from_u64(4), 3);
    for (name, text) in &files {
        bucket.put(&format!("in/{name}"), text.as_bytes());
        // S3 times are whole seconds.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    let args = run_args(
        &input,
        &output,
        &checkpoint,
        &[
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--latest-first",
        ],
    );
    assert_ok(&bucket.dfstream(&args).output().unwrap());
    for (batch, (name, _)) in files.iter().rev().enumerate() {
        let offsets =
            String::from_utf8(bucket.get(&format!("ck/offsets/{batch}")).unwrap()).unwrap();
        assert!(offsets.contains(name.as_str()), "batch {batch}: {offsets}");
    }
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        oracle(&files)
    );
}

#[test]
fn clean_source_archives_objects_in_the_bucket_once_no_recovery_needs_them() {
    let bucket = Bucket::new();
    let files = random_files(&mut StdRng::seed_from_u64(3), 6);
    for (name, text) in &files {
        bucket.put(&format!("in/{name}"), text.as_bytes());
    }
    let (input, output, checkpoint, archive) = (
        bucket.url("in"),
        bucket.url("out"),
        bucket.url("ck"),
        bucket.url("archive"),
    );
    let args = run_args(
        &input,
        &output,
        &checkpoint,
        &[
            "--trigger",
            "available-now",
            "--max-files-per-trigger",
            "1",
            "--snapshot-interval",
            "1",
            "--retain-batches",
            "1",
            "--clean-source",
            "archive",
            "--archive-dir",
            &archive,
        ],
    );
    let out = bucket.dfstream(&args).output().unwrap();
    assert_ok(&out);
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        oracle(&files)
    );
    // Objects of batches no recovery can re-run were moved, whole, into the archive; the
    // newest batches' stay until later commits.
    let archived: Vec<&(String, String)> = files
        .iter()
        .filter(|(name, _)| bucket.exists(&format!("archive/{name}")))
        .collect();
    assert!(archived.len() >= 4, "{} archived", archived.len());
    for (name, text) in &archived {
        assert_eq!(
            bucket.get(&format!("archive/{name}")).unwrap(),
            text.as_bytes()
        );
        assert!(!bucket.exists(&format!("in/{name}")), "{name} moved");
    }
    // An archive elsewhere than the input's bucket is refused before anything runs.
    let elsewhere = "s3://another-bucket/archive/";
    let mut refused = args.clone();
    let at = refused.iter().position(|a| *a == archive.as_str()).unwrap();
    refused[at] = elsewhere;
    let out = bucket.dfstream(&refused).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "same bucket");
}

#[test]
fn throttling_answers_are_retried_and_storage_options_replace_the_environment() {
    let bucket = Bucket::new();
    let proxy = Proxy::start(moto().port);
    let files = random_files(&mut StdRng::seed_from_u64(9), 4);
    for (name, text) in &files {
        bucket.put(&format!("in/{name}"), text.as_bytes());
    }
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    // Endpoint and credentials only as --storage-option, none in the environment.
    let endpoint = format!("endpoint=http://127.0.0.1:{}", proxy.port);
    let mut args = run_args(
        &input,
        &output,
        &checkpoint,
        &["--trigger", "available-now"],
    );
    args.extend([
        "--storage-option",
        &endpoint,
        "--storage-option",
        "access_key_id=test",
        "--storage-option",
        "secret_access_key=hunter2-secret",
        "--storage-option",
        "region=us-east-1",
        "--storage-option",
        "allow_http=true",
    ]);
    proxy.throttle(6);
    // Six throttled answers in a row can hold a lease renewal back (with backoff) past the
    // two thirds of a 30 s lease after which a job stops writing; this test is about the
    // retries, so the lease is long.
    let out = Command::new(bin())
        .args(&args)
        .env("RUST_LOG", "debug")
        .env("DFSTREAM_LEASE_SECONDS", "120")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(
        proxy.throttled.load(Ordering::SeqCst),
        0,
        "all 503s were sent"
    );
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        oracle(&files)
    );
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains("hunter2-secret"), "a secret in the output");
    }
    let metadata = String::from_utf8_lossy(&bucket.get("ck/metadata").unwrap()).into_owned();
    assert!(!metadata.contains("hunter2-secret"), "{metadata}");
    // An unknown option is refused before anything runs.
    let mut bad = args.clone();
    bad.extend(["--storage-option", "no_such_setting=1"]);
    let out = Command::new(bin()).args(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_logged(&out, "no_such_setting");
}

#[test]
fn json_input_and_a_static_table_on_s3_with_the_table_replaced_mid_run() {
    let bucket = Bucket::new();
    bucket.put(
        "in/a.json",
        "{\"word\":\"the\"}\n{\"word\":\"cat\"}\n{\"word\":\"and\"}\n",
    );
    bucket.put("ref/stop.csv", "word\nthe\n");
    let ws = Workspace::new();
    std::fs::write(
        ws.dir.path().join("q.sql"),
        "SELECT w.word, count(*) AS count FROM lines AS w \
         WHERE w.word NOT IN (SELECT s.word FROM stopwords AS s) GROUP BY w.word",
    )
    .unwrap();
    let q = ws.dir.path().join("q.sql").display().to_string();
    let table = format!("stopwords=s3://{}/ref/stop.csv", bucket.name);
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    let run = || {
        bucket
            .dfstream(&[
                "run",
                &q,
                "--input",
                &input,
                "--output",
                &output,
                "--checkpoint",
                &checkpoint,
                "--format",
                "json",
                "--schema",
                "word VARCHAR",
                "--table",
                &table,
                "--trigger",
                "once",
                "--no-console",
            ])
            .output()
            .unwrap()
    };
    assert_ok(&run());
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        ["and|1", "cat|1"]
    );
    bucket.put("ref/stop.csv", "word\nand\n");
    bucket.put("in/b.json", "{\"word\":\"the\"}\n{\"word\":\"and\"}\n");
    assert_ok(&run());
    assert_eq!(
        sorted_rows(&bucket.read_parquet("out/result.parquet")),
        ["and|1", "cat|1", "the|1"]
    );
}

#[test]
fn partitioned_csv_output_on_s3_is_written_once_per_batch() {
    let bucket = Bucket::new();
    bucket.put(
        "in/a.json",
        "{\"word\":\"cat\",\"n\":1}\n{\"word\":\"dog\",\"n\":2}\n{\"word\":\"cat\",\"n\":3}\n\
         {\"word\":\"12:30\",\"n\":4}\n",
    );
    let ws = Workspace::new();
    let query = ws.dir.path().join("q.sql");
    std::fs::write(&query, "SELECT word, n FROM lines").unwrap();
    let q = query.display().to_string();
    let (input, output, checkpoint) = (bucket.url("in"), bucket.url("out"), bucket.url("ck"));
    let args = [
        "run",
        &q,
        "--input",
        &input,
        "--output",
        &output,
        "--checkpoint",
        &checkpoint,
        "--format",
        "json",
        "--schema",
        "word VARCHAR, n BIGINT",
        "--output-format",
        "csv",
        "--partition-by",
        "word",
        "--trigger",
        "once",
        "--no-console",
    ];
    assert_ok(&bucket.dfstream(&args).output().unwrap());
    let cat =
        String::from_utf8(bucket.get("out/word=cat/batch-000000000000.csv").unwrap()).unwrap();
    assert_eq!(cat, "n\n1\n3\n");
    let dog =
        String::from_utf8(bucket.get("out/word=dog/batch-000000000000.csv").unwrap()).unwrap();
    assert_eq!(dog, "n\n2\n");
    // A value with a `:` is escaped once, as on a local disk.
    let key = ObjectPath::parse("out/word=12%3A30/batch-000000000000.csv").unwrap();
    let time = runtime().block_on(async {
        let found = bucket.client.get(&key).await.unwrap();
        found.bytes().await.unwrap()
    });
    assert_eq!(&time[..], b"n\n4\n");
}
