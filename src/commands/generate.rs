//! `dfstream generate`: files (continuous, batch, single) or a line server (serve).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{GenerateCommand, ShapeArgs};
use crate::error::{Error, Result};
use crate::generate::{self, LineMaker, Shape};

/// Turns generator flags into a [`Shape`], logging a clock-derived seed so a run can be repeated.
fn shape(args: &ShapeArgs) -> Result<Shape> {
    let seed = args.seed.unwrap_or_else(|| {
        let seed = crate::time::now_micros() as u64;
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

/// Writes `files` files named `{kind}-{clock}-NNNNN.txt` (single and batch modes).
fn write_files(
    dir: &std::path::Path,
    kind: &str,
    files: usize,
    lines: usize,
    bytes_per_file: Option<u64>,
    args: &ShapeArgs,
) -> Result<()> {
    let mut maker = LineMaker::new(shape(args)?);
    let now = crate::time::now_micros();
    let paths = generate::write_batch(
        dir,
        &mut maker,
        files,
        lines,
        bytes_per_file,
        &format!("{kind}-{now}"),
    )?;
    log::info!("wrote {} files into {}", paths.len(), dir.display());
    Ok(())
}

/// `dfstream generate ...`.
pub async fn generate(command: GenerateCommand, shutdown: impl Future<Output = ()>) -> Result<()> {
    match command {
        GenerateCommand::Single {
            dir,
            lines,
            shape: args,
        } => write_files(&dir, "single", 1, lines_given(lines, &args, 3), None, &args)?,
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
            let lines = lines_given(lines, &args, 5);
            write_files(&dir, "batch", files, lines, per_file, &args)?
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
        let now = crate::time::now_micros();
        let text = maker.text(lines, now);
        let path = generate::write_file(&dir, &format!("gen-{now}-{seq:06}.txt"), &text)?;
        log::debug!("wrote {}", path.display());
        seq += 1;
    }
}
