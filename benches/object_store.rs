//! Word count over the same corpus from local disk and from an S3 server on loopback
//! (`moto_server`, from PyPI's `moto[server]`), in one run: MB/s of each and their ratio.
//! The job reads objects with ranged GETs; the server is the yardstick's other half, so the
//! ratio shows what reading through `object_store` costs against the page cache. Every run's
//! result is checked, outside its timing, word for word against a hand-written word count
//! of the local files.
//!
//! ```text
//! cargo bench --bench object_store                  # 200 MB over 16 files
//! cargo bench --bench object_store -- --size-mb 50
//! ```

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use common::{Counts, check_word_counts, count_words_in_files, read_parquet, size_mb_arg};

fn main() {
    let size_mb = size_mb_arg(200);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dfstream-bench-s3");
    let corpus = root.join(format!("corpus-{size_mb}mb"));
    if !corpus.join("_done").exists() {
        let _ = std::fs::remove_dir_all(&corpus);
        let status = Command::new(env!("CARGO_BIN_EXE_dfstream"))
            .args(["generate", "batch"])
            .arg(&corpus)
            .args([
                "--size",
                &format!("{size_mb}MB"),
                "--files",
                "16",
                "--seed",
                "1",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(corpus.join("_done"), "").unwrap();
    }
    let files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    let bytes: u64 = files.iter().map(|p| p.metadata().unwrap().len()).sum();
    let mb = bytes as f64 / 1e6;

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server: python3 -m venv .venv && .venv/bin/pip install 'moto[server]'"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    create_bucket(port, "bench");
    let client = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_bucket_name("bench")
        .with_region("us-east-1")
        .with_access_key_id("bench")
        .with_secret_access_key("bench")
        .with_allow_http(true)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for path in &files {
        let key = ObjectPath::from(format!(
            "corpus/{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        let bytes = std::fs::read(path).unwrap();
        runtime
            .block_on(client.put(&key, PutPayload::from(bytes)))
            .unwrap();
    }
    println!(
        "corpus: {} files, {mb:.1} MB, on local disk and on moto_server at {endpoint}",
        files.len()
    );
    // The yardstick's answer: the files the runs' --glob '*.txt' selects, counted by hand.
    let inputs: Vec<PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .cloned()
        .collect();
    let expected = count_words_in_files(&inputs, 2);
    let mut local = f64::MAX;
    let mut remote = f64::MAX;
    for _ in 0..3 {
        local = local.min(run(
            &root,
            &corpus.display().to_string(),
            &endpoint,
            &expected,
        ));
        remote = remote.min(run(&root, "s3://bench/corpus/", &endpoint, &expected));
    }
    println!("local disk : {local:6.2} s  {:7.1} MB/s", mb / local);
    println!("S3 (moto)  : {remote:6.2} s  {:7.1} MB/s", mb / remote);
    println!("ratio S3 / local MB/s: {:.2}", local / remote);
    drop(server);
}

/// One `--trigger available-now` word count over `input`; its time in seconds. Its result is
/// checked against `expected` (after the timing).
fn run(root: &Path, input: &str, endpoint: &str, expected: &Counts) -> f64 {
    let work = root.join("run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let query = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/wordcount.sql");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_dfstream"))
        .arg("run")
        .arg(&query)
        .args(["--input", input, "--glob", "*.txt"])
        .arg("--checkpoint")
        .arg(work.join("checkpoint"))
        .arg("--output")
        .arg(work.join("output"))
        .args(["--trigger", "available-now", "--no-console"])
        .env("RUST_LOG", "warn")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .status()
        .unwrap();
    assert!(status.success());
    let secs = start.elapsed().as_secs_f64();
    check_word_counts(
        &format!("word count over {input}"),
        expected,
        &read_parquet(&[work.join("output/result.parquet")]),
    );
    secs
}

fn create_bucket(port: u16, name: &str) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The server, stopped when the bench ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` from the clone's `.venv/` (the README's test command makes it), else `PATH`.
fn moto_server() -> std::path::PathBuf {
    let in_venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if in_venv.exists() {
        in_venv
    } else {
        "moto_server".into()
    }
}
