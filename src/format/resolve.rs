//! The stream table a run asks for: `--format` and its flags checked together (a flag that
//! does nothing in the combination is refused), the columns read from `--schema`,
//! `--schema-from`, the checkpoint (an inferred schema, kept) or the first input file.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use object_store::ObjectStore;

use super::{
    CsvOptions, FormatKind, FormatSpec, OnError, StreamFormat, columns_sql, parse_columns,
};
use crate::cli::FormatArgs;
use crate::error::{Error, Result};
use crate::storage::Location;

/// The stream table of a run; see the module docs.
pub async fn resolve(
    args: &FormatArgs,
    event_time: Option<&str>,
    input: Option<&Location>,
    socket: bool,
    checkpoint: &Location,
) -> Result<StreamFormat> {
    let kind = args.format;
    let usage = |m: String| Err(Error::Usage(m));
    if kind == FormatKind::Parquet && socket {
        return usage(
            "--socket reads lines (text, CSV or JSON records); Parquet comes in files only".into(),
        );
    }
    let csv_flags = [
        ("--header", args.header),
        ("--delimiter", args.delimiter.is_some()),
        ("--quote", args.quote.is_some()),
        ("--escape", args.escape.is_some()),
        ("--null-value", args.null_value.is_some()),
    ];
    if kind != FormatKind::Csv
        && let Some((flag, _)) = csv_flags.iter().find(|(_, given)| *given)
    {
        return usage(format!(
            "{flag} is a CSV option; the input is --format {kind}"
        ));
    }
    let records = matches!(kind, FormatKind::Csv | FormatKind::Json);
    if !records && args.on_error.is_some() {
        return usage(format!(
            "--on-error decides what a malformed CSV or JSON record does; --format {kind} has \
             no records to reject"
        ));
    }
    if !records && args.bad_records.is_some() {
        return usage(format!(
            "--bad-records keeps malformed CSV or JSON records; --format {kind} has none"
        ));
    }
    if args.on_error == Some(OnError::Fail) && args.bad_records.is_some() {
        return usage(
            "--bad-records keeps the records --on-error permissive or drop let through; with \
             --on-error fail the first one fails the batch"
                .into(),
        );
    }
    let given = args.schema.is_some() || args.schema_from.is_some() || args.infer_schema;
    if kind == FormatKind::Text {
        if given {
            return usage(
                "--schema, --schema-from and --infer-schema give the columns of csv, json or \
                 parquet input; text input has one column, value (add --format)"
                    .into(),
            );
        }
        return Ok(StreamFormat::text_named(&args.name));
    }
    let event_time_column = event_time.map(|e| e.trim().trim_matches('"').to_string());
    if let Some(column) = &event_time_column
        && !column.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return usage(format!(
            "--event-time {column:?}: with --format {kind}, --event-time names a column \
             holding timestamps (declare it TIMESTAMP; compute other times in the query)"
        ));
    }
    let csv = (kind == FormatKind::Csv).then(|| {
        let default = CsvOptions::default();
        CsvOptions {
            header: args.header,
            delimiter: args.delimiter.unwrap_or(default.delimiter),
            quote: args.quote.unwrap_or(default.quote),
            escape: args.escape,
            null_value: args.null_value.clone(),
        }
    });
    let mut spec = FormatSpec {
        kind,
        name: args.name.clone(),
        columns: None,
        csv,
        on_error: if records {
            args.on_error.unwrap_or_default()
        } else {
            OnError::default()
        },
        event_time_column,
    };
    let columns = match (&args.schema, &args.schema_from) {
        (Some(columns), _) => columns.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading --schema-from {}", path.display()), e))?
            .trim()
            .trim_end_matches(';')
            .to_string(),
        (None, None) if args.infer_schema => match recorded_columns(checkpoint, &spec).await {
            Some(columns) => columns,
            None => infer(&spec, input).await?,
        },
        (None, None) => {
            return usage(format!(
                "--format {kind} needs the columns: --schema 'name TYPE, ...', --schema-from \
                 FILE, or --infer-schema (inferred once from the first file, then kept in the \
                 checkpoint)"
            ));
        }
    };
    let what = if args.schema_from.is_some() {
        "--schema-from"
    } else {
        "--schema"
    };
    let parsed = parse_columns(&columns, what).await?;
    spec.columns = Some(columns);
    StreamFormat::new(spec, Some(parsed))
}

/// The columns a checkpoint kept for this format (from an earlier `--infer-schema` start).
async fn recorded_columns(checkpoint: &Location, spec: &FormatSpec) -> Option<String> {
    let (_, meta) = crate::state::checkpoint::Checkpoint::open_read_only(checkpoint)
        .await
        .ok()?;
    let recorded = meta.format?;
    (recorded.kind == spec.kind)
        .then_some(recorded.columns)
        .flatten()
}

/// The columns of the first input file (by name), as DataFusion's readers infer them.
async fn infer(spec: &FormatSpec, input: Option<&Location>) -> Result<String> {
    let kind = spec.kind;
    let Some(input) = input else {
        return Err(Error::Usage(format!(
            "--infer-schema infers the columns from the first file of --input; with --format \
             {kind} over a socket, give --schema"
        )));
    };
    let (store, prefix): (Arc<dyn ObjectStore>, object_store::path::Path) = match input {
        Location::Local(dir) => {
            let dir = std::fs::canonicalize(dir)
                .map_err(|e| Error::io(format!("opening --input {}", dir.display()), e))?;
            let prefix = object_store::path::Path::from_absolute_path(&dir)
                .map_err(|e| Error::Usage(format!("--input {}: {e}", dir.display())))?;
            (
                Arc::new(object_store::local::LocalFileSystem::new()),
                prefix,
            )
        }
        Location::Remote(remote) => (Arc::clone(&remote.store), remote.prefix.clone()),
    };
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| {
            Error::io(
                format!("listing {}", input.describe()),
                crate::storage::io_error(e),
            )
        })?;
    let mut files: Vec<_> = listing
        .objects
        .into_iter()
        .filter(|o| {
            o.location
                .filename()
                .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
        })
        .collect();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let Some(first) = files.into_iter().next() else {
        return Err(Error::Usage(format!(
            "--infer-schema: {} holds no file yet to infer the columns from; give --schema, \
             or start the job once a file is there",
            input.describe()
        )));
    };
    let format: Arc<dyn FileFormat> = match kind {
        FormatKind::Csv => {
            let csv = spec.csv.clone().unwrap_or_default();
            let mut format = CsvFormat::default()
                .with_has_header(csv.header)
                .with_delimiter(csv.delimiter)
                .with_quote(csv.quote)
                .with_escape(csv.escape);
            if let Some(null) = csv.null_value {
                format = format.with_null_regex(Some(format!("^(?:|{})$", regex::escape(&null))));
            }
            Arc::new(format)
        }
        FormatKind::Json => Arc::new(JsonFormat::default()),
        FormatKind::Parquet => Arc::new(ParquetFormat::default()),
        FormatKind::Text => unreachable!("text has no columns to infer"),
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let schema: SchemaRef = format
        .infer_schema(&ctx.state(), &store, std::slice::from_ref(&first))
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "--infer-schema: inferring the columns of {}: {}",
                first.location,
                e.strip_backtrace()
            ))
        })?;
    let columns = columns_sql(&schema).ok_or_else(|| {
        Error::Usage(format!(
            "--infer-schema: {} has a column type dfstream cannot record ({schema:?}); give \
             --schema",
            first.location
        ))
    })?;
    log::info!(
        "--infer-schema: the columns of {} are {columns}; kept in the checkpoint for later starts",
        first.location
    );
    Ok(columns)
}
