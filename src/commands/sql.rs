//! `dfstream sql`: one query over files (the job's Parquet output), printed as a table, CSV or
//! JSON, for people without DataFusion CLI at hand.

use std::io::Write;

use datafusion::arrow::array::RecordBatch;

use crate::cli::{SqlArgs, SqlFormat};
use crate::error::{Context, Error, Result};
use crate::query::plan::{self, QueryFile};

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
    print(&batches, args.format, out)
}

/// Prints `batches` as a table, CSV or JSON.
pub fn print(batches: &[RecordBatch], format: SqlFormat, out: &mut impl Write) -> Result<()> {
    let to_io = |e: datafusion::arrow::error::ArrowError| {
        Error::io("printing the result", std::io::Error::other(e))
    };
    match format {
        SqlFormat::Table => {
            let table =
                datafusion::arrow::util::pretty::pretty_format_batches(batches).map_err(to_io)?;
            writeln!(out, "{table}").map_err(|e| Error::io("printing the result", e))?;
        }
        SqlFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches {
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
