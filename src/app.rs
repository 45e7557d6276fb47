//! Wires the pipeline and runs the trigger loop: source → batch → query → state → sinks.
//!
//! Per batch, in this order: each source takes its part of the input, the parts are recorded
//! in the checkpoint (offsets), the query runs over them, the sinks write the result, the
//! state delta is stored, and the batch is committed. A batch started but not committed by an
//! earlier run is re-run first, with the same input. Knows sources only through
//! [`Source`]: what a part holds is each source's business. Owns shutdown: Ctrl-C or SIGTERM
//! ends the loop between batches.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::batch::{TextCounters, TextCountersSnapshot};
use crate::cli::{RunConfig, Trigger};
use crate::error::{Context, Error, Result};
use crate::progress::{
    BacklogBar, BatchProgress, Durations, EventTime, IdleEvent, InputCounts, Ms, ProgressWriter,
    SinkProgress, SourceInput, SourceProgress, StateMetrics, StateOperator,
};
use crate::query::lines::TriggerSlot;
use crate::query::plan::QueryFile;
use crate::query::{QuerySpec, StreamingQuery};
use crate::sink::{Sink, SinkBatch};
use crate::source::{self, InputUnit, Restorable, Restored, Source};
use crate::state::checkpoint::{
    Checkpoint, Commit, FORMAT_VERSION, Metadata, Offsets, Recovered, SourceParts,
};

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
    let work = async {
        for offsets in std::mem::take(&mut job.replay) {
            log::info!(
                "re-running batch {} ({}) that an earlier run did not finish",
                offsets.batch_id,
                source::describe_parts(&offsets.sources)
            );
            job.run(offsets).await?;
        }
        match config.args.trigger {
            Trigger::Once => {
                let parts = job.take(false).await?;
                if !parts.is_empty() {
                    job.run_batch(parts, None).await?;
                }
            }
            Trigger::AvailableNow => {
                // Everything there now: the files listed and the lines logged at start.
                for source in &mut job.sources {
                    source.bound_to_available_now().await?;
                }
                let backlog = job.backlog();
                let bar = backlog
                    .filter(|_| config.args.progress.as_deref() != Some(std::path::Path::new("-")))
                    .and_then(|(files, bytes)| BacklogBar::start(files, bytes))
                    .map(Arc::new);
                let files_done = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let ticker = bar.clone().map(|bar| {
                    let counters = Arc::clone(&job.counters);
                    let files_done = Arc::clone(&files_done);
                    let start = counters.bytes.load(Ordering::Relaxed);
                    tokio::spawn(async move {
                        loop {
                            bar.update(
                                counters.bytes.load(Ordering::Relaxed) - start,
                                files_done.load(Ordering::Relaxed),
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    })
                });
                while !stop.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let parts = job.take(true).await?;
                    if parts.is_empty() {
                        break;
                    }
                    job.run_batch(parts, None).await?;
                    if let (Some((total, _)), Some((left, _))) = (backlog, job.backlog()) {
                        files_done.store(total - left, Ordering::Relaxed);
                    }
                }
                if let (Some(ticker), Some(bar)) = (ticker, bar) {
                    ticker.abort();
                    let (files, bytes) = backlog.unwrap_or_default();
                    bar.update(bytes, files - job.backlog().map_or(0, |b| b.0));
                    bar.finish();
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
                    let parts = job.take(true).await?;
                    let ran = !parts.is_empty();
                    if !ran {
                        job.idle()?;
                    }
                    if ran {
                        job.run_batch(parts, None).await?;
                        last_input = Instant::now();
                    } else if !job.sources.iter().all(|s| s.saw_everything()) {
                        // Input that cannot be seen is not idle input: the idle time
                        // starts again once it can.
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
                        job.run_batch(SourceParts::new(), Some(advanced)).await?;
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
                    // Wait for the next trigger; a commit falling due meanwhile is written
                    // without starting a batch early.
                    loop {
                        let commit_at = job.commit_deadline();
                        tokio::select! {
                            _ = tokio::time::sleep_until(next.into()) => break,
                            _ = wake.notified(), if interval.is_zero() => break,
                            _ = stopped.notified() => break,
                            _ = tokio::time::sleep_until(commit_at.unwrap_or(next).into()), if commit_at.is_some() => {
                                job.commit().await?;
                            }
                        }
                    }
                }
            }
        }
        let ends = matches!(config.args.trigger, Trigger::Once | Trigger::AvailableNow);
        if config.args.final_flush && ends && !stop.load(Ordering::SeqCst) {
            // Backfill: the input is complete, so every open window is final.
            log::info!("--final-flush: closing every open window");
            job.run_batch(SourceParts::new(), Some(i64::MAX)).await?;
        }
        job.commit().await?;
        Ok::<_, crate::error::Error>(())
    };
    tokio::select! {
        result = work => result?,
        _ = &mut shutdown => unreachable!("the shutdown future never completes"),
    }
    let counters = job.counters.snapshot();
    log::info!(
        "done: {} batches; {} rows from {} bytes; {} lines decoded lossily, {} long lines skipped, {} files vanished, {} files changed after they were taken, {} lines without an event time, {} late rows dropped, {} malformed records",
        job.batches_run,
        counters.rows,
        counters.bytes,
        counters.lossy_lines,
        counters.long_lines,
        counters.vanished_files,
        counters.changed_files,
        counters.bad_event_times,
        counters.late_rows,
        counters.malformed_records
    );
    let batches = job.batches_run;
    job.close().await;
    Ok(RunSummary { batches, counters })
}

/// A started pipeline.
struct Job {
    query: StreamingQuery,
    /// Where input comes from (`--input`, `--socket`).
    sources: Vec<Box<dyn Source>>,
    /// Signalled when a source has new input.
    wake: Arc<Notify>,
    /// Batches run but not yet committed (`--checkpoint-interval`), oldest first.
    uncommitted: Vec<Uncommitted>,
    /// Whether one of them asked for a snapshot.
    snapshot_due: bool,
    /// Whether recovery worked around damage and no snapshot was written since: the next
    /// commit must write one (a failed batch then commits nothing early, see [`Self::run`]).
    repair_due: bool,
    last_commit: Instant,
    checkpoint_interval: Duration,
    checkpoint: Checkpoint,
    sinks: Vec<Box<dyn Sink>>,
    counters: Arc<TextCounters>,
    /// The id the next batch gets.
    next_batch: u64,
    /// Batches an earlier run recorded but did not commit, to re-run first.
    replay: Vec<Offsets>,
    batches_run: u64,
    /// Test aid: sleep this long between the steps of a batch, so that a crash test can kill
    /// the process inside each step (`DFSTREAM_PAUSE_BETWEEN_STEPS_MS`).
    step_pause: Option<Duration>,
    /// `--progress`: where each batch's record goes once committed.
    progress: Option<ProgressWriter>,
    /// `--ui`: what the status page shows.
    monitor: Option<Arc<crate::ui::Monitor>>,
    /// Identifies this run in progress records.
    run_id: String,
    /// The query file's name.
    name: String,
    /// When the previous trigger began (for the input rate).
    previous_trigger: Option<Instant>,
    /// How long the latest taking of input took.
    take_time: Duration,
    /// When the latest taking of input began: the trigger time of the batch it feeds.
    taken_at: Option<i64>,
    /// Whether an idle event was written since the last batch.
    idle_reported: bool,
    /// Each source's part of its latest batch: the next batch's `startOffset`.
    end_offsets: SourceParts,
    /// How far each source's input went at the latest take: the next batch's `latestOffset`.
    latest_offsets: SourceParts,
    /// `--bad-records`: where each batch's malformed records go.
    config_bad_records: Option<std::path::PathBuf>,
    /// `--table`: the static tables the query joins with.
    tables: crate::tables::StaticTables,
}

impl Job {
    /// Plans the query, opens sources, checkpoint and sinks, and restores committed progress.
    async fn start(config: &RunConfig) -> Result<Self> {
        let args = &config.args;
        let counters = Arc::new(TextCounters::default());
        let (file, mut query, tables) = plan(config, Arc::clone(&counters)).await?;
        if args.engine != crate::query::engine::EngineChoice::Local {
            if args.format.bad_records.is_some() {
                return Err(Error::Usage(format!(
                    "--bad-records keeps malformed records where they are read, which with \
                     --engine {} is on the executors: use the local engine to collect them",
                    args.engine
                )));
            }
            use crate::query::engine::Engine;
            Engine::check_choice(&args.engine, &query.trigger_plan())?;
            let threshold = crate::query::engine::Threshold {
                bytes: args.cluster_min_bytes as u64,
                units: args.cluster_min_files.map(|n| n as usize),
            };
            let engine = Engine::start(&args.engine, threshold).await?;
            query.use_engine(engine)?;
            log::info!("engine: {}", query.engine().describe());
        }
        let wake = Arc::new(Notify::new());
        let mut sources = source::build(&source::BuildContext {
            config,
            wake: Arc::clone(&wake),
            counters: Arc::clone(&counters),
        })?;
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
            inputs: Some(sources.iter().map(|s| s.identity()).collect()),
            format: query.slot().format().to_recorded(),
            tables: tables.recorded(),
        };
        if args.format.bad_records.is_some() {
            counters.keep_bad_records();
        }
        let checkpoint = Checkpoint::open(
            &config.checkpoint,
            &meta,
            args.snapshot_interval,
            args.retain_batches,
        )
        .await?;
        let mut recovered = checkpoint.recover(state_schema.as_ref()).await?;
        for rows in std::mem::take(&mut recovered.state) {
            query.restore_state(rows)?;
        }
        if let Some(watermark) = recovered.watermark {
            query.slot().restore_watermark(watermark);
            query.forget_closed_windows()?;
        }
        restore_sources(&mut sources, &checkpoint, &recovered).await?;
        let next_batch = recovered.last_commit.map_or(0, |c| c + 1);
        let recovered_damage = recovered.damaged;
        if recovered_damage {
            log::warn!("the next commit writes a full snapshot, so the damage does not linger");
        }
        if let Some(last) = recovered.last_commit {
            log::info!(
                "resuming from {} after batch {last}: {} groups in state",
                checkpoint.describe(),
                query.state().map_or(0, |s| s.len())
            );
        }
        let end_offsets = match recovered.last_commit {
            Some(last) => checkpoint
                .offsets(last)
                .await
                .map(|o| o.sources)
                .unwrap_or_default(),
            None => SourceParts::new(),
        };
        check_output(config, &query)?;
        let mut sinks = crate::sink::build(&crate::sink::Job {
            config,
            query_id: checkpoint.query_id(),
            schema: query.output_schema(),
            mode: query.mode(),
            key: query.output_key(),
            changelog: query.emits_changes(),
            last_commit: recovered.last_commit,
        })
        .await?;
        // Anything after the restored and replayable batches cannot be reproduced: drop it.
        let first_unrecoverable = next_batch + recovered.replay.len() as u64;
        checkpoint.discard_from(first_unrecoverable).await?;
        checkpoint.uncommit_from(next_batch).await?;
        for sink in &mut sinks {
            sink.discard_from(first_unrecoverable).await?;
            // A crash can come between the checkpoint's commit and a sink's: finish it.
            if let Some(last) = recovered.last_commit {
                sink.commit(last).await?;
            }
        }
        let monitor = match args.ui {
            Some(address) => {
                let monitor = crate::ui::Monitor::new(crate::ui::QueryInfo {
                    name: args.query.display().to_string(),
                    sql: file.sql.clone(),
                    plan: query.explain(),
                    mode: query.mode().to_string(),
                    checkpoint: checkpoint.describe(),
                });
                let bound = crate::ui::serve(address, Arc::clone(&monitor))?;
                log::info!("status page at http://{bound}/");
                Some(monitor)
            }
            None => None,
        };
        let inputs: Vec<String> = sources.iter().map(|s| s.describe()).collect();
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
            sources,
            wake,
            uncommitted: Vec::new(),
            snapshot_due: recovered_damage,
            repair_due: recovered_damage,
            last_commit: Instant::now(),
            checkpoint_interval: args.checkpoint_interval,
            checkpoint,
            sinks,
            counters,
            next_batch,
            replay: recovered.replay,
            batches_run: 0,
            step_pause: std::env::var("DFSTREAM_PAUSE_BETWEEN_STEPS_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            progress: args
                .progress
                .as_deref()
                .map(ProgressWriter::open)
                .transpose()?,
            monitor,
            run_id: format!(
                "{:016x}{:08x}",
                crate::time::now_micros(),
                std::process::id()
            ),
            name: args
                .query
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            previous_trigger: None,
            take_time: Duration::ZERO,
            taken_at: None,
            idle_reported: false,
            end_offsets,
            latest_offsets: SourceParts::new(),
            config_bad_records: args.format.bad_records.clone(),
            tables,
        };
        job.release_input().await?;
        Ok(job)
    }

    /// Writes the batch's malformed records to `--bad-records DIR/batch-N.jsonl` (whole, or
    /// not at all; a replay writes the same file again).
    fn keep_bad_records(&self, batch_id: u64) -> Result<()> {
        let Some(dir) = &self.config_bad_records else {
            return Ok(());
        };
        let bad = self.counters.take_bad_records();
        if bad.is_empty() {
            return Ok(());
        }
        let path = dir.join(format!("batch-{batch_id:020}.jsonl"));
        let mut text = Vec::new();
        for record in &bad {
            serde_json::to_writer(&mut text, record)
                .map_err(|e| Error::io("encoding a bad record", std::io::Error::other(e)))?;
            text.push(b'\n');
        }
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let temp = dir.join(format!(".batch-{batch_id:020}.jsonl.tmp"));
            std::fs::write(&temp, &text)?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| Error::io(format!("writing --bad-records {}", path.display()), e))?;
        log::info!(
            "batch {batch_id}: {} malformed records kept in {}",
            bad.len(),
            path.display()
        );
        Ok(())
    }

    /// Each source's part of a new batch (sources with nothing new are absent).
    async fn take(&mut self, limited: bool) -> Result<SourceParts> {
        let started = Instant::now();
        let now = crate::time::now_micros();
        self.taken_at = Some(now);
        let mut parts = SourceParts::new();
        for source in &mut self.sources {
            if let Some(part) = source.take(limited, now).await? {
                parts.insert(source.name().to_string(), part);
            }
            match source.latest() {
                Some(latest) => self
                    .latest_offsets
                    .insert(source.name().to_string(), latest),
                None => self.latest_offsets.remove(source.name()),
            };
        }
        self.take_time = started.elapsed();
        Ok(parts)
    }

    /// What the sources still have to take (files, bytes) after `bound_to_available_now`, if
    /// any can tell.
    fn backlog(&self) -> Option<(u64, u64)> {
        self.sources
            .iter()
            .filter_map(|s| s.backlog())
            .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// A trigger found no input: one idle event per idle period (Spark's `QueryIdleEvent`).
    fn idle(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.idle_reported, true) {
            return Ok(());
        }
        let event = IdleEvent {
            event: "idle",
            id: self.checkpoint.query_id().to_string(),
            run_id: self.run_id.clone(),
            timestamp: crate::generate::iso8601(crate::time::now_micros()),
        };
        if let Some(monitor) = &self.monitor {
            monitor.idle(&event);
        }
        if let Some(progress) = &mut self.progress {
            progress.write(&event)?;
        }
        Ok(())
    }

    /// Runs a new batch over `parts` at the current time; `force_watermark` (recorded with the
    /// input, so a replay does the same) moves the watermark first: idle time, or a final
    /// flush.
    async fn run_batch(&mut self, parts: SourceParts, force_watermark: Option<i64>) -> Result<()> {
        let trigger_micros = self.taken_at.take().unwrap_or_else(crate::time::now_micros);
        self.run(Offsets {
            batch_id: self.next_batch,
            sources: parts,
            force_watermark,
            skipped: false,
            trigger_micros: Some(trigger_micros),
            tables: None,
        })
        .await
    }

    /// Runs batch `offsets.batch_id` over exactly its recorded input, at its recorded time
    /// (a replay of a batch recorded without one runs at the current time). When it fails,
    /// the batches that finished before it are committed first, so that only the failed one
    /// is re-run at the next start (and `checkpoint skip-batch` can set it aside).
    async fn run(&mut self, offsets: Offsets) -> Result<()> {
        let batch_id = self.next_batch;
        let result = self.run_uncommitted(offsets).await;
        if result.is_err() && !self.uncommitted.is_empty() && !self.repair_due {
            // Their deltas only: the state in memory may already hold part of the failed
            // batch, so it must not be written as a snapshot. (A snapshot owed for damage
            // found at recovery cannot be skipped: then they wait for the re-run.)
            self.snapshot_due = false;
            if let Err(e) = self.commit().await {
                log::warn!("could not commit the batches finished before batch {batch_id}: {e}");
            }
        }
        result
    }

    /// [`Self::run`] without committing what finished before a failure.
    async fn run_uncommitted(&mut self, mut offsets: Offsets) -> Result<()> {
        let batch_id = self.next_batch;
        let started = Instant::now();
        let take_time = std::mem::take(&mut self.take_time);
        let before = self.counters.snapshot();
        offsets.batch_id = batch_id;
        let trigger_micros = *offsets
            .trigger_micros
            .get_or_insert_with(crate::time::now_micros);
        // The static tables as the batch first joined with them (a replay), else as they are
        // now (kept in the checkpoint before the batch records them).
        match &offsets.tables {
            Some(versions) => self.tables.use_versions(versions, &self.checkpoint).await?,
            None if !self.tables.is_empty() => {
                offsets.tables = Some(self.tables.refresh(&self.checkpoint).await?);
            }
            None => {}
        }
        self.checkpoint.write_offsets(&offsets).await?;
        let offsets_written = started.elapsed();
        self.query.slot().clock().set(trigger_micros);
        if let Some(watermark) = offsets.force_watermark {
            self.query.slot().restore_watermark(watermark);
        }
        pause(self.step_pause).await;
        let mut units = Vec::new();
        for (name, part) in &offsets.sources {
            let source = self
                .sources
                .iter_mut()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "batch {batch_id} in {} read input from a {name} source, which this \
                         run does not have; run the job with the inputs that made the \
                         checkpoint",
                        self.checkpoint.describe()
                    ))
                })?;
            let tag: Arc<str> = Arc::from(name.as_str());
            units.extend(
                source
                    .open_batch(batch_id, part)?
                    .into_iter()
                    .map(|unit| InputUnit {
                        source: Arc::clone(&tag),
                        ..unit
                    }),
            );
        }
        if offsets.skipped {
            log::warn!(
                "batch {batch_id}: its input was set aside by `dfstream checkpoint skip-batch` \
                 ({}); it runs and commits without it",
                source::describe_parts(&offsets.sources)
            );
            units.clear();
        }
        // Whole files, not ranges of the socket log.
        let input_files = units.iter().filter(|u| u.range.is_none()).count();
        self.query.slot().set(units);
        self.counters.take_bad_records(); // a failed batch's
        let output = self
            .query
            .run_trigger()
            .await
            .map_err(|source| Error::BatchFailed {
                batch_id,
                inputs: source::describe_parts(&offsets.sources),
                checkpoint: self.checkpoint.describe(),
                source: Box::new(source),
            })?;
        self.keep_bad_records(batch_id)?;
        let queried = started.elapsed();
        pause(self.step_pause).await;
        let sink_batch = SinkBatch {
            batch_id,
            mode: self.query.mode(),
            schema: self.query.output_schema(),
            rows: &output.rows,
        };
        for sink in &mut self.sinks {
            sink.write(&sink_batch).await?;
            pause(self.step_pause).await;
        }
        if let Some(monitor) = &self.monitor {
            monitor.result(batch_id, sink_batch.schema, &output.rows);
        }
        let counts = self.counters.snapshot() - before;
        self.snapshot_due |= self.checkpoint.wants_snapshot(batch_id);
        let record = self.describe_batch(BatchFigures {
            offsets: &offsets,
            trigger_micros,
            started,
            durations: [take_time, offsets_written, started.elapsed() - queried],
            output: &output,
            output_rows: sink_batch.num_rows() as u64,
            input_files: input_files as u64,
            counts,
        });
        log::info!("{}", record.log_line());
        self.uncommitted.push(Uncommitted {
            delta: output.state_delta.clone(),
            commit: Commit {
                batch_id,
                committed_at_micros: 0,
                input_files: record.input.files,
                input_rows: record.num_input_rows,
                input_bytes: record.input.bytes,
                output_rows: record.sink.num_output_rows,
                state_groups: record
                    .state_operators
                    .first()
                    .map_or(0, |s| s.num_rows_total),
                sources: self
                    .sources
                    .iter()
                    .filter_map(|s| Some((s.name().to_string(), s.progress()?)))
                    .collect(),
                watermark: self.query.slot().watermark(),
            },
            progress: record,
        });
        self.idle_reported = false;
        self.next_batch += 1;
        self.batches_run += 1;
        if self.last_commit.elapsed() >= self.checkpoint_interval {
            self.commit().await?;
        }
        Ok(())
    }

    /// Tells the sources which batches no recovery can re-run any more (older than the oldest
    /// commit it could restore), so that input only those needed can go.
    async fn release_input(&mut self) -> Result<()> {
        let oldest = self.checkpoint.oldest_restorable().await?;
        for source in &mut self.sources {
            let name = source.name();
            source
                .release(oldest.as_ref().map(|commit| Restorable {
                    batch_id: commit.batch_id,
                    progress: commit.sources.get(name),
                }))
                .await?;
        }
        Ok(())
    }

    /// Releases the checkpoint's and the sinks' locks at a clean stop (everything is
    /// committed).
    async fn close(self) {
        // The sources stop first (the socket reader thread), then what they fed.
        drop(self.sources);
        for sink in self.sinks {
            sink.close().await;
        }
        self.checkpoint.close().await;
    }

    /// When the uncommitted batches must be committed, if there are any.
    fn commit_deadline(&self) -> Option<Instant> {
        (!self.uncommitted.is_empty()).then(|| self.last_commit + self.checkpoint_interval)
    }

    /// Makes the finished batches durable: their state deltas (and a snapshot when one is
    /// due), then their commits, in order. Input was made durable (offsets) before each ran.
    async fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        let uncommitted = std::mem::take(&mut self.uncommitted);
        let Some(last) = uncommitted.last().map(|u| u.commit.batch_id) else {
            return Ok(());
        };
        for batch in &uncommitted {
            if let Some(delta) = &batch.delta {
                self.checkpoint
                    .write_state_delta(batch.commit.batch_id, delta)
                    .await?;
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
            let remembered: SourceParts = self
                .sources
                .iter()
                .filter_map(|s| Some((s.name().to_string(), s.snapshot()?)))
                .collect();
            self.checkpoint
                .write_snapshot(last, state.as_ref(), &remembered)
                .await?;
            self.repair_due = false;
            pause(self.step_pause).await;
        }
        let now = crate::time::now_micros();
        let mut committed = Vec::with_capacity(uncommitted.len());
        for batch in uncommitted {
            let batch_id = batch.commit.batch_id;
            let writing = Instant::now();
            self.checkpoint
                .commit(&Commit {
                    committed_at_micros: now,
                    ..batch.commit
                })
                .await?;
            let mut record = batch.progress;
            record.duration_ms.commit_offsets = writing.elapsed().into();
            committed.push(record);
            pause(self.step_pause).await;
            for sink in &mut self.sinks {
                sink.commit(batch_id).await?;
            }
        }
        let checkpoint = Ms::from(started.elapsed());
        let watermark = self.query.slot().watermark();
        let state_bytes_on_disk = self.checkpoint.state_bytes_on_disk();
        for mut record in committed {
            record.duration_ms.checkpoint = checkpoint;
            for state in &mut record.state_operators {
                state.custom_metrics.state_bytes_on_disk = state_bytes_on_disk;
            }
            if let Some(monitor) = &self.monitor {
                monitor.committed(&record, watermark);
            }
            // The batch is committed: a progress file that cannot be written (a full disk, a
            // closed pipe) must not stop the job.
            if let Some(progress) = &mut self.progress
                && let Err(e) = progress.write(&record)
            {
                log::warn!("{e}");
            }
        }
        // The batches are committed: input that could be released but is not (the store
        // unreachable for a moment) only waits for the next commit, which tries again.
        if let Err(e) = self.release_input().await {
            log::warn!("could not release input that no recovery needs any more: {e}");
        }
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// Reads the query file and plans it with the run's flags, as a stream: what `run` starts
/// with, and all that `explain` does.
pub async fn plan(
    config: &RunConfig,
    counters: Arc<TextCounters>,
) -> Result<(QueryFile, StreamingQuery, crate::tables::StaticTables)> {
    let args = &config.args;
    let file = QueryFile::read(&args.query)?;
    let format = crate::format::resolve::resolve(
        &args.format,
        args.event_time.as_deref(),
        config.input.as_ref(),
        args.socket.is_some(),
        &config.checkpoint,
    )
    .await?;
    let tables = crate::tables::StaticTables::open(&args.tables, &args.storage_options).await?;
    let slot = TriggerSlot::new(counters, args.max_line_bytes)
        .with_format(format)
        .with_tables(tables.providers());
    let query = StreamingQuery::plan(
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
    Ok((file, query, tables))
}

/// Refuses `--output-format` and `--partition-by` that cannot hold the query's result.
fn check_output(config: &RunConfig, query: &StreamingQuery) -> Result<()> {
    let args = &config.args;
    let schema = query.output_schema();
    if let Some(reason) = args.output_format.cannot_hold(schema) {
        return Err(Error::Usage(reason));
    }
    if args.partition_by.is_empty() {
        return Ok(());
    }
    if query.mode() != crate::query::OutputMode::Append {
        return Err(Error::Usage(format!(
            "--partition-by writes each batch's new rows into directories by value, which \
             only --mode append output is (this query runs in --mode {}: its rows change)",
            query.mode()
        )));
    }
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for column in &args.partition_by {
        if !columns.contains(&column.as_str()) {
            return Err(Error::Usage(format!(
                "--partition-by {column}: the result has no such column (it has {})",
                columns.join(", ")
            )));
        }
    }
    if args.partition_by.len() == columns.len() {
        return Err(Error::Usage(
            "--partition-by names every column of the result: the files would hold none".into(),
        ));
    }
    Ok(())
}

/// Hands each source what the checkpoint kept of it: the restored batch's snapshot, parts and
/// progress, the parts to re-run, and the kept committed batches' parts.
async fn restore_sources(
    sources: &mut [Box<dyn Source>],
    checkpoint: &Checkpoint,
    recovered: &Recovered,
) -> Result<()> {
    // The committed batches whose offsets are kept and good, and whether they run without
    // a gap up to the restored batch.
    let mut kept = Vec::new();
    let mut kept_whole = false;
    if let Some(last) = recovered.last_commit {
        let batches: Vec<u64> = checkpoint
            .kept_batches()
            .await?
            .into_iter()
            .filter(|&b| b <= last)
            .collect();
        for &b in &batches {
            kept.extend(checkpoint.offsets(b).await);
        }
        kept_whole = batches
            .first()
            .is_some_and(|&first| kept.len() as u64 == last - first + 1);
    }
    let oldest_restorable = checkpoint.oldest_restorable().await?.map(|c| c.batch_id);
    for source in sources {
        let name = source.name();
        let restored = Restored {
            kept: kept
                .iter()
                .filter_map(|o| Some((o.batch_id, o.sources.get(name)?.clone())))
                .collect(),
            kept_whole,
            oldest_restorable,
            has_history: recovered.last_commit.is_some() || !recovered.replay.is_empty(),
            query_id: checkpoint.query_id().to_string(),
            ..Restored::from_recovered(name, recovered)
        };
        source.restore(restored).await?;
    }
    Ok(())
}

/// A batch whose output is written but whose state and commit are not yet durable.
struct Uncommitted {
    delta: Option<datafusion::arrow::array::RecordBatch>,
    commit: Commit,
    progress: BatchProgress,
}

/// What a batch measured, for its progress record.
struct BatchFigures<'a> {
    offsets: &'a Offsets,
    trigger_micros: i64,
    started: Instant,
    /// Taking the input, writing the offsets, the sinks.
    durations: [Duration; 3],
    output: &'a crate::query::TriggerOutput,
    output_rows: u64,
    input_files: u64,
    counts: TextCountersSnapshot,
}

impl Job {
    /// The batch's progress record: every figure it produced, assembled once.
    fn describe_batch(&mut self, f: BatchFigures<'_>) -> BatchProgress {
        let [take, offsets_written, sinks] = f.durations;
        let elapsed = f.started.elapsed();
        let rows = f.counts.rows;
        let since_previous = self
            .previous_trigger
            .replace(f.started)
            .map_or(elapsed, |p| f.started - p);
        let rate = |rows: u64, d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                rows as f64 / d.as_secs_f64()
            }
        };
        let per_second = |d: Duration| rate(rows, d);
        let t = f.output.timings;
        let by_source = self.counters.take_by_source();
        BatchProgress {
            id: self.checkpoint.query_id().to_string(),
            run_id: self.run_id.clone(),
            name: self.name.clone(),
            timestamp: crate::generate::iso8601(f.trigger_micros),
            batch_id: f.offsets.batch_id,
            batch_duration: (elapsed + take).as_millis() as u64,
            num_input_rows: rows,
            input_rows_per_second: per_second(since_previous),
            processed_rows_per_second: per_second(elapsed + take),
            duration_ms: Durations {
                trigger_execution: (elapsed + take).into(),
                latest_offset: take.into(),
                query_planning: Ms(0.0),
                wal_commit: offsets_written.into(),
                add_batch: (elapsed - offsets_written).into(),
                commit_offsets: Ms(0.0),
                read: Ms(f.counts.read_nanos as f64 / 1e6),
                aggregate: t.aggregate.into(),
                merge: t.merge.into(),
                emit: t.emit.into(),
                sink: sinks.into(),
                checkpoint: Ms(0.0),
            },
            event_time: {
                let seen = self.counters.take_event_times().summary();
                let watermark = self.query.slot().watermark();
                let iso = crate::generate::iso8601;
                (seen.is_some() || watermark.is_some()).then(|| EventTime {
                    min: seen.map(|s| iso(s.0)),
                    max: seen.map(|s| iso(s.1)),
                    avg: seen.map(|s| iso(s.2)),
                    watermark: watermark.map(iso),
                })
            },
            state_operators: self
                .query
                .state()
                .map(|state| StateOperator {
                    operator_name: "groupBy".to_string(),
                    num_rows_total: state.len() as u64,
                    num_rows_updated: f
                        .output
                        .state_delta
                        .as_ref()
                        .map_or(0, |d| d.num_rows() as u64),
                    num_rows_removed: f.output.removed_groups,
                    num_rows_dropped_by_watermark: f.counts.late_rows,
                    memory_used_bytes: state.memory_size() as u64,
                    custom_metrics: StateMetrics::default(),
                })
                .into_iter()
                .collect(),
            sources: self
                .sources
                .iter()
                .map(|s| {
                    let counts = by_source.get(s.name()).copied().unwrap_or_default();
                    let end = f.offsets.sources.get(s.name()).cloned();
                    let start = match &end {
                        Some(end) => self.end_offsets.insert(s.name().to_string(), end.clone()),
                        None => self.end_offsets.get(s.name()).cloned(),
                    };
                    SourceProgress {
                        description: s.describe(),
                        start_offset: start.unwrap_or_default(),
                        end_offset: end.unwrap_or_default(),
                        latest_offset: self.latest_offsets.remove(s.name()).unwrap_or_default(),
                        num_input_rows: counts.rows,
                        input_rows_per_second: rate(counts.rows, since_previous),
                        processed_rows_per_second: rate(counts.rows, elapsed + take),
                        input: SourceInput {
                            bytes: counts.bytes,
                            lossy_lines: counts.lossy_lines,
                            long_lines: counts.long_lines,
                            vanished_files: counts.vanished_files,
                            rows_without_event_time: counts.rows_without_event_time,
                            late_rows: counts.late_rows,
                            malformed_records: counts.malformed_records,
                        },
                    }
                })
                .collect(),
            sink: SinkProgress {
                description: self
                    .sinks
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>()
                    .join(", "),
                num_output_rows: f.output_rows,
            },
            input: InputCounts {
                files: f.input_files,
                bytes: f.counts.bytes,
                lossy_lines: f.counts.lossy_lines,
                long_lines: f.counts.long_lines,
                vanished_files: f.counts.vanished_files,
                changed_files: f.counts.changed_files,
                rows_without_event_time: f.counts.bad_event_times,
                late_rows: f.counts.late_rows,
                malformed_records: f.counts.malformed_records,
            },
            set_aside: f.offsets.skipped,
        }
    }
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
