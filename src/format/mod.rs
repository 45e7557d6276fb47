//! What the stream table's rows are: the format of the input (`--format text|csv|json|parquet`),
//! its columns (`--schema`, `--schema-from`, or `--infer-schema` once, kept in the checkpoint),
//! and what happens to a record that does not fit them (`--on-error`).
//!
//! Every format's table is its file columns, then the arrival time and the file name: `ts` and
//! `file` for text (so habits and the shipped queries carry over), `_arrival_time` and `_file`
//! for the structured formats (so they do not collide with the user's columns). In permissive
//! mode a structured table also has `_corrupt_record` after the user's columns: the raw
//! record where it could not be parsed (and the other columns NULL).
//!
//! CSV and JSON lines are decoded by arrow's own decoders (the ones DataFusion's readers use)
//! over the bytes the `lines` scan reads ([`records`]); Parquet by DataFusion's Parquet reader.
//! [`FormatSpec`] is what the checkpoint records: a restart with another format or schema is
//! refused, and an inferred schema never drifts.

pub mod csv;
pub mod json;
pub mod records;
pub mod resolve;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `--format`: how a unit's bytes become rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    /// Each line is a row, in one column `value`.
    #[default]
    Text,
    /// Comma-separated values (see --header, --delimiter, --quote, --escape, --null-value).
    Csv,
    /// JSON lines: one object per line, nested objects as structs, arrays as lists.
    Json,
    /// Parquet files.
    Parquet,
}

impl std::fmt::Display for FormatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FormatKind::Text => "text",
            FormatKind::Csv => "csv",
            FormatKind::Json => "json",
            FormatKind::Parquet => "parquet",
        })
    }
}

/// `--on-error`: what a record that does not fit the schema does (Spark's parse modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Spark's PERMISSIVE: a row with the raw record in `_corrupt_record`, other columns NULL.
    #[default]
    Permissive,
    /// Spark's DROPMALFORMED: the record is skipped (and counted).
    Drop,
    /// Spark's FAILFAST: the batch fails, naming the file, line, byte offset and reason.
    Fail,
}

/// The column that holds a malformed record in permissive mode.
pub const CORRUPT_RECORD: &str = "_corrupt_record";
/// The arrival-time and file-name columns of a structured format's table.
pub const ARRIVAL_TIME: &str = "_arrival_time";
pub const FILE_NAME: &str = "_file";

/// The CSV options users expect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escape: Option<u8>,
    /// A field exactly this is NULL (an empty field always is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_value: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            header: false,
            delimiter: b',',
            quote: b'"',
            escape: None,
            null_value: None,
        }
    }
}

/// What the checkpoint records about the stream table: a restart must give the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatSpec {
    pub kind: FormatKind,
    /// The stream table's name (`lines` unless `--name`).
    pub name: String,
    /// The file columns, as a SQL column list (given, or inferred once); none for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    #[serde(default)]
    pub on_error: OnError,
    /// `--event-time` names this column of the structured table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time_column: Option<String>,
}

impl Default for FormatSpec {
    fn default() -> Self {
        Self {
            kind: FormatKind::Text,
            name: "lines".into(),
            columns: None,
            csv: None,
            on_error: OnError::default(),
            event_time_column: None,
        }
    }
}

impl FormatSpec {
    /// Whether this is the text format of a checkpoint that records none (the only format
    /// dfstream had before formats were recorded).
    pub fn is_default_text(&self) -> bool {
        self == &FormatSpec::default()
    }
}

/// The stream table of a run: its format, columns, and where its special columns are.
#[derive(Debug, Clone)]
pub struct StreamFormat {
    pub spec: FormatSpec,
    /// The columns each file holds (for text: `value`; in permissive mode, the user's columns
    /// then `_corrupt_record`).
    pub file_schema: SchemaRef,
    /// The user's columns only: what a structured file is parsed as.
    pub parsed_schema: SchemaRef,
    /// The table: file columns, then arrival time and file name.
    pub table_schema: SchemaRef,
}

impl StreamFormat {
    /// The text format: `value`, `ts`, `file`.
    pub fn text() -> Self {
        Self::new(FormatSpec::default(), None).expect("the text format is valid")
    }

    /// The text format under another table name (`--name`).
    pub fn text_named(name: &str) -> Self {
        let spec = FormatSpec {
            name: name.to_string(),
            ..Default::default()
        };
        Self::new(spec, None).expect("the text format is valid")
    }

    /// The table `spec` describes; `parsed` is the user's columns (none for text).
    pub fn new(spec: FormatSpec, parsed: Option<SchemaRef>) -> Result<Self> {
        let lines = crate::batch::lines_schema();
        if spec.kind == FormatKind::Text {
            let file_schema = Arc::new(lines.project(&[0]).expect("lines has value"));
            return Ok(Self {
                spec,
                parsed_schema: Arc::clone(&file_schema),
                file_schema,
                table_schema: lines,
            });
        }
        let parsed = parsed.ok_or_else(|| {
            Error::Usage(format!(
                "--format {} needs the columns: --schema 'name TYPE, ...', --schema-from FILE, \
                 or --infer-schema",
                spec.kind
            ))
        })?;
        let mut fields: Vec<Field> = Vec::new();
        for field in parsed.fields() {
            for reserved in [CORRUPT_RECORD, ARRIVAL_TIME, FILE_NAME] {
                if field.name() == reserved {
                    return Err(Error::Usage(format!(
                        "the schema's column {reserved} collides with the column dfstream adds \
                         under that name; rename it"
                    )));
                }
            }
            // Every column may be NULL: an empty field, a missing key, a malformed record.
            let mut field = field.as_ref().clone().with_nullable(true);
            if spec.event_time_column.as_deref() == Some(field.name().as_str()) {
                // Read as the event time dfstream keeps: microseconds, UTC.
                field = field.with_data_type(event_time_type()).with_nullable(true);
            }
            fields.push(field);
        }
        if let Some(column) = &spec.event_time_column
            && !parsed.fields().iter().any(|f| f.name() == column)
        {
            return Err(Error::Usage(format!(
                "--event-time {column}: the schema has no such column (it has {}); with \
                 --format {}, --event-time names a column holding timestamps",
                parsed
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.kind
            )));
        }
        let parsed_schema = Arc::new(Schema::new(fields.clone()));
        if spec.on_error == OnError::Permissive && spec.kind != FormatKind::Parquet {
            fields.push(Field::new(CORRUPT_RECORD, DataType::Utf8, true));
        }
        let file_schema = Arc::new(Schema::new(fields.clone()));
        fields.push(Field::new(ARRIVAL_TIME, event_time_type(), false));
        fields.push(Field::new(FILE_NAME, DataType::Utf8, false));
        Ok(Self {
            spec,
            parsed_schema,
            file_schema,
            table_schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The table a checkpoint records (`None`: text `lines`).
    pub async fn recorded(spec: Option<FormatSpec>) -> Result<Self> {
        let spec = spec.unwrap_or_default();
        let parsed = match &spec.columns {
            Some(columns) => Some(parse_columns(columns, "the recorded schema").await?),
            None => None,
        };
        Self::new(spec, parsed)
    }

    /// What the checkpoint records (`None` for text `lines`, as before formats were).
    pub fn to_recorded(&self) -> Option<FormatSpec> {
        (!self.spec.is_default_text()).then(|| self.spec.clone())
    }

    /// `batch` (the file columns, as a [`Decoding`] of them all gives them) with the
    /// arrival-time and file columns of `unit`: a whole table row, as a scan gives it.
    pub fn with_unit_columns(
        &self,
        batch: &datafusion::arrow::array::RecordBatch,
        unit: &crate::source::InputUnit,
    ) -> Result<datafusion::arrow::array::RecordBatch> {
        use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        let ts: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![unit.ts_micros; rows]).with_timezone("UTC"),
        );
        columns.push(ts);
        columns.push(Arc::new(StringArray::from(vec![
            unit.display.as_str();
            rows
        ])));
        datafusion::arrow::array::RecordBatch::try_new(Arc::clone(&self.table_schema), columns)
            .map_err(|e| Error::Usage(format!("the rows of {}: {e}", unit.display)))
    }

    pub fn kind(&self) -> FormatKind {
        self.spec.kind
    }

    /// The table column that holds each row's event time: `ts` for text (set by
    /// `--event-time`), the named column, or else the arrival time.
    pub fn event_time_index(&self) -> usize {
        if self.kind() == FormatKind::Text {
            return 1;
        }
        self.spec
            .event_time_column
            .as_ref()
            .and_then(|c| self.table_schema.index_of(c).ok())
            .unwrap_or(self.file_schema.fields().len())
    }

    /// The table column naming each row's file.
    pub fn file_index(&self) -> usize {
        self.table_schema.fields().len() - 1
    }

    /// The index of `_corrupt_record` among the file columns, in permissive mode.
    pub fn corrupt_index(&self) -> Option<usize> {
        self.file_schema.index_of(CORRUPT_RECORD).ok()
    }
}

/// The type of `ts` and of an event-time column: microseconds, UTC.
pub fn event_time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of a SQL column list (`ts TIMESTAMP, page VARCHAR, tags VARCHAR[]`), as
/// DataFusion's SQL planner types them; an error points at the spot.
pub async fn parse_columns(columns: &str, what: &str) -> Result<SchemaRef> {
    let ctx = datafusion::prelude::SessionContext::new();
    let sql = format!("CREATE TABLE t ({columns})");
    let plan = ctx
        .state()
        .create_logical_plan(&sql)
        .await
        .map_err(|e| Error::Usage(format!("{what} '{columns}': {}", e.strip_backtrace())))?;
    match plan {
        datafusion::logical_expr::LogicalPlan::Ddl(
            datafusion::logical_expr::DdlStatement::CreateMemoryTable(create),
        ) => Ok(Arc::new(create.input.schema().as_arrow().clone())),
        _ => Err(Error::Usage(format!(
            "{what} '{columns}' is not a list of columns such as 'ts TIMESTAMP, page VARCHAR'"
        ))),
    }
}

/// `schema` as a SQL column list that [`parse_columns`] reads back (for an inferred schema,
/// kept in the checkpoint); `None` for a type without a SQL spelling here.
pub fn columns_sql(schema: &Schema) -> Option<String> {
    let columns: Option<Vec<String>> = schema
        .fields()
        .iter()
        .map(|f| {
            Some(format!(
                "\"{}\" {}",
                f.name().replace('"', "\"\""),
                sql_type(f.data_type())?
            ))
        })
        .collect();
    Some(columns?.join(", "))
}

fn sql_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            "VARCHAR".into()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("{}[]", sql_type(item.data_type())?)
        }
        DataType::Struct(fields) => {
            let inner: Option<Vec<String>> = fields
                .iter()
                .map(|f| Some(format!("\"{}\" {}", f.name(), sql_type(f.data_type())?)))
                .collect();
            format!("STRUCT({})", inner?.join(", "))
        }
        _ => return None,
    })
}

/// How a scan turns each file's bytes into batches of the file columns it reads.
#[derive(Debug, Clone)]
pub enum Decoding {
    /// Text: lines, split and checked by [`crate::batch::LineDecoder`].
    Lines {
        projection: crate::batch::Projection,
        max_line_bytes: usize,
    },
    /// CSV or JSON records, by [`records::RecordDecoder`].
    Records {
        format: Arc<dyn records::RecordFormat>,
        on_error: OnError,
        /// Longer records are malformed (`--max-line-bytes`).
        max_record_bytes: usize,
        /// Per column read: its place among the parsed columns read, or `None` for
        /// `_corrupt_record`.
        columns: Arc<[Option<usize>]>,
        schema: SchemaRef,
    },
}

impl Decoding {
    /// Decoding of `stream`'s file columns `file_indices` (in that order). Parquet files are
    /// read by DataFusion's reader instead: an error here.
    pub fn new(
        stream: &StreamFormat,
        file_indices: &[usize],
        max_line_bytes: usize,
    ) -> Result<Self> {
        let corrupt = stream.corrupt_index();
        let parsed: Vec<usize> = file_indices
            .iter()
            .copied()
            .filter(|i| Some(*i) != corrupt)
            .collect();
        let mut next = 0;
        let columns: Arc<[Option<usize>]> = file_indices
            .iter()
            .map(|i| {
                (Some(*i) != corrupt).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let schema = Arc::new(
            stream
                .file_schema
                .project(file_indices)
                .map_err(|e| Error::Usage(format!("the columns read: {e}")))?,
        );
        let format: Arc<dyn records::RecordFormat> = match stream.kind() {
            FormatKind::Text => {
                let projection = crate::batch::Projection::new(Some(&file_indices.to_vec()))
                    .map_err(|e| Error::Usage(format!("the columns read: {e}")))?;
                return Ok(Decoding::Lines {
                    projection,
                    max_line_bytes,
                });
            }
            FormatKind::Csv => Arc::new(csv::Csv::new(
                Arc::clone(&stream.parsed_schema),
                stream.spec.csv.clone().unwrap_or_default(),
                parsed,
            )),
            FormatKind::Json => {
                Arc::new(json::Json::new(Arc::clone(&stream.parsed_schema), &parsed))
            }
            FormatKind::Parquet => {
                return Err(Error::Usage(
                    "Parquet files are read by DataFusion's Parquet reader".into(),
                ));
            }
        };
        Ok(Decoding::Records {
            format,
            on_error: stream.spec.on_error,
            max_record_bytes: max_line_bytes,
            columns,
            schema,
        })
    }

    /// A decoder for one file.
    pub fn decoder<'a>(
        &'a self,
        unit: &'a crate::source::InputUnit,
        counters: &'a crate::batch::TextCounters,
    ) -> Box<dyn crate::batch::Decode + 'a> {
        match self {
            Decoding::Lines {
                projection,
                max_line_bytes,
            } => Box::new(crate::batch::LineDecoder::new(
                projection,
                counters,
                &unit.display,
                unit.ts_micros,
                *max_line_bytes,
            )),
            Decoding::Records {
                format,
                on_error,
                max_record_bytes,
                columns,
                schema,
            } => Box::new(records::RecordDecoder::new(
                format.as_ref(),
                *on_error,
                *max_record_bytes,
                columns,
                Arc::clone(schema),
                counters,
                unit,
            )),
        }
    }
}
