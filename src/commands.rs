//! The commands besides `run`: `verify` (the batch oracle against the streaming output),
//! `checkpoint show` (what a checkpoint holds), `reset` (start over), `generate` (input data),
//! the original example's mode shortcuts (`file`, `window`, `socket`), `demo` and `sql`.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::ParquetReadOptions;

use crate::batch::{Projection, TextCounters, lines_schema};
use crate::cli::{
    Cli, Command, DemoArgs, GenerateCommand, ShapeArgs, ShowArgs, SqlArgs, SqlFormat, VerifyArgs,
};
use crate::error::{Context, Error, Result};
use crate::generate::{self, LineMaker, Shape};
use crate::query::lines::{TriggerFile, read_file};
use crate::query::plan::{self, QueryFile};
use crate::sink::parquet::COMPLETE_FILE;
use crate::state::checkpoint::{Checkpoint, reset};

/// `dfstream verify`: runs the query once as a batch over every file the checkpoint says was
/// taken and compares the result with the streaming output. Returns whether they match.
pub async fn verify(args: VerifyArgs, out: &mut impl Write) -> Result<bool> {
    let (checkpoint, meta) = Checkpoint::open_read_only(&args.checkpoint)?;
    let file = QueryFile::read(&args.query)?;
    let params: BTreeMap<String, String> = args.params.iter().cloned().collect();
    if file.sql != meta.sql || params != meta.params {
        return Err(Error::Usage(format!(
            "checkpoint {} was made by another query or parameters than {} {params:?}",
            args.checkpoint.display(),
            args.query.display()
        )));
    }
    let recovered = checkpoint.recover(None)?;
    let Some(last) = recovered.last_commit else {
        writeln!(
            out,
            "nothing committed yet in {}",
            args.checkpoint.display()
        )
        .ok();
        return Ok(true);
    };
    if let Some(unfinished) = recovered.replay.first() {
        writeln!(
            out,
            "note: batch {} was started but not committed; its output may be partly written. \
             Run the job to finish it, then verify.",
            unfinished.batch_id
        )
        .ok();
    }
    // Arrival times, where the offsets still record them.
    let mut ts = BTreeMap::new();
    for batch_id in 0..=last {
        if let Some(offsets) = checkpoint.offsets(batch_id) {
            ts.extend(offsets.files.into_iter().map(|f| (f.name, f.ts_micros)));
        }
    }
    let projection = Projection::new(None).context(|| "the lines schema".into())?;
    let counters = TextCounters::default();
    let mut lines: Vec<RecordBatch> = Vec::new();
    for name in recovered.taken.keys() {
        let path = args.input.join(name);
        let file = TriggerFile {
            display: path.display().to_string(),
            path,
            ts_micros: ts.get(name).copied().unwrap_or(0),
            range: None,
        };
        read_file(&file, &projection, &counters, args.max_line_bytes, |b| {
            lines.push(b);
            true
        })
        .context(|| format!("reading {name}"))?;
    }
    let vanished = counters.snapshot().vanished_files;
    if vanished > 0 {
        writeln!(
            out,
            "note: {vanished} input files no longer exist; the batch result cannot include them"
        )
        .ok();
    }
    let ctx = crate::query::session(2);
    let table =
        MemTable::try_new(lines_schema(), vec![lines]).context(|| "the lines table".into())?;
    ctx.register_table("lines", Arc::new(table))
        .context(|| "registering lines".into())?;
    let logical = plan::logical_plan(&ctx, &file, &params).await?;
    let expected = ctx
        .execute_logical_plan(logical)
        .await
        .context(|| "planning the batch query".into())?
        .collect()
        .await
        .context(|| "running the batch query".into())?;
    let actual = match meta.mode.as_str() {
        "complete" => read_output(&args.output.join(COMPLETE_FILE)).await?,
        "append" => read_output(&args.output).await?,
        other => {
            return Err(Error::Usage(format!(
                "verify compares the whole result, which --mode {other} output does not hold; \
                 run the query in --mode complete (or append) to verify it"
            )));
        }
    };
    let expected = row_strings(&expected);
    let actual = row_strings(&actual);
    let missing: Vec<_> = difference(&expected, &actual);
    let unexpected: Vec<_> = difference(&actual, &expected);
    if missing.is_empty() && unexpected.is_empty() {
        writeln!(
            out,
            "OK: {} rows, as the batch query over the {} files taken up to batch {last}",
            expected.len(),
            recovered.taken.len()
        )
        .ok();
        return Ok(true);
    }
    writeln!(
        out,
        "DIFFERENT: the streaming output has {} rows the batch query does not, and lacks {} of its rows",
        unexpected.len(),
        missing.len()
    )
    .ok();
    for row in missing.iter().take(20) {
        writeln!(out, "  batch only:  {row}").ok();
    }
    for row in unexpected.iter().take(20) {
        writeln!(out, "  stream only: {row}").ok();
    }
    Ok(false)
}

async fn read_output(path: &Path) -> Result<Vec<RecordBatch>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.read_parquet(path.display().to_string(), ParquetReadOptions::default())
        .await
        .context(|| format!("reading {}", path.display()))?
        .collect()
        .await
        .context(|| format!("reading {}", path.display()))
}

/// Each row as `a | b | c`, sorted (a multiset, as a sorted list).
fn row_strings(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join(" | "));
        }
    }
    rows.sort();
    rows
}

/// Rows of sorted `a` not matched in sorted `b` (multiset difference).
fn difference<'a>(a: &'a [String], b: &[String]) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut j = 0;
    for row in a {
        while j < b.len() && b[j] < *row {
            j += 1;
        }
        if j < b.len() && b[j] == *row {
            j += 1;
        } else {
            out.push(row);
        }
    }
    out
}

/// `dfstream checkpoint show`: the query, committed batches, state size and files.
pub fn show(args: ShowArgs, out: &mut impl Write) -> Result<()> {
    let (checkpoint, meta) = Checkpoint::open_read_only(&args.checkpoint)?;
    let commits = checkpoint.commits()?;
    let mut text = String::new();
    text.push_str(&format!("checkpoint {}\n", args.checkpoint.display()));
    text.push_str(&format!(
        "query      {} (id {}), --mode {}, format version {}\n",
        meta.query_file, meta.query_id, meta.mode, meta.format_version
    ));
    for (name, value) in &meta.params {
        text.push_str(&format!("param      {name}={value}\n"));
    }
    text.push_str("sql        ");
    text.push_str(&meta.sql.trim_end().replace('\n', "\n           "));
    text.push('\n');
    match commits.last() {
        Some(last) => text.push_str(&format!(
            "last batch {} committed at {} ({} groups in state)\n",
            last.batch_id,
            format_micros(last.committed_at_micros),
            last.state_groups
        )),
        None => text.push_str("last batch none committed\n"),
    }
    text.push_str("\n batch  files     rows      bytes  out rows   groups  committed at\n");
    for c in &commits {
        text.push_str(&format!(
            "{:>6} {:>6} {:>8} {:>10} {:>9} {:>8}  {}\n",
            c.batch_id,
            c.input_files,
            c.input_rows,
            c.input_bytes,
            c.output_rows,
            c.state_groups,
            format_micros(c.committed_at_micros)
        ));
    }
    let next = commits.last().map_or(0, |c| c.batch_id + 1);
    if let Some(offsets) = checkpoint.offsets(next) {
        text.push_str(&format!(
            "{:>6} {:>6}  (started, not committed: re-run on the next start)\n",
            next,
            offsets.files.len()
        ));
    }
    let files = checkpoint.files()?;
    let state_bytes: u64 = files
        .iter()
        .filter(|(name, _)| name.starts_with("state/"))
        .map(|(_, size)| size)
        .sum();
    text.push_str(&format!(
        "\nfiles ({} in all, state files {} bytes)\n",
        files.len(),
        state_bytes
    ));
    for (name, size) in files {
        text.push_str(&format!("  {name:<28} {size:>10}\n"));
    }
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing to the console", e))
}

fn format_micros(micros: i64) -> String {
    generate::iso8601(micros)
}

/// `dfstream reset`: deletes the checkpoint's contents so that the next run starts over.
pub fn reset_checkpoint(dir: &Path, out: &mut impl Write) -> Result<()> {
    reset(dir)?;
    writeln!(
        out,
        "reset {}: the next run starts from batch 0 and reads every file again \
         (empty the output directory too if it should not keep old batches)",
        dir.display()
    )
    .map_err(|e| Error::io("writing to the console", e))
}

/// Turns generator flags into a [`Shape`], logging a clock-derived seed so a run can be repeated.
fn shape(args: &ShapeArgs) -> Result<Shape> {
    let seed = args.seed.unwrap_or_else(|| {
        let seed = crate::source::dir::micros_since_epoch(std::time::SystemTime::now()) as u64;
        log::info!("seed {seed} (pass --seed {seed} to repeat these bytes)");
        seed
    });
    let mut shape = Shape::new(seed);
    if let Some(vocab) = &args.vocab {
        shape = shape.with_vocabulary_file(vocab)?;
    }
    shape.words_per_line = args.words_per_line;
    shape.event_time = args.event_time;
    shape.disorder = args.disorder.unwrap_or_default();
    if !(0.0..=1.0).contains(&args.late_fraction) {
        return Err(Error::Usage(format!(
            "--late-fraction {} is not between 0 and 1",
            args.late_fraction
        )));
    }
    shape.late_fraction = args.late_fraction;
    Ok(shape)
}

fn lines_given(positional: Option<usize>, shape: &ShapeArgs, default: usize) -> usize {
    positional.or(shape.lines_per_file).unwrap_or(default)
}

/// `dfstream generate ...`.
pub async fn generate(command: GenerateCommand, shutdown: impl Future<Output = ()>) -> Result<()> {
    match command {
        GenerateCommand::Single {
            dir,
            lines,
            shape: args,
        } => {
            let mut maker = LineMaker::new(shape(&args)?);
            let name = format!(
                "single-{}",
                crate::source::dir::micros_since_epoch(std::time::SystemTime::now())
            );
            let paths = generate::write_batch(
                &dir,
                &mut maker,
                1,
                lines_given(lines, &args, 3),
                None,
                &name,
            )?;
            log::info!("wrote {}", paths[0].display());
        }
        GenerateCommand::Batch {
            dir,
            files,
            lines,
            size,
            file_count,
            shape: args,
        } => {
            let files = file_count.or(files).unwrap_or(10);
            if files == 0 {
                return Err(Error::Usage(
                    "the number of files must be at least 1".into(),
                ));
            }
            let per_file = size.map(|s| (s as u64).div_ceil(files as u64));
            let mut maker = LineMaker::new(shape(&args)?);
            let name = format!(
                "batch-{}",
                crate::source::dir::micros_since_epoch(std::time::SystemTime::now())
            );
            let paths = generate::write_batch(
                &dir,
                &mut maker,
                files,
                lines_given(lines, &args, 5),
                per_file,
                &name,
            )?;
            log::info!("wrote {} files into {}", paths.len(), dir.display());
        }
        GenerateCommand::Continuous {
            dir,
            interval_seconds,
            duration_seconds,
            lines,
            shape: args,
        } => {
            let every = Duration::try_from_secs_f64(interval_seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "interval {interval_seconds} is not a positive number of seconds"
                    ))
                })?;
            let duration = Duration::try_from_secs_f64(duration_seconds).map_err(|_| {
                Error::Usage(format!(
                    "duration {duration_seconds} is not a number of seconds"
                ))
            })?;
            let maker = LineMaker::new(shape(&args)?);
            let lines = lines_given(lines, &args, 3);
            let deadline = tokio::time::Instant::now() + duration;
            let writing = write_continuously(dir, maker, lines, every, Some(deadline));
            tokio::select! {
                result = writing => result?,
                _ = shutdown => {}
            }
        }
        GenerateCommand::Serve {
            host,
            port,
            rate,
            shape: args,
        } => {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|e| Error::Usage(format!("cannot listen on {host}:{port}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| Error::io("reading the bound address", e))?;
            log::info!(
                "serving lines on {addr} at {rate} lines/s per client (0: as fast as possible)"
            );
            // The address on stdout lets scripts and tests use --port 0.
            println!("listening on {addr}");
            generate::serve::serve(listener, shape(&args)?, rate, shutdown).await?;
        }
    }
    Ok(())
}

/// Writes a file of `lines` lines every `every` until `until` (or forever).
pub async fn write_continuously(
    dir: PathBuf,
    mut maker: LineMaker,
    lines: usize,
    every: Duration,
    until: Option<tokio::time::Instant>,
) -> Result<()> {
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut ticker = tokio::time::interval(every);
    let mut seq = 0u64;
    loop {
        ticker.tick().await;
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            return Ok(());
        }
        let now = crate::source::dir::micros_since_epoch(std::time::SystemTime::now());
        let text = maker.text(lines, now);
        let path = generate::write_file(&dir, &format!("gen-{now}-{seq:06}.txt"), &text)?;
        log::debug!("wrote {}", path.display());
        seq += 1;
    }
}

/// The `run` flags a mode shortcut stands for, followed by the user's own.
pub fn shortcut(command: &Command) -> Result<Vec<String>> {
    let mut argv: Vec<String> = vec!["dfstream".into(), "run".into()];
    match command {
        Command::File {
            input,
            output,
            run_flags,
        } => {
            argv.push("sql/wordcount.sql".into());
            argv.extend(["--input".into(), input.display().to_string()]);
            argv.extend(["--output".into(), output.display().to_string()]);
            let mut flags = run_flags.as_slice();
            if let Some(secs) = flags.first().and_then(|s| s.parse::<f64>().ok()) {
                if !flags
                    .iter()
                    .any(|f| f == "--trigger" || f.starts_with("--trigger="))
                {
                    argv.extend(["--trigger".into(), format!("{secs}s")]);
                }
                flags = &flags[1..];
            }
            argv.extend(flags.iter().cloned());
            Ok(argv)
        }
        Command::Window {
            input,
            output,
            size,
            slide,
            run_flags,
        } => {
            argv.push("sql/window_wordcount.sql".into());
            argv.extend(["--input".into(), input.display().to_string()]);
            argv.extend(["--output".into(), output.display().to_string()]);
            argv.extend(["--param".into(), format!("size={size}")]);
            argv.extend(["--param".into(), format!("slide={slide}")]);
            if !run_flags
                .iter()
                .any(|f| f == "--mode" || f.starts_with("--mode="))
            {
                argv.extend(["--mode".into(), "complete".into()]);
            }
            argv.extend(run_flags.iter().cloned());
            Ok(argv)
        }
        Command::Socket {
            host,
            port,
            run_flags,
        } => {
            argv.push("sql/wordcount.sql".into());
            argv.extend(["--socket".into(), format!("{host}:{port}")]);
            if !run_flags
                .iter()
                .any(|f| f == "--trigger" || f.starts_with("--trigger="))
            {
                argv.extend(["--trigger".into(), "continuous".into()]);
            }
            argv.extend(run_flags.iter().cloned());
            Ok(argv)
        }
        _ => unreachable!("only mode shortcuts"),
    }
}

/// `dfstream demo`: a generator writing into a fresh directory and the job watching it.
pub async fn demo(args: DemoArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    match args.mode.as_str() {
        "file" | "socket" | "window" => {}
        other => {
            return Err(Error::Usage(format!(
                "demo --mode {other}: use file, window or socket"
            )));
        }
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("dfstream-demo-{}", std::process::id())),
    };
    let input = dir.join("input");
    std::fs::create_dir_all(&input)
        .map_err(|e| Error::io(format!("creating {}", input.display()), e))?;
    let seed = crate::source::dir::micros_since_epoch(std::time::SystemTime::now()) as u64;
    let query = if args.mode == "window" {
        "sql/window_wordcount.sql"
    } else {
        "sql/wordcount.sql"
    };
    let mut argv: Vec<String> = ["dfstream", "run", query, "--num-rows", "10"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if args.mode == "window" {
        // Sliding windows of 10 s every 5 s over arrival time, newest first.
        argv.extend(["--param", "size=10 seconds", "--param", "slide=5 seconds"].map(String::from));
    }
    argv.extend(["--output".into(), dir.join("output").display().to_string()]);
    argv.extend([
        "--checkpoint".into(),
        dir.join("checkpoint").display().to_string(),
    ]);
    let generator = if args.mode == "socket" {
        // The line server on a free port, a few lines a second, and the socket source.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("starting the line server", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        let rate = (args.lines as f64 / args.every.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        eprintln!(
            "dfstream demo: a line server on {addr} sends {rate} lines a second; the job reads them \
             through --socket --trigger continuous; Parquet in {}; Ctrl-C stops",
            dir.join("output").display()
        );
        argv.extend([
            "--socket".into(),
            addr.to_string(),
            "--trigger".into(),
            "continuous".into(),
        ]);
        tokio::spawn(async move {
            generate::serve::serve(listener, Shape::new(seed), rate, std::future::pending()).await
        })
    } else {
        eprintln!(
            "dfstream demo: a file of {} lines every {:?} into {}; counts below; Parquet in {}; \
             Ctrl-C stops",
            args.lines,
            args.every,
            input.display(),
            dir.join("output").display()
        );
        argv.extend(["--input".into(), input.display().to_string()]);
        tokio::spawn(write_continuously(
            input.clone(),
            LineMaker::new(Shape::new(seed)),
            args.lines,
            args.every,
            None,
        ))
    };
    let Command::Run(run_args) = Cli::try_parse_from(argv)
        .map_err(|e| Error::Usage(e.to_string()))?
        .command
    else {
        unreachable!("parsed a run command")
    };
    let result = crate::app::run(run_args.validate()?, shutdown).await;
    generator.abort();
    result.map(|_| ())
}

/// `dfstream sql`: one query over files, printed as a table, CSV or JSON.
pub async fn sql(args: SqlArgs, out: &mut impl Write) -> Result<()> {
    let ctx = crate::query::session(2).enable_url_table();
    let file = QueryFile {
        path: "query".into(),
        sql: args.query.clone(),
    };
    let batches = ctx
        .sql(&args.query)
        .await
        .map_err(|e| plan::sql_error(&file, e))?
        .collect()
        .await
        .context(|| "running the query".into())?;
    let to_io = |e: datafusion::arrow::error::ArrowError| {
        Error::io("printing the result", std::io::Error::other(e))
    };
    match args.format {
        SqlFormat::Table => {
            let table =
                datafusion::arrow::util::pretty::pretty_format_batches(&batches).map_err(to_io)?;
            writeln!(out, "{table}").map_err(|e| Error::io("printing the result", e))?;
        }
        SqlFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in &batches {
                writer.write(batch).map_err(to_io)?;
            }
        }
        SqlFormat::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(to_io)?;
            writer.finish().map_err(to_io)?;
            writeln!(out).map_err(|e| Error::io("printing the result", e))?;
        }
    }
    Ok(())
}
