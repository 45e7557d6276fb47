//! Command-line flags, parsed by clap into a validated [`RunConfig`]. Every flag value is
//! checked here, with a message naming the flag, so later code never re-checks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::query::OutputMode;
use crate::query::plan::Params;
use crate::storage::Location;

#[derive(Debug, Parser)]
#[command(
    name = "dfstream",
    version,
    about = "Streaming SQL over files with Apache DataFusion: each trigger runs a SQL query \
             over the new lines and merges the result into checkpointed state."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a query over new files in a directory, trigger after trigger.
    Run(RunArgs),
    /// Check the streaming output against the same query run once as a batch over every
    /// file the checkpoint says was taken. Prints OK (exit 0) or the differing rows (exit 1).
    Verify(VerifyArgs),
    /// Inspect a checkpoint.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Delete a checkpoint's contents so that the next run starts over.
    Reset(ResetArgs),
    /// Generate input: files (continuous, batch, single) or a line server (serve).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// The original example's file mode: word count over IN with Parquet into OUT, a batch
    /// every TRIGGER_SECONDS (default: as soon as files arrive). Any `run` flag may follow.
    File {
        input: PathBuf,
        output: PathBuf,
        /// An optional trigger interval in seconds, then any `dfstream run` flags, e.g.
        /// `10 --checkpoint DIR` or `--trigger available-now`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "[TRIGGER_SECONDS] [RUN FLAGS]"
        )]
        run_flags: Vec<String>,
    },
    /// The original example's window mode: sliding-window word count over IN into OUT with
    /// window SIZE and SLIDE (e.g. "1 minute" "30 seconds"). Any `run` flag may follow.
    Window {
        input: PathBuf,
        output: PathBuf,
        size: String,
        slide: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "RUN FLAGS"
        )]
        run_flags: Vec<String>,
    },
    /// The original example's socket mode: word count over lines from HOST:PORT. Any `run`
    /// flag may follow.
    Socket {
        host: String,
        port: u16,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "RUN FLAGS"
        )]
        run_flags: Vec<String>,
    },
    /// A generator and the word-count job together, with live counts, until Ctrl-C.
    Demo(DemoArgs),
    /// Run one SQL query over files (e.g. the job's Parquet output) and print the result:
    /// dfstream sql "SELECT * FROM 'output/' ORDER BY count DESC LIMIT 10".
    Sql(SqlArgs),
    /// Check a query and its run flags without reading input, and print how it would run as
    /// a stream (mode, state, per-trigger plan): exit 0 if it would run, 2 if not.
    Explain(RunArgs),
    /// Query a checkpoint's state as the table `state` (read-only; also while a job runs):
    /// dfstream state --checkpoint checkpoint/ "SELECT word, count FROM state ORDER BY count DESC LIMIT 10".
    State(StateArgs),
    /// Run an Apache DataFusion Ballista scheduler or executor that knows dfstream's
    /// functions and plan nodes, for `run --engine ballista://HOST:PORT` (built with the
    /// `ballista` feature).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ballista's scheduler: takes jobs from drivers and hands their tasks to executors.
    Scheduler {
        /// The address to listen on.
        #[arg(long, default_value = "0.0.0.0:50050")]
        bind: std::net::SocketAddr,
        /// The host name executors reach the scheduler by (they report task status to it).
        /// Default: --bind's address, or this machine's host name when that is 0.0.0.0 or ::.
        #[arg(long)]
        external_host: Option<String>,
        /// An executor silent (no heartbeat) for this many seconds is lost: its tasks run
        /// again on others.
        #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(2..))]
        executor_timeout: u64,
        #[command(flatten)]
        stores: ClusterStores,
    },
    /// Ballista's executor: runs tasks, reading the triggers' input itself.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// The address to listen on for Arrow Flight (shuffle reads); port 0 picks one.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: std::net::SocketAddr,
        /// The port of the executor's gRPC service (on --bind's address).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// The host name the scheduler and other executors reach this executor by. Default:
        /// the address the scheduler sees it connect from.
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks run at once. Default: the number of cores.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds between heartbeats to the scheduler (below its --executor-timeout).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        heartbeat_interval: u64,
        /// Where shuffle files go. Default: a temporary directory.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        #[command(flatten)]
        stores: ClusterStores,
    },
}

/// The object stores a scheduler or executor reads triggers' input from.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterStores {
    /// An object store the jobs' input may be in, as a URL (s3://bucket, gs://bucket,
    /// az://container); repeatable; the scheduler and every executor need it (the scheduler
    /// reads the plan's files as it splits it). Local paths need no flag.
    #[arg(long = "store", value_name = "URL")]
    pub stores: Vec<String>,
    /// A setting for the object store clients (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// SQL over the table `state`. Default: its first rows.
    pub query: Option<String>,
    #[arg(long, default_value = "checkpoint")]
    pub checkpoint: PathBuf,
    /// The state as of this committed batch (while its files are retained). Default: the
    /// latest committed batch.
    #[arg(long)]
    pub batch: Option<u64>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
    /// A setting for the object store client (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// A file every INTERVAL_SECONDS for DURATION_SECONDS, LINES lines each.
    Continuous {
        dir: PathBuf,
        interval_seconds: f64,
        duration_seconds: f64,
        lines: Option<usize>,
        #[command(flatten)]
        shape: ShapeArgs,
    },
    /// FILES files of LINES lines (or --size bytes over --files files).
    Batch {
        dir: PathBuf,
        files: Option<usize>,
        lines: Option<usize>,
        /// Total size, e.g. 200MB, spread over the files (instead of a line count).
        #[arg(long, value_parser = parse_bytes)]
        size: Option<usize>,
        /// Number of files (instead of the FILES argument).
        #[arg(long = "files", value_name = "N")]
        file_count: Option<usize>,
        #[command(flatten)]
        shape: ShapeArgs,
    },
    /// One file of LINES lines.
    Single {
        dir: PathBuf,
        lines: Option<usize>,
        #[command(flatten)]
        shape: ShapeArgs,
    },
    /// A line server for socket mode: each client gets its own stream.
    Serve {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 9999)]
        port: u16,
        /// Lines per second to each client; 0 sends as fast as the client reads.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        #[command(flatten)]
        shape: ShapeArgs,
    },
}

/// What generated lines look like.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// The same seed gives the same bytes. Default: from the clock (and logged).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A file of words, most frequent first (default: a built-in streaming vocabulary).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Lines per file (instead of the LINES argument).
    #[arg(long)]
    pub lines_per_file: Option<usize>,
    /// Words per line, MIN..MAX.
    #[arg(long, default_value = "5..15", value_parser = parse_range)]
    pub words_per_line: (usize, usize),
    /// Prefix each line with an ISO-8601 event time.
    #[arg(long)]
    pub event_time: bool,
    /// Event times lag up to this much behind the clock, at random (e.g. 10s).
    #[arg(long, value_parser = parse_duration)]
    pub disorder: Option<Duration>,
    /// Fraction of lines whose event time is late (behind by twice --disorder plus a minute).
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// file (word counts), window (window counts) or socket (the line server and socket source).
    #[arg(long, default_value = "file")]
    pub mode: String,
    /// Where to put input/, output/ and checkpoint/ (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How often the generator writes a file.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub every: Duration,
    /// Lines per generated file.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
}

#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// The query; files and directories can be named as tables: FROM 'output/'.
    pub query: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Print the query, the committed batches and their input, the state size and the files.
    Show(ShowArgs),
    /// Set aside the input of batch N, a batch that fails at every start (its files or log
    /// ranges stay recorded and taken, and are listed by `checkpoint show`): the next start
    /// commits batch N as empty and runs the rest.
    SkipBatch(SkipBatchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SkipBatchArgs {
    /// The batch to set aside: one started but not committed.
    pub batch: u64,
    #[arg(long, default_value = "checkpoint")]
    pub checkpoint: PathBuf,
    /// A setting for the object store client (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The query file the job runs.
    pub query: PathBuf,
    #[arg(long, default_value = "input")]
    pub input: PathBuf,
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, default_value = "checkpoint")]
    pub checkpoint: PathBuf,
    /// The same --param values the job runs with.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The same --max-line-bytes the job runs with.
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    pub max_line_bytes: usize,
    /// A setting for the object store client (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
    /// Run the batch query on a Ballista cluster (see `run --engine`): the executors read
    /// the input. Default: here.
    #[arg(long, default_value = "local", value_name = "ENGINE")]
    pub engine: crate::query::engine::EngineChoice,
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[arg(long, default_value = "checkpoint")]
    pub checkpoint: PathBuf,
    /// A setting for the object store client (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The socket source's log directory, when the job ran with `--wal-dir`: its segments
    /// are deleted too.
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// A setting for the object store client (see `dfstream run --help`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The query file: one SELECT over the table `lines` (value, ts, file).
    pub query: PathBuf,
    /// Directory to watch for new files: a local path, or a URL (s3://bucket/prefix/,
    /// file://, gs://, az://). Default: input, unless --socket is given.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Also read lines from a TCP server (HOST:PORT), e.g. `nc -lk 9999` or
    /// `dfstream generate serve`. Lines are logged in the checkpoint before they count.
    #[arg(long, value_name = "HOST:PORT")]
    pub socket: Option<String>,
    /// Also write results as files under this directory (a local path or a URL): Parquet,
    /// or --output-format.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The format of --output's files: parquet, csv (with a header) or json (JSON lines).
    #[arg(long, value_enum, default_value = "parquet", requires = "output")]
    pub output_format: crate::sink::files::OutputFormat,
    /// Append mode: write each batch's rows into Hive-style directories by these columns
    /// (COL,... : `col=VALUE/batch-N.EXT`), as Spark's partitionBy.
    #[arg(
        long,
        value_name = "COL,...",
        value_delimiter = ',',
        requires = "output"
    )]
    pub partition_by: Vec<String>,
    /// Also write results to a database table:
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB?table=[SCHEMA.]TABLE` (missing parts from
    /// the PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE variables). Append mode inserts;
    /// update mode upserts by the GROUP BY key; complete mode replaces the rows. Each batch
    /// is written exactly once, with its id in the table `dfstream_commits`.
    #[arg(long, value_name = "URL")]
    pub sink: Option<String>,
    /// Where to keep progress and state, so that a restart continues (a local path or a
    /// URL: on an object store, commits are conditional PUTs and the lock is a lease).
    #[arg(long, default_value = "checkpoint")]
    pub checkpoint: PathBuf,
    /// Write one JSON record per batch (Spark's StreamingQueryProgress names) to this file,
    /// appending; `-` for stderr.
    #[arg(long, value_name = "FILE")]
    pub progress: Option<PathBuf>,
    /// Serve a status page at this address (e.g. 127.0.0.1:4040): charts over the recent
    /// batches, the latest result, the query and its plan; JSON at /api/progress and
    /// /api/result, Prometheus metrics at /metrics. Port 0 picks a free one (logged).
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<std::net::SocketAddr>,
    /// Let --ui listen on an address other than loopback (the page shows the query, its
    /// results and metrics to whoever can reach it).
    #[arg(long, requires = "ui")]
    pub ui_public: bool,
    /// Where the socket source logs lines before they count: a local directory. Default:
    /// `wal` in a local --checkpoint (required with a checkpoint on an object store).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// A setting for the object store client, as object_store's builders name them (e.g.
    /// endpoint=http://127.0.0.1:9000, region=us-east-1, allow_http=true); repeatable.
    /// Credentials are best left in the environment (AWS_ACCESS_KEY_ID, ...).
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub storage_options: Vec<(String, String)>,
    /// When to run a batch: 0 or continuous (as soon as there is new data), an interval such
    /// as 500ms, 10s or 1m, once (one batch of what is there, then exit) or available-now
    /// (everything there now, in as many batches as --max-files-per-trigger needs, then exit).
    #[arg(long, default_value = "0", value_parser = parse_trigger)]
    pub trigger: Trigger,
    /// Which rows each trigger emits. Default: complete for aggregations, append otherwise.
    #[arg(long, value_enum)]
    pub mode: Option<OutputMode>,
    /// Make `ts` the event time: a SQL expression over the line, e.g.
    /// "to_timestamp(split_part(value, ' ', 1))" for lines that begin with an ISO-8601 time.
    /// Lines where it is NULL or fails are skipped and counted. With --format csv, json or
    /// parquet: the name of a column holding timestamps.
    #[arg(long, value_name = "EXPR")]
    pub event_time: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// A static table the query can join with: NAME=FILE, a .csv (with a header), .json
    /// (JSON lines) or .parquet file, local or a URL; repeatable. A changed file is read again
    /// before the next batch; each batch records the version it joined with.
    #[arg(long = "table", value_name = "NAME=FILE", value_parser = parse_param)]
    pub tables: Vec<(String, String)>,
    /// Event-time watermark delay (e.g. 10s): rows more than this behind the largest `ts`
    /// seen are late, dropped and counted; windows ending at or before the watermark are final
    /// (emitted once in append mode, and removed from the state in append and update modes).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub watermark: Option<Duration>,
    /// With a watermark: when no input arrives for this long, advance the watermark by the
    /// wall-clock time that passed, so open windows close although the source is idle.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// With --trigger once or available-now: when the input is done, close every open window
    /// (for backfills). The checkpoint is then finished: later rows would all be late.
    #[arg(long)]
    pub final_flush: bool,
    /// Rows shown per batch on the console.
    #[arg(long, default_value_t = 20)]
    pub num_rows: usize,
    /// Do not print batches on the console.
    #[arg(long)]
    pub no_console: bool,
    /// A value for a `$name` placeholder in the query: --param name=value (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// At most this many socket lines per batch (bounds a batch when input outpaces it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_rows: Option<u64>,
    /// At most this many new files per batch.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_files_per_trigger: Option<u64>,
    /// About this many bytes of new files per batch (Spark's maxBytesPerTrigger): files are
    /// taken until the next would pass it, always at least one. Bounds a backfill's batches
    /// (and, with a cluster engine, its jobs) by size; with --max-files-per-trigger, the
    /// tighter of the two.
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_bytes_per_trigger: Option<usize>,
    /// Once no recovery can need a taken file any more (its batch is committed and older than
    /// the checkpoint history kept, see --retain-batches): delete it, or move it into
    /// --archive-dir (Spark's cleanSource). Default: leave it.
    #[arg(long, value_enum, default_value = "off")]
    pub clean_source: CleanSource,
    /// Where --clean-source archive moves files (the same name, under this directory).
    #[arg(long)]
    pub archive_dir: Option<PathBuf>,
    /// With a backlog, take the newest files first (Spark's latestFirst): with
    /// --max-files-per-trigger, the first batches hold the most recent data.
    #[arg(long)]
    pub latest_first: bool,
    /// Take only files whose names match this glob, e.g. '*.txt'.
    #[arg(long)]
    pub glob: Option<String>,
    /// Forget files this much older than the newest file taken, and ignore such old files
    /// when they appear (e.g. 7d, 12h), so memory stays bounded. Default: remember every file.
    #[arg(long, value_parser = parse_duration)]
    pub max_file_age: Option<Duration>,
    /// Longer lines are skipped and counted (e.g. 16MiB, 64KiB, 1000); with --format csv or
    /// json a longer record is malformed (see --on-error).
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    pub max_line_bytes: usize,
    /// Parallelism: files read and aggregated at once. Default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..1025))]
    pub partitions: Option<u64>,
    /// Commit finished batches (state delta and commit record) at most this often; batches
    /// in between are re-run from their logged input after a crash. 0 commits every batch.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Write a full state snapshot every this many batches (deltas in between).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_interval: u64,
    /// Keep checkpoint files of at least this many recent batches.
    #[arg(long, default_value_t = 100)]
    pub retain_batches: u64,
    /// Where each trigger's reading and partial aggregation runs: local (this process),
    /// ballista://HOST:PORT (an Apache DataFusion Ballista cluster started with `dfstream
    /// cluster`), or ballista-standalone[:N] (a scheduler and N executors in this process).
    /// Offsets, state, checkpoints and sinks stay here. Needs the `ballista` feature.
    #[arg(long, default_value = "local", value_name = "ENGINE")]
    pub engine: crate::query::engine::EngineChoice,
    /// With a cluster engine: triggers with less input than this run locally (a cluster
    /// job costs scheduling and a shuffle write).
    #[arg(long, default_value = "32MiB", value_parser = parse_byte_count, value_name = "BYTES")]
    pub cluster_min_bytes: usize,
    /// With a cluster engine: also send triggers of at least this many input files (or log
    /// ranges) to the cluster, whatever their bytes (many small files cost many opens).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub cluster_min_files: Option<u64>,
}

/// The input's format and columns (see `format`).
#[derive(Debug, Clone, Default, Args)]
pub struct FormatArgs {
    /// How input files (and socket lines) become rows: text (a line is a row, in `value`),
    /// csv, json (JSON lines: one object per line) or parquet.
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::format::FormatKind,
    /// The columns of csv, json or parquet input, as SQL: 'ts TIMESTAMP, page VARCHAR,
    /// user_id BIGINT' (nested: 'user STRUCT(id BIGINT, name VARCHAR), tags VARCHAR[]').
    #[arg(long, value_name = "COLUMNS", conflicts_with_all = ["schema_from", "infer_schema"])]
    pub schema: Option<String>,
    /// Read --schema's column list from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "infer_schema")]
    pub schema_from: Option<PathBuf>,
    /// Infer the columns from the first input file (by name) at the first start, and keep
    /// them in the checkpoint: later starts use the same columns whatever arrives.
    #[arg(long)]
    pub infer_schema: bool,
    /// CSV: the first line of each file is a header, not data.
    #[arg(long)]
    pub header: bool,
    /// CSV: the field delimiter (one ASCII character; `\t` or `tab` for a tab). Default `,`.
    #[arg(long, value_parser = parse_ascii_char)]
    pub delimiter: Option<u8>,
    /// CSV: the quote character. Default `"` (a doubled quote inside quotes is one quote).
    #[arg(long, value_parser = parse_ascii_char)]
    pub quote: Option<u8>,
    /// CSV: the escape character inside quotes (e.g. `\\`). Default: none.
    #[arg(long, value_parser = parse_ascii_char)]
    pub escape: Option<u8>,
    /// CSV: a field that is exactly this is NULL (an empty field always is), e.g. NA.
    #[arg(long)]
    pub null_value: Option<String>,
    /// csv and json: a record that does not fit the columns is kept with its raw text in
    /// `_corrupt_record` and NULL columns (permissive, Spark's PERMISSIVE), skipped (drop,
    /// DROPMALFORMED) or fails the batch (fail, FAILFAST). Always counted and logged.
    #[arg(long, value_enum)]
    pub on_error: Option<crate::format::OnError>,
    /// csv and json: keep every malformed record, with its file, line, byte offset and
    /// reason, as JSON lines in this local directory (one file per batch).
    #[arg(long, value_name = "DIR")]
    pub bad_records: Option<PathBuf>,
    /// The stream table's name in the query. Default: lines.
    #[arg(long, default_value = "lines")]
    pub name: String,
}

/// One ASCII character (`\t` or `tab` for a tab).
fn parse_ascii_char(text: &str) -> Result<u8, String> {
    match text {
        "\\t" | "tab" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!("'{text}' is not one ASCII character")),
    }
}

/// What `--clean-source` does with a file no recovery can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CleanSource {
    Off,
    Delete,
    Archive,
}

/// When batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every interval; zero means as soon as new data arrives.
    Interval(Duration),
    /// One batch of what is there, then exit.
    Once,
    /// Everything there at start, in batches of --max-files-per-trigger, then exit.
    AvailableNow,
    /// A batch as soon as input arrives (a line on the socket, a file in the directory),
    /// formed from whatever arrived while the previous batch ran.
    Continuous,
}

/// `--checkpoint` (and the like) as given on the command line, opened.
pub fn location(
    path: &std::path::Path,
    what: &str,
    options: &crate::storage::StorageOptions,
) -> Result<Location, crate::error::Error> {
    Location::parse(&path.to_string_lossy(), what, options)
}

/// The validated settings of `dfstream run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub args: RunArgs,
    pub params: Params,
    pub partitions: usize,
    /// `--input` (or `input/` without it or `--socket`), opened.
    pub input: Option<Location>,
    /// `--output`, opened.
    pub output: Option<Location>,
    /// `--checkpoint`, opened.
    pub checkpoint: Location,
    /// Where the socket source's log is, with `--socket`.
    pub wal_dir: Option<PathBuf>,
    /// `--archive-dir`, opened.
    pub archive_dir: Option<Location>,
}

impl RunArgs {
    /// Checks what clap cannot check one flag at a time.
    pub fn validate(self) -> Result<RunConfig, crate::error::Error> {
        let mut params = Params::new();
        for (name, value) in &self.params {
            if params.insert(name.clone(), value.clone()).is_some() {
                return Err(crate::error::Error::Usage(format!(
                    "--param {name} is given twice"
                )));
            }
        }
        if let Some(address) = &self.socket {
            check_socket_address(address)?;
        }
        if let Some(address) = self.ui {
            crate::ui::check_address(address, self.ui_public)?;
        }
        let usage = |m: String| Err(crate::error::Error::Usage(m));
        let ends = matches!(self.trigger, Trigger::Once | Trigger::AvailableNow);
        if self.final_flush && !ends {
            return usage(format!(
                "--final-flush closes open windows when the input is done, which only a \
                 --trigger once or available-now job reaches (this one runs with --trigger {})",
                self.trigger
            ));
        }
        if self.final_flush && self.watermark.is_none() {
            return usage(
                "--final-flush closes the windows a --watermark keeps open; without a \
                 --watermark there are none"
                    .into(),
            );
        }
        if let Some(idle) = self.idle_timeout {
            if self.watermark.is_none() {
                return usage(format!(
                    "--idle-timeout {idle:?} advances a --watermark while input is idle; \
                     without a --watermark it does nothing"
                ));
            }
            if ends {
                return usage(format!(
                    "--idle-timeout {idle:?} acts while a job waits for input; a --trigger {} \
                     job does not wait (use --final-flush to close windows at the end)",
                    self.trigger
                ));
            }
        }
        match (self.clean_source, &self.archive_dir) {
            (CleanSource::Archive, None) => {
                return usage("--clean-source archive needs --archive-dir DIR".into());
            }
            (CleanSource::Off | CleanSource::Delete, Some(dir)) => {
                return usage(format!(
                    "--archive-dir {} is used only with --clean-source archive",
                    dir.display()
                ));
            }
            (CleanSource::Archive, Some(dir)) => {
                let input = self.input.clone().unwrap_or_else(|| "input".into());
                let same = |a: &std::path::Path, b: &std::path::Path| {
                    std::fs::canonicalize(a)
                        .ok()
                        .zip(std::fs::canonicalize(b).ok())
                        .is_some_and(|(a, b)| a == b)
                };
                if same(dir, &input) {
                    return usage(format!(
                        "--archive-dir {} is the input directory itself",
                        dir.display()
                    ));
                }
            }
            _ => {}
        }
        if self.clean_source != CleanSource::Off && self.input.is_none() && self.socket.is_some() {
            return usage(
                "--clean-source acts on --input files; this job reads only a socket".into(),
            );
        }
        if self.latest_first && self.max_file_age.is_some() {
            return usage(
                "--latest-first with --max-file-age would ignore the backlog: the newest file \
                 taken first makes every older one look too old (Spark ignores maxFileAge \
                 then); use one of them"
                    .into(),
            );
        }
        let open = |path: &std::path::Path, what: &str| location(path, what, &self.storage_options);
        let input = match (&self.input, &self.socket) {
            (Some(dir), _) => Some(open(dir, "--input")?),
            (None, None) => Some(Location::Local("input".into())),
            (None, Some(_)) => None,
        };
        let output = self
            .output
            .as_deref()
            .map(|o| open(o, "--output"))
            .transpose()?;
        let checkpoint = open(&self.checkpoint, "--checkpoint")?;
        if let Location::Local(dir) = &checkpoint
            && dir.exists()
            && !dir.is_dir()
        {
            return usage(format!(
                "--checkpoint {} is a file; a checkpoint is a directory",
                dir.display()
            ));
        }
        let wal_dir = match (&self.socket, &self.wal_dir, &checkpoint) {
            (None, Some(dir), _) => {
                return usage(format!(
                    "--wal-dir {} holds the --socket source's log; this job reads no socket",
                    dir.display()
                ));
            }
            (None, None, _) => None,
            (Some(_), Some(dir), _) => Some(dir.clone()),
            (Some(_), None, Location::Local(dir)) => Some(dir.join("wal")),
            (Some(_), None, Location::Remote(remote)) => {
                return usage(format!(
                    "--socket with --checkpoint {} needs --wal-dir DIR: the socket's lines are \
                     logged on a local disk before they count, and a checkpoint on an object \
                     store cannot hold that log (lines survive a crash of dfstream, but not \
                     the loss of that disk)",
                    remote.url
                ));
            }
        };
        let archive_dir = self
            .archive_dir
            .as_deref()
            .map(|a| open(a, "--archive-dir"))
            .transpose()?;
        match (&input, &archive_dir) {
            (Some(Location::Local(_)), Some(Location::Remote(_))) => {
                return usage(
                    "--archive-dir for a local --input is a local directory (files are moved)"
                        .into(),
                );
            }
            (Some(Location::Remote(input)), Some(archive)) => {
                let bucket = |url: &str| url.split('/').take(3).collect::<Vec<_>>().join("/");
                let same =
                    matches!(archive, Location::Remote(a) if bucket(&a.url) == bucket(&input.url));
                if archive.describe() == input.url {
                    return usage(format!(
                        "--archive-dir {} is the input prefix itself",
                        input.url
                    ));
                }
                if !same {
                    return usage(format!(
                        "--archive-dir {} must be in the same bucket as --input {} (objects \
                         are archived with a server-side copy)",
                        archive.describe(),
                        input.url
                    ));
                }
            }
            _ => {}
        }
        let partitions = self.partitions.map(|p| p as usize).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Ok(RunConfig {
            args: self,
            params,
            input,
            output,
            checkpoint,
            wal_dir,
            archive_dir,
            partitions,
        })
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Interval(d) if d.is_zero() => f.write_str("0"),
            Trigger::Interval(d) => write!(f, "{d:?}"),
            Trigger::Once => f.write_str("once"),
            Trigger::AvailableNow => f.write_str("available-now"),
            Trigger::Continuous => f.write_str("continuous"),
        }
    }
}

/// `HOST:PORT` with a port from 1 to 65535 (the host is looked up when connecting).
pub fn check_socket_address(address: &str) -> Result<(), crate::error::Error> {
    let port = address
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port))) if !host.is_empty() && port > 0 => Ok(()),
        _ => Err(crate::error::Error::Usage(format!(
            "--socket {address}: expected HOST:PORT with a port from 1 to 65535"
        ))),
    }
}

pub fn parse_trigger(text: &str) -> Result<Trigger, String> {
    match text {
        "once" => Ok(Trigger::Once),
        "available-now" | "availablenow" => Ok(Trigger::AvailableNow),
        "continuous" => Ok(Trigger::Continuous),
        _ => parse_duration(text).map(Trigger::Interval).map_err(|e| {
            format!("{e}; use 0, an interval such as 500ms, 10s or 1m, once, available-now or continuous")
        }),
    }
}

/// `0`, `500ms`, `10s`, `1.5s`, `1m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" | "sec" | "secs" | "second" | "seconds" => number,
        "m" | "min" | "mins" | "minute" | "minutes" => number * 60.0,
        "h" | "hour" | "hours" => number * 3600.0,
        "d" | "day" | "days" => number * 86400.0,
        other => return Err(format!("unknown unit '{other}' in '{text}'")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// `MIN..MAX` (or one number).
pub fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (lo, hi) = text.split_once("..").unwrap_or((text, text));
    let lo: usize = lo
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not MIN..MAX"))?;
    let hi: usize = hi
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not MIN..MAX"))?;
    if lo > hi {
        return Err(format!("'{text}': MIN is larger than MAX"));
    }
    Ok((lo, hi))
}

pub fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))?;
    let name = name.trim().trim_start_matches('$');
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!(
            "'{name}' is not a parameter name (letters, digits, _)"
        ));
    }
    use datafusion::common::ScalarValue;
    if crate::query::plan::is_whole_number(value)
        && !matches!(
            crate::query::plan::param_value(value),
            ScalarValue::Int64(_) | ScalarValue::Decimal128(..)
        )
    {
        return Err(format!(
            "'{value}' is a whole number of more than 38 digits, which no SQL number type \
             here holds exactly (the widest is DECIMAL(38, 0))"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// `1000`, `64KiB`, `16MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    match parse_byte_count(text)? {
        0 => Err("must be at least 1 byte".to_string()),
        n => Ok(n),
    }
}

/// A byte count as [`parse_bytes`] reads it, 0 allowed.
pub fn parse_byte_count(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a whole number"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit '{other}' in '{text}'")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse() {
        assert_eq!(parse_trigger("0"), Ok(Trigger::Interval(Duration::ZERO)));
        assert_eq!(
            parse_trigger("500ms"),
            Ok(Trigger::Interval(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_trigger("1m"),
            Ok(Trigger::Interval(Duration::from_secs(60)))
        );
        assert_eq!(parse_trigger("once"), Ok(Trigger::Once));
        assert_eq!(parse_trigger("available-now"), Ok(Trigger::AvailableNow));
        assert!(parse_trigger("10").is_err());
        assert!(parse_trigger("5 parsecs").is_err());
    }

    #[test]
    fn bytes_and_params_parse() {
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("1XB").is_err());
        assert_eq!(
            parse_param("size=1 minute"),
            Ok(("size".into(), "1 minute".into()))
        );
        assert!(parse_param("nope").is_err());
    }
}
