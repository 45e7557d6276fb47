//! `dfstream checkpoint show` (what a checkpoint holds) and `dfstream reset` (start over).

use std::io::Write;

use crate::cli::{self, ResetArgs, ShowArgs, SkipBatchArgs};
use crate::error::{Error, Result};
use crate::generate;
use crate::source;
use crate::state::checkpoint::{Checkpoint, reset};

/// `dfstream checkpoint show`: the query, committed batches, state size and files.
pub async fn show(args: ShowArgs, out: &mut impl Write) -> Result<()> {
    let location = cli::location(&args.checkpoint, "--checkpoint", &args.storage_options)?;
    let (checkpoint, meta) = Checkpoint::open_read_only(&location).await?;
    let commits = checkpoint.commits().await?;
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
    if let Some(watermark) = commits.last().and_then(|c| c.watermark) {
        let shown = if watermark == i64::MAX {
            "closed (--final-flush)".to_string()
        } else {
            format_micros(watermark)
        };
        text.push_str(&format!("watermark  {shown}\n"));
    }
    for (name, progress) in commits.last().map(|c| &c.sources).into_iter().flatten() {
        text.push_str(&format!("progress   {name}: {progress}\n"));
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
    if let Some(offsets) = checkpoint.offsets(next).await {
        text.push_str(&format!(
            "{next:>6}  started, not committed: re-run on the next start{} ({})\n",
            if offsets.skipped {
                ", without its input"
            } else {
                ""
            },
            source::describe_parts(&offsets.sources)
        ));
    }
    // Batches whose input was set aside (`checkpoint skip-batch`), while their offsets are kept.
    for batch in checkpoint.kept_batches().await? {
        if let Some(offsets) = checkpoint.offsets(batch).await.filter(|o| o.skipped) {
            text.push_str(&format!(
                "skipped    batch {batch}, input set aside: {}\n",
                source::describe_parts(&offsets.sources)
            ));
        }
    }
    let files = checkpoint.files().await?;
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

/// `dfstream checkpoint skip-batch N`: sets aside the input of a batch that fails at every
/// start (refused while a job holds the checkpoint).
pub async fn skip_batch(args: SkipBatchArgs, out: &mut impl Write) -> Result<()> {
    let location = cli::location(&args.checkpoint, "--checkpoint", &args.storage_options)?;
    let checkpoint = Checkpoint::lock_existing(&location).await?;
    let offsets = checkpoint.skip_batch(args.batch).await?;
    writeln!(
        out,
        "batch {} set aside ({}): the next start commits it without its input and goes on",
        args.batch,
        source::describe_parts(&offsets.sources)
    )
    .map_err(|e| Error::io("writing to the console", e))
}

/// `dfstream reset`: deletes the checkpoint's contents so that the next run starts over.
pub async fn reset_checkpoint(args: ResetArgs, out: &mut impl Write) -> Result<()> {
    let location = cli::location(&args.checkpoint, "--checkpoint", &args.storage_options)?;
    reset(&location, args.wal_dir.as_deref()).await?;
    writeln!(
        out,
        "reset {}: the next run starts from batch 0 and reads every file again \
         (empty the output directory too if it should not keep old batches)",
        location.describe()
    )
    .map_err(|e| Error::io("writing to the console", e))
}
