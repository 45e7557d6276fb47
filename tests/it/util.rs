//! Shared test helpers: a fresh workspace per test, the real binary, reading Parquet back,
//! and the batch oracle (the same SQL run once over all input with plain DataFusion).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::datasource::MemTable;
use datafusion::prelude::ParquetReadOptions;

/// The built `dfstream` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dfstream")
}

/// A file of the repository, e.g. `sql/wordcount.sql`.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A temporary directory with `input/`, and paths for `output/` and `checkpoint/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
    pub checkpoint: PathBuf,
}

impl Workspace {
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A workspace under `parent`.
    pub fn new_in(parent: &Path) -> Self {
        std::fs::create_dir_all(parent).unwrap();
        let dir = tempfile::tempdir_in(parent).unwrap();
        let input = dir.path().join("input");
        std::fs::create_dir(&input).unwrap();
        Self {
            output: dir.path().join("output"),
            checkpoint: dir.path().join("checkpoint"),
            input,
            dir,
        }
    }

    /// Writes an input file the way producers should: a hidden name, then a rename.
    pub fn add_file(&self, name: &str, contents: impl AsRef<[u8]>) {
        let hidden = self.input.join(format!(".{name}.tmp"));
        std::fs::write(&hidden, contents).unwrap();
        std::fs::rename(&hidden, self.input.join(name)).unwrap();
    }

    /// The path the `file` column shows for an input file.
    pub fn file_column(&self, name: &str) -> String {
        self.input.join(name).display().to_string()
    }

    /// `dfstream run QUERY --input .. --output .. --checkpoint ..` plus `extra`.
    pub fn command(&self, query: &Path, extra: &[&str]) -> Command {
        self.command_of(Path::new(bin()), query, extra)
    }

    /// [`Self::command`] with another copy of the binary.
    pub fn command_of(&self, program: &Path, query: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("run")
            .arg(query)
            .arg("--input")
            .arg(&self.input)
            .arg("--output")
            .arg(&self.output)
            .arg("--checkpoint")
            .arg(&self.checkpoint)
            .args(extra)
            .env("RUST_LOG", "dfstream=info");
        cmd
    }

    /// Runs to completion; use a trigger that ends (once, available-now).
    /// [`Self::command`] with its output discarded, for jobs started in the background.
    pub fn quiet(&self, query: &Path, extra: &[&str]) -> Command {
        let mut cmd = self.command(query, extra);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    pub fn run(&self, query: &Path, extra: &[&str]) -> Output {
        self.command(query, extra).output().unwrap()
    }

    /// Committed batch ids in the checkpoint.
    pub fn commits(&self) -> Vec<u64> {
        self.batch_ids("commits")
    }

    /// Whether a job started at `started` stopped inside a batch: the newest offsets were
    /// written by it (not left by an earlier run) and are not committed.
    pub fn mid_batch_since(&self, started: std::time::SystemTime) -> bool {
        let Some(&newest) = self.batch_ids("offsets").last() else {
            return false;
        };
        let written = std::fs::metadata(self.checkpoint.join(format!("offsets/{newest}")))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started);
        written && Some(&newest) > self.commits().last()
    }

    /// Runs `query` with `args`, its steps 400 ms apart, and SIGKILLs it once a batch has
    /// begun (its offsets written, again for a re-run one); returns when it started.
    pub fn kill_once_a_batch_begins(&self, query: &Path, args: &[&str]) -> std::time::SystemTime {
        let started = std::time::SystemTime::now();
        let mut killed = self
            .quiet(query, args)
            .env("DFSTREAM_PAUSE_BETWEEN_STEPS_MS", "400")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.offsets_written_since(started) {
            assert!(Instant::now() < deadline, "no batch began");
            std::thread::sleep(Duration::from_millis(1));
        }
        killed.kill().unwrap();
        killed.wait().unwrap();
        started
    }

    /// Whether offsets were written at or after `started` (a batch began).
    pub fn offsets_written_since(&self, started: std::time::SystemTime) -> bool {
        self.batch_ids("offsets").iter().any(|id| {
            std::fs::metadata(self.checkpoint.join(format!("offsets/{id}")))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= started)
        })
    }

    /// The batch ids of the files in the checkpoint's folder `sub`, in order.
    fn batch_ids(&self, sub: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(self.checkpoint.join(sub))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Waits until batch `id` is committed.
    pub fn wait_for_commit(&self, id: u64, timeout: Duration) -> bool {
        wait_for(
            &self.checkpoint.join("commits").join(id.to_string()),
            timeout,
        )
    }
}

/// Waits until `path` exists.
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Sends signal `name` (INT, TERM, ...) to `child`.
pub fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the run's log (stderr) says `needle`, and shows the log if not.
pub fn assert_logged(output: &Output, needle: &str) {
    let log = stderr(output);
    assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
}

/// The rows of a `--format csv` answer (header skipped) as `a|b`, sorted: comparable with
/// [`sorted_rows`].
pub fn csv_rows(output: &Output) -> Vec<String> {
    let mut rows: Vec<String> = stdout(output)
        .lines()
        .skip(1)
        .map(|l| l.replace(',', "|"))
        .collect();
    rows.sort();
    rows
}

/// Asserts success and shows stderr if not.
pub fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "dfstream failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads every Parquet file under `dir` with DataFusion, as a user would.
pub fn read_parquet(dir: &Path) -> Vec<RecordBatch> {
    try_read_parquet(dir).unwrap()
}

/// Reads Parquet that a running job may be replacing: DataFusion opens a file once per range
/// it reads, so a read that overlaps an (atomic) replacement can fail; it is retried.
pub fn read_parquet_live(dir: &Path) -> Vec<RecordBatch> {
    let mut last = None;
    for _ in 0..20 {
        match try_read_parquet(dir) {
            Ok(batches) => return batches,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{}: {}", dir.display(), last.unwrap());
}

fn try_read_parquet(dir: &Path) -> datafusion::common::Result<Vec<RecordBatch>> {
    runtime().block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.read_parquet(dir.to_str().unwrap(), ParquetReadOptions::default())
            .await?
            .collect()
            .await
    })
}

/// `dfstream state --checkpoint` of the workspace running `sql`: its rows as `a|b`.
pub fn state_rows(ws: &Workspace, sql: &str) -> Vec<String> {
    let out = Command::new(bin())
        .args(["state", "--checkpoint"])
        .arg(&ws.checkpoint)
        .args(["--format", "csv", sql])
        .output()
        .unwrap();
    assert_ok(&out);
    csv_rows(&out)
}

/// Each row as `a|b|c`, in the batches' order.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    dfstream::commands::verify::rows_as_text(batches, "|")
}

/// Rows sorted, for results without ORDER BY.
pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = rows(batches);
    out.sort();
    out
}

/// One row of `lines` for the oracle.
#[derive(Debug, Clone)]
pub struct Line {
    pub value: String,
    pub ts_micros: i64,
    pub file: String,
}

/// The seeds a randomized test runs: `0..count`, or the one `DFSTREAM_SEED` names.
pub fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("DFSTREAM_SEED") {
        Ok(seed) => vec![seed.parse().expect("DFSTREAM_SEED is a number")],
        Err(_) => (0..count).collect(),
    }
}

/// Held while a randomized check runs one seed: if anything panics meanwhile (an `unwrap`
/// as much as an assertion), it prints how to replay the seed.
pub struct ReplayHint(pub u64);

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "failed with seed {0}: replay with DFSTREAM_SEED={0}",
                self.0
            );
        }
    }
}

/// The oracle: `sql` run once as a plain DataFusion batch query over all `lines`.
pub async fn batch_query(
    sql: &str,
    lines: &[Line],
    params: &[(&str, &str)],
    partitions: usize,
) -> Vec<RecordBatch> {
    // Plain DataFusion with dfstream's functions, and none of dfstream's optimizer settings
    // (its interval rewrite rule, the rules it removes): those are under test.
    let config = datafusion::prelude::SessionConfig::new().with_target_partitions(partitions);
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    dfstream::query::functions::register(&ctx);
    let schema = dfstream::batch::lines_schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                lines.iter().map(|l| &l.value),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(lines.iter().map(|l| l.ts_micros))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(lines.iter().map(|l| &l.file))),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("lines", Arc::new(table)).unwrap();
    let mut df = ctx.sql(sql).await.unwrap();
    if !params.is_empty() {
        let values: Vec<(String, datafusion::common::ScalarValue)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), dfstream::query::plan::param_value(v)))
            .collect();
        df = df.with_param_values(values).unwrap();
    }
    df.collect().await.unwrap()
}

/// The lines of a text the way dfstream reads a file (for building oracles from file text).
pub fn lines_of(text: &[u8], file: &str, ts_micros: i64) -> Vec<Line> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Line {
                value: String::from_utf8_lossy(line).into_owned(),
                ts_micros,
                file: file.to_string(),
            }
        })
        .collect()
}

/// A program the tests need from PyPI (`moto_server`, `python3` with `datafusion`): from the
/// clone's `.venv/` that the README's test command makes, else from `PATH`.
pub fn python_tool(name: &str) -> PathBuf {
    let in_venv = repo(".venv/bin").join(name);
    if in_venv.exists() {
        in_venv
    } else {
        PathBuf::from(name)
    }
}

/// A running job whose log (stderr) is read as it is written: a pipe nobody reads blocks the
/// job once about 64 KiB of log fill it.
pub struct Job {
    pub child: std::process::Child,
    log: Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Job {
    /// Spawns `command` with its stderr drained into the job's log.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Waits for the job to end; its exit status and whole log.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.log())
    }

    /// Stops the job with SIGTERM, asserts a clean exit and returns the log.
    pub fn stop(self) -> String {
        signal(&self.child, "TERM");
        let (status, log) = self.wait();
        assert!(status.success(), "{status:?}: {log}");
        log
    }
}

/// The shipped query `name` (e.g. `sql/tumbling_wordcount.sql`) reading its words after a
/// line's 20-character time stamp (lines `2026-01-01T00:00:00Z words...`).
pub fn words_after_the_time(name: &str) -> String {
    std::fs::read_to_string(repo(name))
        .unwrap()
        .replace("words(lower(value))", "words(lower(substr(value, 22)))")
}

/// [`words_after_the_time`] written into the workspace, for the binary to run.
pub fn words_after_the_time_file(ws: &Workspace, name: &str) -> PathBuf {
    let query = ws.dir.path().join(Path::new(name).file_name().unwrap());
    std::fs::write(&query, words_after_the_time(name)).unwrap();
    query
}

/// The rows of every Parquet file in `dir` so far, sorted (none while there is none).
pub fn output_rows(dir: &Path) -> Vec<String> {
    let any = std::fs::read_dir(dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet")))
    });
    if any {
        sorted_rows(&read_parquet_live(dir))
    } else {
        Vec::new()
    }
}

/// Waits (up to `timeout`) until the rows a running job has written to `dir` satisfy `done`,
/// and returns them; panics with `log()` if they never do.
pub fn wait_for_output(
    dir: &Path,
    timeout: Duration,
    done: impl Fn(&[String]) -> bool,
    log: impl Fn() -> String,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = output_rows(dir);
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the output never came:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the test holding it ends, passed or not.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "../support/servers.rs"]
pub mod servers;
pub use servers::{free_port, spawn_for_the_test_process};
