//! Wires the pipeline and runs the trigger loop: source → batch → query → state → sinks.
//!
//! Per batch, in this order: the batch's files are recorded in the checkpoint (offsets), the
//! query runs over them, the sinks write the result, the state delta is stored, and the batch
//! is committed. A batch started but not committed by an earlier run is re-run first, with the
//! same files. Owns shutdown: Ctrl-C or SIGTERM ends the loop between batches.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::batch::{TextCounters, TextCountersSnapshot};
use crate::cli::{CleanSource, RunConfig, Trigger};
use crate::error::{Context, Result};
use crate::query::lines::{TriggerFile, TriggerSlot};
use crate::query::plan::QueryFile;
use crate::query::{QuerySpec, StreamingQuery};
use crate::sink::console::ConsoleSink;
use crate::sink::parquet::ParquetSink;
use crate::sink::{Sink, SinkBatch};
use crate::source::dir::{Cleanup, DirSource, NewFile};
use crate::source::socket::{SocketSource, WalPosition, WalRange};
use crate::state::checkpoint::{Checkpoint, Commit, FORMAT_VERSION, Metadata, Offsets};

/// How often an idle `--trigger 0` lists the directory when no event arrives.
const IDLE_LISTING: Duration = Duration::from_millis(1000);

/// What a run did, for the final log line and for tests.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub batches: u64,
    pub counters: TextCountersSnapshot,
}

/// Runs `dfstream run` until the trigger says stop or `shutdown` resolves.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<RunSummary> {
    let mut job = Job::start(&config).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_signal = Arc::clone(&stop);
    let stopped = Arc::new(Notify::new());
    let stopped_on_signal = Arc::clone(&stopped);
    let wake = Arc::clone(&job.wake);
    let mut shutdown = std::pin::pin!(async move {
        shutdown.await;
        log::info!("stopping after the current batch");
        stop_on_signal.store(true, Ordering::SeqCst);
        stopped_on_signal.notify_one();
        std::future::pending::<()>().await
    });
    let max_files = config.args.max_files_per_trigger.map(|m| m as usize);
    let max_rows = config.args.max_batch_rows;
    let work = async {
        for offsets in std::mem::take(&mut job.replay) {
            log::info!(
                "re-running batch {} ({} files, {} log ranges) that an earlier run did not finish",
                offsets.batch_id,
                offsets.files.len(),
                offsets.wal.len()
            );
            job.run(offsets).await?;
        }
        match config.args.trigger {
            Trigger::Once => {
                let names = job.list_files()?;
                let files = job.take_files(&names, None);
                let wal = job.take_wal(None)?;
                if !files.is_empty() || !wal.is_empty() {
                    job.run_batch(files, wal, None).await?;
                }
            }
            Trigger::AvailableNow => {
                // Everything there now: the files listed and the lines logged at start.
                let mut names = job.list_files()?;
                let mut wal = job.take_wal(None)?;
                while !stop.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let files = job.take_files(&names, max_files);
                    names.drain(..files.len());
                    if files.is_empty() && wal.is_empty() {
                        break;
                    }
                    job.run_batch(files, std::mem::take(&mut wal), None).await?;
                }
            }
            Trigger::Interval(_) | Trigger::Continuous => {
                let interval = match config.args.trigger {
                    Trigger::Interval(interval) => interval,
                    _ => Duration::ZERO,
                };
                let idle_timeout = config.args.idle_timeout;
                let mut last_input = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    // Let the shutdown future run: without a yield, a loop whose awaits are
                    // all ready at once would never hand control back, and a signal would
                    // wait until input stops.
                    tokio::task::yield_now().await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let started = Instant::now();
                    let names = job.list_files()?;
                    let files = job.take_files(&names, max_files);
                    let wal = job.take_wal(max_rows)?;
                    let ran = !files.is_empty() || !wal.is_empty();
                    if ran {
                        job.run_batch(files, wal, None).await?;
                        last_input = Instant::now();
                    } else if let (Some(idle), Some(watermark)) =
                        (idle_timeout, job.query.slot().watermark())
                        && last_input.elapsed() >= idle
                        && job.query.state().is_some_and(|s| !s.is_empty())
                    {
                        // No input for a while: let event time follow the wall clock, so
                        // open windows close although the source is idle.
                        let advanced =
                            watermark.saturating_add(last_input.elapsed().as_micros() as i64);
                        log::info!(
                            "idle for {:?}: advancing the watermark by wall-clock time",
                            last_input.elapsed()
                        );
                        job.run_batch(Vec::new(), Vec::new(), Some(advanced))
                            .await?;
                        last_input = Instant::now();
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut next = if interval.is_zero() {
                        if ran {
                            continue; // more may have arrived meanwhile
                        }
                        started + IDLE_LISTING
                    } else {
                        started + interval
                    };
                    if let Some(idle) = idle_timeout {
                        next = next.min((last_input + idle).max(started));
                    }
                    let commit_at = job.commit_deadline();
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = wake.notified(), if interval.is_zero() => {}
                        _ = stopped.notified() => {}
                        _ = tokio::time::sleep_until(commit_at.unwrap_or(next).into()), if commit_at.is_some() => {
                            job.commit().await?;
                        }
                    }
                }
            }
        }
        let ends = matches!(config.args.trigger, Trigger::Once | Trigger::AvailableNow);
        if config.args.final_flush && ends && !stop.load(Ordering::SeqCst) {
            // Backfill: the input is complete, so every open window is final.
            log::info!("--final-flush: closing every open window");
            job.run_batch(Vec::new(), Vec::new(), Some(i64::MAX))
                .await?;
        }
        job.commit().await?;
        Ok::<_, crate::error::Error>(())
    };
    tokio::select! {
        result = work => result?,
        _ = &mut shutdown => unreachable!("the shutdown future never completes"),
    }
    let counters = job.counters.snapshot();
    let socket_long_lines = job
        .socket
        .as_ref()
        .map_or(0, |s| s.counters.long_lines.load(Ordering::Relaxed));
    log::info!(
        "done: {} batches; {} rows from {} bytes; {} lines decoded lossily, {} long lines skipped, {} files vanished, {} files changed after they were taken, {} lines without an event time, {} late rows dropped",
        job.batches_run,
        counters.rows,
        counters.bytes,
        counters.lossy_lines,
        counters.long_lines + socket_long_lines,
        counters.vanished_files,
        counters.changed_files,
        counters.bad_event_times,
        counters.late_rows
    );
    Ok(RunSummary {
        batches: job.batches_run,
        counters,
    })
}

/// A started pipeline.
struct Job {
    query: StreamingQuery,
    /// The directory source (`--input`), if any.
    source: Option<DirSource>,
    /// The socket source (`--socket`), if any.
    socket: Option<SocketSource>,
    /// Signalled when a source has new input.
    wake: Arc<Notify>,
    /// Where the socket log's taken lines end (recorded in each commit).
    wal_end: Option<WalPosition>,
    /// Batches run but not yet committed (`--checkpoint-interval`), oldest first.
    uncommitted: Vec<Uncommitted>,
    /// Whether one of them asked for a snapshot.
    snapshot_due: bool,
    last_commit: Instant,
    checkpoint_interval: Duration,
    checkpoint: Checkpoint,
    sinks: Vec<Box<dyn Sink>>,
    counters: Arc<TextCounters>,
    /// The id the next batch gets.
    next_batch: u64,
    /// Batches an earlier run recorded but did not commit, to re-run first.
    replay: Vec<Offsets>,
    /// What `--clean-source` does with files no recovery can need.
    cleanup: Option<Cleanup>,
    /// With `--clean-source`: the files of committed batches, by batch, until no recovery
    /// can re-run that batch.
    to_clean: BTreeMap<u64, Vec<String>>,
    batches_run: u64,
    /// Test aid: sleep this long between the steps of a batch, so that a crash test can kill
    /// the process inside each step (`DFSTREAM_PAUSE_BETWEEN_STEPS_MS`).
    step_pause: Option<Duration>,
}

impl Job {
    /// Plans the query, opens source, checkpoint and sinks, and restores committed progress.
    async fn start(config: &RunConfig) -> Result<Self> {
        let args = &config.args;
        let file = QueryFile::read(&args.query)?;
        let counters = Arc::new(TextCounters::default());
        let slot = TriggerSlot::new(Arc::clone(&counters), args.max_line_bytes);
        let mut query = StreamingQuery::plan(
            QuerySpec {
                file: &file,
                params: &config.params,
                mode: args.mode,
                partitions: config.partitions,
                event_time: args.event_time.as_deref(),
                watermark: args.watermark,
            },
            slot,
        )
        .await?;
        let wake = Arc::new(Notify::new());
        let input = match (&args.input, &args.socket) {
            (Some(dir), _) => Some(dir.clone()),
            (None, None) => Some(std::path::PathBuf::from("input")),
            (None, Some(_)) => None,
        };
        let mut source = input
            .as_deref()
            .map(|dir| {
                DirSource::open(
                    dir,
                    args.glob.as_deref(),
                    args.max_file_age,
                    Arc::clone(&wake),
                )
                .map(|source| source.latest_first(args.latest_first))
            })
            .transpose()?;
        let state_schema = query.state_schema();
        let meta = Metadata {
            format_version: FORMAT_VERSION,
            query_id: String::new(),
            query_file: args.query.display().to_string(),
            sql: file.sql.clone(),
            params: config.params.clone(),
            mode: query.mode().to_string(),
            event_time: args.event_time.clone(),
            watermark: args.watermark.map(|w| format!("{w:?}")),
            state_schema: state_schema.as_ref().map(|s| s.to_string()),
            output_schema: query.output_schema().to_string(),
            inputs: Some(
                source
                    .iter()
                    .map(|s| format!("directory {}", s.identity().display()))
                    .chain(args.socket.iter().map(|_| "socket".to_string()))
                    .collect(),
            ),
        };
        let checkpoint = Checkpoint::open(
            &args.checkpoint,
            &meta,
            args.snapshot_interval,
            args.retain_batches,
        )?;
        let recovered = checkpoint.recover(state_schema.as_ref())?;
        for rows in recovered.state {
            query.restore_state(rows)?;
        }
        if let Some(watermark) = recovered.watermark {
            query.slot().restore_watermark(watermark);
            query.forget_closed_windows()?;
        }
        let cleanup = match args.clean_source {
            CleanSource::Off => None,
            CleanSource::Delete => Some(Cleanup::Delete),
            CleanSource::Archive => args.archive_dir.clone().map(Cleanup::Archive),
        };
        // With --clean-source: the files of committed batches whose offsets are kept wait
        // until no recovery can re-run their batch; taken files whose batch's offsets are gone
        // can go now (a crash may have come between a commit and its cleanup).
        let mut to_clean: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut clean_now = Vec::new();
        if cleanup.is_some()
            && let Some(last) = recovered.last_commit
        {
            let kept: Vec<u64> = checkpoint
                .kept_batches()?
                .into_iter()
                .filter(|&b| b <= last)
                .collect();
            for &batch in &kept {
                if let Some(offsets) = checkpoint.offsets(batch) {
                    to_clean.insert(batch, offsets.files.into_iter().map(|f| f.name).collect());
                }
            }
            // Files of batches whose offsets were pruned, but only when the kept history is
            // whole (no damaged or missing offsets in it) and a commit can be restored without
            // batch 0's: then no recovery can re-run those batches or take their files again.
            let whole = kept
                .first()
                .is_some_and(|&first| to_clean.len() as u64 == last - first + 1);
            if whole && checkpoint.oldest_restorable()?.is_some() {
                let waiting: HashSet<&String> = to_clean.values().flatten().collect();
                clean_now.extend(
                    recovered
                        .taken
                        .keys()
                        .filter(|name| !waiting.contains(name))
                        .cloned(),
                );
            }
        }
        // Only the restored batches' files: a replayed batch's files are marked as it runs, so
        // a sources snapshot written during the replay never lists a batch not yet re-run.
        if let Some(source) = &mut source {
            source.mark_taken(recovered.taken);
        }
        // The log is taken up to where the restored batch ended; each replayed batch moves
        // that on as it runs. (Starting past the replays would skip the lines of a replay
        // batch whose offsets turn out damaged, and commit a log end no batch has reached.)
        let wal_end = recovered.wal_taken;
        let replay_end = recovered
            .replay
            .iter()
            .flat_map(|o| o.wal.iter().map(WalRange::end_position))
            .max();
        let socket = args
            .socket
            .as_deref()
            .map(|address| {
                SocketSource::start(
                    address,
                    &args.checkpoint.join("wal"),
                    wal_end.unwrap_or_default(),
                    replay_end.unwrap_or_default(),
                    args.max_line_bytes,
                    Arc::clone(&wake),
                )
            })
            .transpose()?;
        let next_batch = recovered.last_commit.map_or(0, |c| c + 1);
        let recovered_damage = recovered.damaged;
        if recovered_damage {
            log::warn!("the next commit writes a full snapshot, so the damage does not linger");
        }
        if let Some(last) = recovered.last_commit {
            log::info!(
                "resuming from {} after batch {last}: {} files already taken, {} groups in state",
                args.checkpoint.display(),
                source.as_ref().map_or(0, |s| s.taken_count()),
                query.state().map_or(0, |s| s.len())
            );
        }
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if !args.no_console {
            sinks.push(Box::new(ConsoleSink::new(std::io::stdout(), args.num_rows)));
        }
        if let Some(output) = &args.output {
            sinks.push(Box::new(ParquetSink::open(output)?));
        }
        // Anything after the restored and replayable batches cannot be reproduced: drop it.
        let first_unrecoverable = next_batch + recovered.replay.len() as u64;
        checkpoint.discard_from(first_unrecoverable)?;
        for sink in &mut sinks {
            sink.discard_from(first_unrecoverable)?;
        }
        let inputs: Vec<String> = input
            .iter()
            .map(|d| d.display().to_string())
            .chain(args.socket.iter().map(|s| format!("socket {s}")))
            .collect();
        log::info!(
            "running {} in {} mode over {} (trigger {:?}, {} partitions)",
            args.query.display(),
            query.mode(),
            inputs.join(" and "),
            args.trigger,
            config.partitions
        );
        let mut job = Self {
            query,
            source,
            socket,
            wake,
            wal_end,
            uncommitted: Vec::new(),
            snapshot_due: recovered_damage,
            last_commit: Instant::now(),
            checkpoint_interval: args.checkpoint_interval,
            checkpoint,
            sinks,
            counters,
            next_batch,
            replay: recovered.replay,
            batches_run: 0,
            cleanup,
            to_clean,
            step_pause: std::env::var("DFSTREAM_PAUSE_BETWEEN_STEPS_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
        };
        if let (Some(how), Some(source)) = (&job.cleanup, &job.source) {
            source.clean(&clean_now, how);
        }
        job.clean_unneeded()?;
        Ok(job)
    }

    fn list_files(&mut self) -> Result<Vec<String>> {
        match &mut self.source {
            Some(source) => source.available(),
            None => Ok(Vec::new()),
        }
    }

    fn take_files(&mut self, names: &[String], max: Option<usize>) -> Vec<NewFile> {
        match &mut self.source {
            Some(source) => source.take(names, max),
            None => Vec::new(),
        }
    }

    fn take_wal(&mut self, max_rows: Option<u64>) -> Result<Vec<WalRange>> {
        match &mut self.socket {
            Some(socket) => socket.take(
                max_rows,
                crate::source::dir::micros_since_epoch(std::time::SystemTime::now()),
            ),
            None => Ok(Vec::new()),
        }
    }

    /// Runs a new batch over `files` and `wal` at the current time; `force_watermark`
    /// (recorded with the input, so a replay does the same) moves the watermark first: idle
    /// time, or a final flush.
    async fn run_batch(
        &mut self,
        files: Vec<NewFile>,
        wal: Vec<WalRange>,
        force_watermark: Option<i64>,
    ) -> Result<()> {
        let now = crate::source::dir::micros_since_epoch(std::time::SystemTime::now());
        self.run(Offsets {
            batch_id: self.next_batch,
            files,
            wal,
            force_watermark,
            skipped: false,
            trigger_micros: Some(now),
        })
        .await
    }

    /// Runs batch `offsets.batch_id` over exactly its recorded input, at its recorded time
    /// (a replay of a batch recorded without one runs at the current time).
    async fn run(&mut self, mut offsets: Offsets) -> Result<()> {
        let batch_id = self.next_batch;
        let started = Instant::now();
        let before = self.counters.snapshot();
        offsets.batch_id = batch_id;
        let trigger_micros = *offsets.trigger_micros.get_or_insert_with(|| {
            crate::source::dir::micros_since_epoch(std::time::SystemTime::now())
        });
        self.checkpoint.write_offsets(&offsets)?;
        self.query.slot().clock().set(trigger_micros);
        if let Some(watermark) = offsets.force_watermark {
            self.query.slot().restore_watermark(watermark);
        }
        pause(self.step_pause).await;
        let mut inputs = Vec::new();
        if let Some(source) = &mut self.source {
            source.mark_taken(
                offsets
                    .files
                    .iter()
                    .map(|f| (f.name.clone(), f.mtime_micros)),
            );
            let dir = source.dir();
            inputs.extend(offsets.files.iter().map(|f| TriggerFile {
                path: dir.join(&f.name),
                display: dir.join(&f.name).display().to_string(),
                ts_micros: f.ts_micros,
                range: None,
                size: f.size,
            }));
        }
        if let Some(socket) = &mut self.socket {
            for range in &offsets.wal {
                inputs.push(TriggerFile {
                    path: socket.segment_path(range.segment),
                    display: socket.address().to_string(),
                    ts_micros: range.ts_micros,
                    range: Some((range.start, range.end)),
                    size: None,
                });
                socket.mark_taken(range.end_position());
            }
            self.wal_end = Some(socket.taken());
        }
        if offsets.skipped {
            log::warn!(
                "batch {batch_id}: its input was set aside by `dfstream checkpoint skip-batch` \
                 ({}); it runs and commits without it",
                offsets.describe_input()
            );
            inputs.clear();
        }
        self.query.slot().set(inputs);
        let output =
            self.query
                .run_trigger()
                .await
                .map_err(|source| crate::error::Error::BatchFailed {
                    batch_id,
                    inputs: offsets.describe_input(),
                    checkpoint: self.checkpoint.dir().to_path_buf(),
                    source: Box::new(source),
                })?;
        let queried = started.elapsed();
        pause(self.step_pause).await;
        let sink_batch = SinkBatch {
            batch_id,
            mode: self.query.mode(),
            schema: self.query.output_schema(),
            rows: &output.rows,
        };
        for sink in &mut self.sinks {
            sink.write(&sink_batch)?;
            pause(self.step_pause).await;
        }
        let groups = self.query.state().map_or(0, |s| s.len() as u64);
        let counts = self.counters.snapshot() - before;
        self.snapshot_due |= self.checkpoint.wants_snapshot(batch_id);
        self.uncommitted.push(Uncommitted {
            files: offsets.files.iter().map(|f| f.name.clone()).collect(),
            delta: output.state_delta.clone(),
            commit: Commit {
                batch_id,
                committed_at_micros: 0,
                input_files: offsets.files.len() as u64,
                input_rows: counts.rows,
                input_bytes: counts.bytes,
                output_rows: sink_batch.num_rows() as u64,
                state_groups: groups,
                wal_end: self.wal_end,
                watermark: self.query.slot().watermark(),
            },
        });
        let t = output.timings;
        log::info!(
            "batch {batch_id}: {} files, {} rows ({} late), {} bytes -> {} result rows, {} groups; \
             {:.1} ms (read {:.1}, aggregate {:.1}, merge {:.1}, emit {:.1}, sinks+checkpoint {:.1})",
            offsets.files.len(),
            counts.rows,
            counts.late_rows,
            counts.bytes,
            sink_batch.num_rows(),
            groups,
            ms(started.elapsed()),
            counts.read_nanos as f64 / 1e6,
            ms(t.aggregate),
            ms(t.merge),
            ms(t.emit),
            ms(started.elapsed() - queried),
        );
        self.next_batch += 1;
        self.batches_run += 1;
        if self.last_commit.elapsed() >= self.checkpoint_interval {
            self.commit().await?;
        }
        Ok(())
    }
}

impl Job {
    /// With `--clean-source`: deletes or archives the input files of committed batches that
    /// no recovery can re-run any more (older than the oldest commit it could restore).
    fn clean_unneeded(&mut self) -> Result<()> {
        let (Some(how), Some(source)) = (&self.cleanup, &self.source) else {
            return Ok(());
        };
        let Some(oldest) = self.checkpoint.oldest_restorable()? else {
            return Ok(());
        };
        let keep = self.to_clean.split_off(&(oldest.batch_id + 1));
        let done = std::mem::replace(&mut self.to_clean, keep);
        source.clean(done.values().flatten(), how);
        Ok(())
    }

    /// When the uncommitted batches must be committed, if there are any.
    fn commit_deadline(&self) -> Option<Instant> {
        (!self.uncommitted.is_empty()).then(|| self.last_commit + self.checkpoint_interval)
    }

    /// Makes the finished batches durable: their state deltas (and a snapshot when one is
    /// due), then their commits, in order. Input was made durable (offsets) before each ran.
    async fn commit(&mut self) -> Result<()> {
        let uncommitted = std::mem::take(&mut self.uncommitted);
        let Some(last) = uncommitted.last().map(|u| u.commit.batch_id) else {
            return Ok(());
        };
        for batch in &uncommitted {
            if let Some(delta) = &batch.delta {
                self.checkpoint
                    .write_state_delta(batch.commit.batch_id, delta)?;
                pause(self.step_pause).await;
            }
        }
        if std::mem::take(&mut self.snapshot_due) {
            let state = match self.query.state() {
                Some(state) => Some(
                    state
                        .live_rows()
                        .context(|| "reading the state for a snapshot".into())?,
                ),
                None => None,
            };
            let empty = Default::default();
            let taken = self.source.as_ref().map_or(&empty, |s| s.taken());
            self.checkpoint
                .write_snapshot(last, state.as_ref(), taken)?;
        }
        let now = crate::source::dir::micros_since_epoch(std::time::SystemTime::now());
        for batch in uncommitted {
            self.checkpoint.commit(&Commit {
                committed_at_micros: now,
                ..batch.commit
            })?;
            if self.cleanup.is_some() {
                self.to_clean.insert(batch.commit.batch_id, batch.files);
            }
        }
        self.clean_unneeded()?;
        if let (Some(socket), Some(end)) = (&self.socket, self.wal_end) {
            // Not just up to `end`: a recovery that falls back past damaged files re-runs
            // older batches, whose lines must still be in the log.
            socket.committed(self.checkpoint.oldest_restart_wal()?.min(end));
        }
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// A batch whose output is written but whose state and commit are not yet durable.
struct Uncommitted {
    /// The names of the batch's input files (for `--clean-source`).
    files: Vec<String>,
    delta: Option<datafusion::arrow::array::RecordBatch>,
    commit: Commit,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn pause(step_pause: Option<Duration>) {
    if let Some(pause) = step_pause {
        tokio::time::sleep(pause).await;
    }
}

/// Resolves on the first Ctrl-C or SIGTERM; a second one ends the process at once.
pub async fn shutdown_signal() {
    signal().await;
    log::info!("stopping: finishing the current batch (Ctrl-C again stops at once)");
    tokio::spawn(async {
        signal().await;
        eprintln!("dfstream: stopped at once; an unfinished batch is re-run on the next start");
        std::process::exit(130);
    });
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
