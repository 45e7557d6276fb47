//! Static tables the query joins with the stream (`--table NAME=PATH_OR_URL`): a stopword
//! list, a dimension. Each is one CSV (with a header), JSON lines or Parquet file, local or
//! on an object store, read whole into memory.
//!
//! Before each new batch the file is looked at (one `stat` or HEAD): when it changed, its new
//! version is read and becomes what the batch, and later ones, join with. A version is known
//! by a hash of its bytes; the batch's offsets record the version of every table, and each
//! version's bytes are copied into the checkpoint (`tables/NAME.VERSION.arrow`, its rows as Arrow IPC) before a batch
//! uses it, so a replay after a crash joins with exactly what the batch first joined with,
//! whatever the file holds by then. A new version that cannot be read (half written) is
//! logged and the previous one kept. The columns are those of the first version read;
//! a later version with other columns is refused (the query was planned with them).
//!
//! In the query a table is an ordinary table whose rows are swapped between triggers: the
//! plan, built once, reads them when it runs ([`StaticScanExec`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::state::checkpoint::Checkpoint;
use crate::storage::{Location, StorageOptions};

/// The rows a table has now; swapped when a batch uses another version.
type Rows = Arc<RwLock<Arc<Vec<RecordBatch>>>>;

/// Which reader a table's file needs, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Csv,
    Json,
    Parquet,
}

/// One `--table`.
struct StaticTable {
    name: String,
    /// As given, for messages and the checkpoint's metadata.
    given: String,
    location: Location,
    kind: FileKind,
    schema: SchemaRef,
    rows: Rows,
    /// The version in `rows`, and the file's look (modification time or ETag, size) when
    /// it was read.
    version: String,
    look: Option<(String, u64)>,
    /// Versions this run knows the checkpoint keeps.
    kept: std::collections::HashSet<String>,
}

/// Every `--table` of a run; see the module docs.
#[derive(Default)]
pub struct StaticTables {
    tables: Vec<StaticTable>,
}

impl StaticTables {
    /// Reads each table's current version (its columns are fixed from it).
    pub async fn open(specs: &[(String, String)], options: &StorageOptions) -> Result<Self> {
        let mut tables = Vec::new();
        for (name, given) in specs {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::Usage(format!(
                    "--table {name}={given}: the name must be a SQL identifier (letters, digits, _)"
                )));
            }
            if tables.iter().any(|t: &StaticTable| &t.name == name) {
                return Err(Error::Usage(format!("--table {name} is given twice")));
            }
            let kind = kind_of(given)?;
            let location = Location::parse(given, "--table", options)?;
            let (look, bytes) = read(&location, given)
                .await
                .map_err(|e| Error::Usage(format!("--table {name}: {e}")))?;
            let batches = parse(kind, &bytes, None)
                .map_err(|e| Error::Usage(format!("--table {name}={given}: {e}")))?;
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| Error::Usage(format!("--table {name}={given}: no columns")))?;
            tables.push(StaticTable {
                name: name.clone(),
                given: given.clone(),
                location,
                kind,
                schema,
                rows: Arc::new(RwLock::new(Arc::new(batches))),
                version: version_of(&bytes),
                look: Some(look),
                kept: Default::default(),
            });
        }
        Ok(Self { tables })
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// What the checkpoint's metadata records: each table's name and where it is read.
    pub fn recorded(&self) -> BTreeMap<String, String> {
        self.tables
            .iter()
            .map(|t| (t.name.clone(), t.given.clone()))
            .collect()
    }

    /// Each table as the session sees it (its rows swapped as versions change), by name.
    pub fn providers(&self) -> Vec<(String, Arc<dyn TableProvider>)> {
        self.tables
            .iter()
            .map(|table| {
                let provider: Arc<dyn TableProvider> = Arc::new(StaticTableProvider {
                    name: table.name.clone(),
                    schema: Arc::clone(&table.schema),
                    rows: Arc::clone(&table.rows),
                });
                (table.name.clone(), provider)
            })
            .collect()
    }

    /// Before a new batch: reads every table that changed since it was read, keeps each
    /// version the batch uses in the checkpoint, and returns them by table name.
    pub async fn refresh(&mut self, checkpoint: &Checkpoint) -> Result<BTreeMap<String, String>> {
        let mut versions = BTreeMap::new();
        for table in &mut self.tables {
            if let Err(e) = table.refresh().await {
                log::warn!(
                    "--table {}: the file changed but cannot be read ({e}); the version read \
                     before is used",
                    table.name
                );
            }
            if !table.kept.contains(&table.version) {
                checkpoint
                    .keep_table_version(&table.name, &table.version, table.rows_as_ipc()?)
                    .await?;
                table.kept.insert(table.version.clone());
            }
            versions.insert(table.name.clone(), table.version.clone());
        }
        Ok(versions)
    }

    /// For a batch run again: makes each table the version the batch recorded, from the
    /// checkpoint's copy.
    pub async fn use_versions(
        &mut self,
        versions: &BTreeMap<String, String>,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        for table in &mut self.tables {
            let Some(version) = versions.get(&table.name) else {
                continue;
            };
            if *version == table.version {
                continue;
            }
            let batches = checkpoint
                .table_version(&table.name, version)
                .await?
                .ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "the batch joined --table {} at version {version}, whose copy is \
                         missing from {}",
                        table.name,
                        checkpoint.describe()
                    ))
                })?;
            table.set_rows(batches, version.clone())?;
            // The file's next change is read again at the next new batch.
            table.look = None;
            table.kept.insert(version.clone());
        }
        Ok(())
    }
}

/// The version of each static table every kept batch of `checkpoint` recorded, by table,
/// in batch order.
pub async fn recorded_versions(
    checkpoint: &Checkpoint,
) -> Result<BTreeMap<String, Vec<(u64, String)>>> {
    let mut versions: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for batch in checkpoint.kept_batches().await? {
        if let Some(tables) = checkpoint.offsets(batch).await.and_then(|o| o.tables) {
            for (name, version) in tables {
                versions.entry(name).or_default().push((batch, version));
            }
        }
    }
    Ok(versions)
}

/// Version `version` of static table `name` as the checkpoint keeps it, as a table.
pub async fn kept_version(
    checkpoint: &Checkpoint,
    name: &str,
    version: &str,
) -> Result<Arc<dyn TableProvider>> {
    let rows = checkpoint
        .table_version(name, version)
        .await?
        .ok_or_else(|| {
            Error::Checkpoint(format!("the copy of {name} version {version} is missing"))
        })?;
    let schema = rows
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Checkpoint(format!("the copy of {name} is empty")))?;
    Ok(Arc::new(StaticTableProvider {
        name: name.to_string(),
        schema,
        rows: Arc::new(RwLock::new(Arc::new(rows))),
    }))
}

/// The static tables a checkpoint's job joined with, as the newest kept batch that records
/// each joined with it: for planning the job's query again (`dfstream state`).
pub async fn recorded_providers(
    checkpoint: &Checkpoint,
    names: &BTreeMap<String, String>,
) -> Result<Vec<(String, Arc<dyn TableProvider>)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut versions = recorded_versions(checkpoint).await?;
    let mut providers = Vec::new();
    for name in names.keys() {
        let Some((_, version)) = versions.remove(name).and_then(|mut v| v.pop()) else {
            return Err(Error::Checkpoint(format!(
                "no kept batch of {} records the version of the static table {name}",
                checkpoint.describe()
            )));
        };
        providers.push((
            name.clone(),
            kept_version(checkpoint, name, &version).await?,
        ));
    }
    Ok(providers)
}

impl StaticTable {
    /// Reads the file again if it changed since it was read.
    async fn refresh(&mut self) -> Result<()> {
        let look = look(&self.location).await?;
        if self.look.as_ref() == Some(&look) {
            return Ok(());
        }
        let (look, bytes) = read(&self.location, &self.given).await?;
        if version_of(&bytes) != self.version {
            self.install(&bytes, Some(look))?;
            log::info!(
                "--table {}: a new version ({}) from the next batch on",
                self.name,
                self.version
            );
        } else {
            self.look = Some(look);
        }
        Ok(())
    }

    /// Makes `bytes` the table's rows.
    fn install(&mut self, bytes: &[u8], look: Option<(String, u64)>) -> Result<()> {
        let batches = parse(self.kind, bytes, Some(&self.schema))
            .map_err(|e| Error::Usage(format!("--table {}: {e}", self.name)))?;
        self.set_rows(batches, version_of(bytes))?;
        self.look = look;
        Ok(())
    }

    /// Makes `batches` the table's rows, as `version`.
    fn set_rows(&mut self, batches: Vec<RecordBatch>, version: String) -> Result<()> {
        if let Some(other) = batches.iter().find(|b| b.schema() != self.schema) {
            return Err(Error::Usage(format!(
                "--table {}: its columns changed from {:?} to {:?}; the query was planned with \
                 the first ones (restart the job with a new checkpoint to use the new ones)",
                self.name,
                self.schema.fields(),
                other.schema().fields()
            )));
        }
        *self.rows.write().expect("table rows poisoned") = Arc::new(batches);
        self.version = version;
        Ok(())
    }

    /// The rows in use, as Arrow IPC (what the checkpoint keeps of a version).
    fn rows_as_ipc(&self) -> Result<Vec<u8>> {
        let rows = self.rows.read().expect("table rows poisoned").clone();
        rows_to_ipc(&self.schema, &rows)
            .map_err(|e| Error::io("encoding a table version", std::io::Error::other(e)))
    }
}

/// `rows` as an Arrow IPC file.
pub(crate) fn rows_to_ipc(
    schema: &SchemaRef,
    rows: &[RecordBatch],
) -> std::result::Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut writer = datafusion::arrow::ipc::writer::FileWriter::try_new(&mut out, schema)?;
    for batch in rows {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// The columns and rows of an Arrow IPC file.
pub(crate) fn rows_of_ipc(
    bytes: &[u8],
) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), datafusion::arrow::error::ArrowError> {
    let reader =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    Ok((schema, reader.collect::<std::result::Result<_, _>>()?))
}

/// A version's name: a hash of its bytes.
fn version_of(bytes: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash64::oneshot(0, bytes))
}

fn kind_of(given: &str) -> Result<FileKind> {
    let lower = given.to_ascii_lowercase();
    let lower = lower.split('?').next().unwrap_or_default();
    if lower.ends_with(".csv") {
        Ok(FileKind::Csv)
    } else if lower.ends_with(".json") || lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        Ok(FileKind::Json)
    } else if lower.ends_with(".parquet") {
        Ok(FileKind::Parquet)
    } else {
        Err(Error::Usage(format!(
            "--table {given}: the file's extension says its format: .csv (with a header), \
             .json / .jsonl (JSON lines) or .parquet"
        )))
    }
}

/// The file's look: modification time (or ETag) and size.
async fn look(location: &Location) -> Result<(String, u64)> {
    match location {
        Location::Local(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| Error::io(format!("reading --table {}", path.display()), e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok((modified.to_string(), meta.len()))
        }
        Location::Remote(remote) => {
            let meta = remote.store.head(&remote.prefix).await.map_err(|e| {
                Error::io(
                    format!("reading --table {}", remote.url),
                    crate::storage::io_error(e),
                )
            })?;
            let tag = meta
                .e_tag
                .unwrap_or_else(|| meta.last_modified.to_rfc3339());
            Ok((tag, meta.size))
        }
    }
}

/// The file's look and bytes.
async fn read(location: &Location, given: &str) -> Result<((String, u64), Vec<u8>)> {
    let seen = look(location).await?;
    let bytes = match location {
        Location::Local(path) => {
            std::fs::read(path).map_err(|e| Error::io(format!("reading --table {given}"), e))?
        }
        Location::Remote(remote) => {
            let got = remote.store.get(&remote.prefix).await;
            let bytes = match got {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            };
            bytes
                .map_err(|e| {
                    Error::io(
                        format!("reading --table {given}"),
                        crate::storage::io_error(e),
                    )
                })?
                .to_vec()
        }
    };
    Ok((seen, bytes))
}

/// The rows of a file's bytes (with `schema`, or inferred from the first 1000 records).
fn parse(
    kind: FileKind,
    bytes: &[u8],
    schema: Option<&SchemaRef>,
) -> std::result::Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::csv;
    use datafusion::arrow::json;
    use std::io::Cursor;
    let batches: Vec<RecordBatch> = match kind {
        FileKind::Csv => {
            let schema = match schema {
                Some(s) => Arc::clone(s),
                None => Arc::new(
                    csv::reader::Format::default()
                        .with_header(true)
                        .infer_schema(Cursor::new(bytes), Some(1000))?
                        .0,
                ),
            };
            csv::ReaderBuilder::new(schema)
                .with_header(true)
                .build(Cursor::new(bytes))?
                .collect::<std::result::Result<_, _>>()?
        }
        FileKind::Json => {
            let schema = match schema {
                Some(s) => Arc::clone(s),
                None => {
                    Arc::new(json::reader::infer_json_schema(Cursor::new(bytes), Some(1000))?.0)
                }
            };
            json::ReaderBuilder::new(schema)
                .build(Cursor::new(bytes))?
                .collect::<std::result::Result<_, _>>()?
        }
        FileKind::Parquet => {
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::copy_from_slice(bytes),
            )
            .map_err(|e| datafusion::arrow::error::ArrowError::ExternalError(Box::new(e)))?
            .build()
            .map_err(|e| datafusion::arrow::error::ArrowError::ExternalError(Box::new(e)))?
            .collect::<std::result::Result<_, _>>()?
        }
    };
    if batches.is_empty() {
        // No rows: still the columns.
        let schema = match (schema, kind) {
            (Some(s), _) => Arc::clone(s),
            _ => {
                return Err(datafusion::arrow::error::ArrowError::ParseError(
                    "the file has no rows to take its columns from".into(),
                ));
            }
        };
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}

/// A static table in the session: its rows are read when the plan runs.
#[derive(Debug)]
struct StaticTableProvider {
    name: String,
    schema: SchemaRef,
    rows: Rows,
}

#[async_trait]
impl TableProvider for StaticTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let columns = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let schema = Arc::new(self.schema.project(&columns)?);
        Ok(Arc::new(StaticScanExec::new(
            self.name.clone(),
            Arc::clone(&self.rows),
            columns,
            schema,
        )))
    }
}

/// Reads a static table's current rows when it runs.
#[derive(Debug)]
pub struct StaticScanExec {
    name: String,
    rows: Rows,
    columns: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl StaticScanExec {
    fn new(name: String, rows: Rows, columns: Vec<usize>, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            name,
            rows,
            columns,
            schema,
            properties: Arc::new(properties),
        }
    }

    /// A scan of `rows` (with the columns `schema` names) and nothing swapped in later: a
    /// plan shipped to a cluster carries the rows its batch joins with.
    pub fn of_rows(name: String, schema: SchemaRef, rows: Vec<RecordBatch>) -> Self {
        let columns = (0..schema.fields().len()).collect();
        Self::new(name, Arc::new(RwLock::new(Arc::new(rows))), columns, schema)
    }

    /// The table's name in the query.
    pub fn table(&self) -> &str {
        &self.name
    }

    /// How many rows it reads if it runs now, and their size in memory (in its columns).
    pub fn size_now(&self) -> datafusion::common::Result<(usize, usize)> {
        let rows = self.rows_now()?;
        Ok((
            rows.iter().map(|b| b.num_rows()).sum(),
            rows.iter().map(|b| b.get_array_memory_size()).sum(),
        ))
    }

    /// The rows it reads if it runs now, in its columns.
    pub fn rows_now(&self) -> datafusion::common::Result<Vec<RecordBatch>> {
        let rows = self.rows.read().expect("table rows poisoned").clone();
        Ok(rows
            .iter()
            .map(|b| b.project(&self.columns))
            .collect::<std::result::Result<Vec<_>, _>>()?)
    }
}

impl DisplayAs for StaticScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StaticScanExec: table={}", self.name)
    }
}

impl ExecutionPlan for StaticScanExec {
    fn name(&self) -> &str {
        "StaticScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// Its size as it is when the query is planned: a small table becomes the build side
    /// of a join (collected once, the stream's partitions probing it) rather than both
    /// sides being repartitioned by key every trigger. Only an estimate (`Inexact`): the rows
    /// change between triggers, so nothing may be answered from it (an exact row count would
    /// let DataFusion fold `(SELECT count(*) FROM t)` into a constant at planning).
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> datafusion::common::Result<Arc<Statistics>> {
        let (rows, bytes) = self.size_now()?;
        Ok(Arc::new(
            Statistics::new_unknown(&self.schema)
                .with_num_rows(Precision::Inexact(rows))
                .with_total_byte_size(Precision::Inexact(bytes)),
        ))
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        Ok(Box::pin(MemoryStream::try_new(
            self.rows_now()?,
            Arc::clone(&self.schema),
            None,
        )?))
    }
}
