//! A trigger's plan as bytes: the [`PhysicalExtensionCodec`] for the plan nodes dfstream adds
//! to DataFusion's, so that `datafusion-proto` can ship a bound trigger plan to another process
//! (a Ballista cluster's scheduler and executors, see [`super::engine`]).
//!
//! Four nodes need it. The `lines` scan ([`LinesSource`] in a `DataSourceExec`) is written as
//! DataFusion's own `FileScanExecConf` (file groups, partition values, projection, limit) plus,
//! per file, the [`InputUnit`] it reads: a local path (absolute), or an object path with the
//! URL of its store (which the receiving runtime must have registered, as DataFusion's own
//! scans need), the pinned size or byte range, and the version taken. [`EventTimeExec`] is
//! written as its event-time expression, its watermark (delay and value when the plan was
//! bound) and the columns it keeps. [`ReportExec`], the root of a shipped plan, as the
//! sources of the trigger's files. A static table's scan ([`StaticScanExec`]) as the rows the
//! batch joins with, in its columns (Arrow IPC, at most [`SHIPPED_TABLE_LIMIT`] bytes, since a
//! plan travels in one gRPC message to each task: a broadcast, as Spark's of a small table).
//! The trigger-time functions (`now()` and its kin) are written with the time they answer.
//!
//! What stays with the process that decodes: the counters a scan reports into (the codec's
//! own, or a decoded [`ReportExec`]'s, whose report rows bring them back to the driver).

use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use datafusion::common::{Result, internal_datafusion_err, not_impl_err};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_protobuf_file_scan_config;
use datafusion_proto::physical_plan::to_proto::serialize_file_scan_config;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{FileScanExecConf, PhysicalExprNode};
use prost::Message;

use super::engine::report::ReportExec;
use super::functions::WindowFunc;
use super::lines::TableColumns;
use super::lines::{EventTime, Watermark};
use super::scan::{EventTimeExec, EventTimeStage, LinesSource, Reading, partitioned_file};
use crate::batch::TextCounters;
use crate::format::{FormatKind, FormatSpec, StreamFormat};
use crate::source::{InputUnit, Place};
use crate::tables::StaticScanExec;

/// Encodes and decodes dfstream's plan nodes; decoded scans count into `counters`.
#[derive(Debug, Clone, Default)]
pub struct PlanCodec {
    counters: Arc<TextCounters>,
}

impl PlanCodec {
    /// A codec whose decoded scans report into `counters`.
    pub fn new(counters: Arc<TextCounters>) -> Self {
        Self { counters }
    }
}

/// One encoded node.
#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(oneof = "Node", tags = "1, 2, 3, 4")]
    node: Option<Node>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Node {
    #[prost(message, tag = "1")]
    Lines(LinesScanProto),
    #[prost(message, tag = "2")]
    EventTime(EventTimeProto),
    /// [`ReportExec`]: nothing but its input.
    #[prost(message, tag = "3")]
    Report(ReportProto),
    #[prost(message, tag = "4")]
    Static(StaticTableProto),
}

/// The most bytes of a static table's rows a shipped plan carries (Ballista's gRPC messages
/// carry at most 16 MiB, the whole plan included).
pub const SHIPPED_TABLE_LIMIT: usize = 8 << 20;

/// A static table's scan: its name and the rows it reads, as an Arrow IPC file.
#[derive(Clone, PartialEq, Message)]
struct StaticTableProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", tag = "2")]
    rows: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ReportProto {
    /// The source of each of the trigger's files, by the name its `file` column shows.
    #[prost(message, repeated, tag = "1")]
    sources: Vec<FileSourceProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FileSourceProto {
    #[prost(string, tag = "1")]
    display: String,
    #[prost(string, tag = "2")]
    source: String,
}

/// A `lines` scan: DataFusion's part, and the input unit of each file in group order.
#[derive(Clone, PartialEq, Message)]
struct LinesScanProto {
    #[prost(message, optional, tag = "1")]
    config: Option<FileScanExecConf>,
    #[prost(message, repeated, tag = "2")]
    units: Vec<UnitProto>,
    #[prost(uint64, tag = "3")]
    max_line_bytes: u64,
    #[prost(message, optional, tag = "4")]
    format: Option<FormatProto>,
}

/// The stream table's format: its recorded spec (JSON) and the user's columns.
#[derive(Clone, PartialEq, Message)]
struct FormatProto {
    #[prost(string, tag = "1")]
    spec_json: String,
    #[prost(message, optional, tag = "2")]
    parsed: Option<datafusion_proto::protobuf::Schema>,
}

fn encode_format(format: &StreamFormat) -> Result<FormatProto> {
    let spec_json = serde_json::to_string(&format.spec)
        .map_err(|e| internal_datafusion_err!("encoding the stream's format: {e}"))?;
    let parsed = (format.kind() != FormatKind::Text)
        .then(|| datafusion_proto::protobuf::Schema::try_from(&*format.parsed_schema))
        .transpose()?;
    Ok(FormatProto { spec_json, parsed })
}

fn decode_format(format: Option<FormatProto>) -> Result<Arc<StreamFormat>> {
    let Some(format) = format else {
        return Ok(Arc::new(StreamFormat::text()));
    };
    let spec: FormatSpec = serde_json::from_str(&format.spec_json)
        .map_err(|e| internal_datafusion_err!("a stream format that does not decode: {e}"))?;
    let parsed = format
        .parsed
        .as_ref()
        .map(|p| datafusion::arrow::datatypes::Schema::try_from(p).map(Arc::new))
        .transpose()?;
    // The spec's event-time column is already a timestamp in the parsed schema.
    StreamFormat::new(spec, parsed)
        .map(Arc::new)
        .map_err(|e| internal_datafusion_err!("{e}"))
}

/// An [`InputUnit`]: a local path (bytes, as the OS has them) or a store URL and object path.
#[derive(Clone, PartialEq, Message)]
struct UnitProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    local_path: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    store_url: Option<String>,
    #[prost(string, optional, tag = "3")]
    object_path: Option<String>,
    #[prost(string, tag = "4")]
    display: String,
    #[prost(int64, tag = "5")]
    ts_micros: i64,
    #[prost(uint64, optional, tag = "6")]
    range_start: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    range_end: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    size: Option<u64>,
    #[prost(string, optional, tag = "9")]
    version: Option<String>,
    #[prost(string, tag = "10")]
    source: String,
}

#[derive(Clone, PartialEq, Message)]
struct EventTimeProto {
    #[prost(string, optional, tag = "1")]
    event_time_text: Option<String>,
    #[prost(message, optional, tag = "2")]
    event_time_expr: Option<PhysicalExprNode>,
    /// Delay and value, microseconds.
    #[prost(int64, optional, tag = "3")]
    watermark_delay: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    watermark_current: Option<i64>,
    #[prost(uint32, repeated, tag = "5")]
    keep: Vec<u32>,
    #[prost(message, optional, tag = "6")]
    format: Option<FormatProto>,
    /// The table columns its input holds.
    #[prost(uint32, repeated, tag = "7")]
    input: Vec<u32>,
}

impl PhysicalExtensionCodec for PlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = NodeProto::decode(buf).map_err(|e| {
            internal_datafusion_err!("a dfstream plan node that does not decode: {e}")
        })?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        match node.node {
            Some(Node::Lines(scan)) => self.decode_scan(scan, ctx, &decode_ctx, proto_converter),
            Some(Node::EventTime(stage)) => {
                let [input] = inputs else {
                    return Err(internal_datafusion_err!("EventTimeExec needs one input"));
                };
                let format = decode_format(stage.format)?;
                let event_time = match (stage.event_time_text, stage.event_time_expr) {
                    (Some(text), Some(expr)) => {
                        let expr = proto_converter.proto_to_physical_expr(
                            &expr,
                            &format.table_schema,
                            &decode_ctx,
                        )?;
                        Some(Arc::new(EventTime {
                            text,
                            expr,
                            columns: TableColumns::of(&format),
                        }))
                    }
                    _ => None,
                };
                let watermark = stage.watermark_delay.map(|delay| {
                    Arc::new(Watermark::fixed(
                        delay,
                        stage.watermark_current.unwrap_or(i64::MIN),
                    ))
                });
                let stage = EventTimeStage {
                    event_time,
                    watermark,
                    counters: Arc::clone(&self.counters),
                    input: stage.input.iter().map(|&i| i as usize).collect(),
                    keep: stage.keep.iter().map(|&i| i as usize).collect(),
                    format,
                };
                Ok(Arc::new(EventTimeExec::new(
                    Arc::clone(input),
                    Arc::new(stage),
                )?))
            }
            Some(Node::Report(report)) => {
                let [input] = inputs else {
                    return Err(internal_datafusion_err!("ReportExec needs one input"));
                };
                let sources = report
                    .sources
                    .into_iter()
                    .map(|s| (s.display, s.source))
                    .collect();
                Ok(Arc::new(ReportExec::counting_below(
                    Arc::clone(input),
                    sources,
                )?))
            }
            Some(Node::Static(table)) => {
                let (schema, rows) = crate::tables::rows_of_ipc(&table.rows).map_err(|e| {
                    internal_datafusion_err!("the rows of static table {}: {e}", table.name)
                })?;
                Ok(Arc::new(StaticScanExec::of_rows(table.name, schema, rows)))
            }
            None => Err(internal_datafusion_err!("an empty dfstream plan node")),
        }
    }

    /// `hop_pane`, which `query::panes` puts into a trigger's plan, is not registered in a
    /// session: it is made here (every other function decodes by name from the registry).
    /// The trigger-time functions (`now()` and its kin, see [`super::clock`]) decode with the
    /// time they answered where the plan was bound.
    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if name == "hop_pane" {
            return Ok(Arc::new(ScalarUDF::from(WindowFunc::pane())));
        }
        if let Ok(bytes) = <[u8; 8]>::try_from(buf)
            && let Some(udf) = super::clock::fixed(name, i64::from_le_bytes(bytes))
        {
            return Ok(Arc::new(udf));
        }
        not_impl_err!("dfstream does not know the function {name}")
    }

    fn try_encode_udf(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(micros) = super::clock::answer_of(udf) {
            buf.extend_from_slice(&micros.to_le_bytes());
        }
        Ok(())
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let encoded = if let Some(config) = lines_scan(node.as_ref()) {
            let source = config
                .file_source
                .downcast_ref::<LinesSource>()
                .expect("lines_scan checked the source");
            let units = config
                .file_groups
                .iter()
                .flat_map(|group| group.iter())
                .map(|file| {
                    file.extension::<InputUnit>()
                        .map(encode_unit)
                        .ok_or_else(|| {
                            internal_datafusion_err!("a lines file without its input unit")
                        })
                })
                .collect::<Result<_>>()?;
            Node::Lines(LinesScanProto {
                config: Some(serialize_file_scan_config(config, self, proto_converter)?),
                units,
                max_line_bytes: source.reading().max_line_bytes as u64,
                format: Some(encode_format(&source.reading().format)?),
            })
        } else if let Some(exec) = node.downcast_ref::<EventTimeExec>() {
            let stage = exec.stage();
            let (watermark_delay, watermark_current) = match &stage.watermark {
                Some(w) => {
                    let (delay, current) = w.delay_and_current();
                    (Some(delay), Some(current))
                }
                None => (None, None),
            };
            Node::EventTime(EventTimeProto {
                event_time_text: stage.event_time.as_ref().map(|e| e.text.clone()),
                event_time_expr: stage
                    .event_time
                    .as_ref()
                    .map(|e| proto_converter.physical_expr_to_proto(&e.expr, self))
                    .transpose()?,
                watermark_delay,
                watermark_current,
                keep: stage.keep.iter().map(|&i| i as u32).collect(),
                format: Some(encode_format(&stage.format)?),
                input: stage.input.iter().map(|&i| i as u32).collect(),
            })
        } else if let Some(report) = node.downcast_ref::<ReportExec>() {
            Node::Report(ReportProto {
                sources: report
                    .sources()
                    .iter()
                    .map(|(display, source)| FileSourceProto {
                        display: display.clone(),
                        source: source.clone(),
                    })
                    .collect(),
            })
        } else if let Some(scan) = node.downcast_ref::<StaticScanExec>() {
            let rows = crate::tables::rows_to_ipc(&scan.schema(), &scan.rows_now()?)?;
            if rows.len() > SHIPPED_TABLE_LIMIT {
                return not_impl_err!(
                    "the static table {} is {} bytes in the columns the query reads, more \
                     than the {SHIPPED_TABLE_LIMIT} a plan shipped to a cluster carries",
                    scan.table(),
                    rows.len()
                );
            }
            Node::Static(StaticTableProto {
                name: scan.table().to_string(),
                rows,
            })
        } else {
            return not_impl_err!("dfstream cannot encode the plan node {}", node.name());
        };
        NodeProto {
            node: Some(encoded),
        }
        .encode(buf)
        .map_err(|e| internal_datafusion_err!("encoding a dfstream plan node: {e}"))
    }
}

impl PlanCodec {
    /// Whether `node` is one of the nodes this codec writes.
    pub fn encodes(node: &dyn ExecutionPlan) -> bool {
        lines_scan(node).is_some()
            || node.downcast_ref::<EventTimeExec>().is_some()
            || node.downcast_ref::<ReportExec>().is_some()
            || node.downcast_ref::<StaticScanExec>().is_some()
    }

    fn decode_scan(
        &self,
        scan: LinesScanProto,
        ctx: &TaskContext,
        decode_ctx: &PhysicalPlanDecodeContext<'_>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let conf = scan
            .config
            .ok_or_else(|| internal_datafusion_err!("a lines scan without its configuration"))?;
        let reading = Reading {
            counters: Arc::clone(&self.counters),
            format: decode_format(scan.format)?,
            max_line_bytes: scan.max_line_bytes as usize,
            event_time: None,
            watermark: None,
        };
        let source = Arc::new(LinesSource::new(reading));
        let config = parse_protobuf_file_scan_config(&conf, decode_ctx, proto_converter, source)?;
        // The files again, from their units (DataFusion's own encoding leaves out the version
        // and the local path as the OS has it), in the groups they were in.
        let mut units = scan.units.into_iter().map(|unit| decode_unit(unit, ctx));
        let mut groups = Vec::with_capacity(config.file_groups.len());
        for group in &config.file_groups {
            let files = (0..group.len())
                .map(|_| {
                    let unit = units.next().ok_or_else(|| {
                        internal_datafusion_err!("a lines scan with fewer units than files")
                    })??;
                    Ok(partitioned_file(&unit))
                })
                .collect::<Result<Vec<_>>>()?;
            groups.push(FileGroup::new(files));
        }
        if units.next().is_some() {
            return Err(internal_datafusion_err!(
                "a lines scan with more units than files"
            ));
        }
        let config = FileScanConfigBuilder::from(config)
            .with_file_groups(groups)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The scan's configuration, if `node` scans `lines`.
fn lines_scan(node: &dyn ExecutionPlan) -> Option<&FileScanConfig> {
    let exec = node.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    config.file_source.is::<LinesSource>().then_some(config)
}

fn encode_unit(unit: &InputUnit) -> UnitProto {
    let (local_path, store_url, object_path) = match &unit.place {
        // Absolute: the process that reads it may run in another directory.
        Place::File(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            (Some(path.into_os_string().into_vec()), None, None)
        }
        Place::Object {
            store_url, path, ..
        } => (
            None,
            Some(store_url.as_str().to_string()),
            Some(path.to_string()),
        ),
    };
    UnitProto {
        local_path,
        store_url,
        object_path,
        display: unit.display.clone(),
        ts_micros: unit.ts_micros,
        range_start: unit.range.map(|r| r.0),
        range_end: unit.range.map(|r| r.1),
        size: unit.size,
        version: unit.version.clone(),
        source: unit.source.to_string(),
    }
}

/// A unit again; an object's store is the one `ctx`'s runtime has registered for its URL.
fn decode_unit(unit: UnitProto, ctx: &TaskContext) -> Result<InputUnit> {
    let place = match (unit.local_path, unit.store_url, unit.object_path) {
        (Some(path), None, None) => Place::File(std::ffi::OsString::from_vec(path).into()),
        (None, Some(url), Some(path)) => {
            let store_url = ObjectStoreUrl::parse(&url)?;
            let store = ctx.runtime_env().object_store(&store_url)?;
            let path = object_store::path::Path::parse(&path)
                .map_err(|e| internal_datafusion_err!("object path {path}: {e}"))?;
            Place::Object {
                store,
                store_url,
                path,
            }
        }
        _ => {
            return Err(internal_datafusion_err!(
                "an input unit with no single place"
            ));
        }
    };
    let range = match (unit.range_start, unit.range_end) {
        (Some(start), Some(end)) => Some((start, end)),
        _ => None,
    };
    Ok(InputUnit {
        place,
        display: unit.display,
        ts_micros: unit.ts_micros,
        range,
        size: unit.size,
        version: unit.version,
        source: unit.source.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::Ordering;

    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::collect;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt};

    use super::*;
    use crate::query::lines::TriggerSlot;
    use crate::query::plan::{Params, QueryFile};
    use crate::query::{QuerySpec, StreamingQuery, scan};

    const SECOND: i64 = 1_000_000;
    /// 2026-01-01T00:00:00Z in microseconds.
    const T0: i64 = 1_767_225_600 * SECOND;

    /// Lines "<RFC 3339 time> words…" at T0 + i seconds.
    fn lines(from: i64, n: i64) -> String {
        (from..from + n)
            .map(|i| {
                format!(
                    "2026-01-01T00:{:02}:{:02}Z w{} x{} the\n",
                    i / 60,
                    i % 60,
                    i % 7,
                    i % 3
                )
            })
            .collect()
    }

    /// A trigger's units of every kind: a local file, a gzip file, a byte range of a file
    /// (as the socket log hands out), and two objects of a store registered as `memory://`.
    async fn units(dir: &std::path::Path, store: &Arc<dyn ObjectStore>) -> Vec<InputUnit> {
        let plain = dir.join("plain file.txt");
        std::fs::write(&plain, lines(0, 40)).unwrap();
        let gz = dir.join("b.txt.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(lines(40, 40).as_bytes()).unwrap();
        let gz_bytes = encoder.finish().unwrap();
        std::fs::write(&gz, &gz_bytes).unwrap();
        let log = dir.join("socket.log");
        let head = lines(80, 10);
        std::fs::write(&log, format!("{head}{}", lines(90, 30))).unwrap();
        let store_url = ObjectStoreUrl::parse("memory://").unwrap();
        let mut units = vec![
            InputUnit {
                size: Some(lines(0, 40).len() as u64),
                ..InputUnit::file(plain, T0 + 5 * SECOND)
            },
            InputUnit {
                size: Some(gz_bytes.len() as u64),
                ..InputUnit::file(gz, T0 + 6 * SECOND)
            },
            InputUnit {
                display: "socket".into(),
                range: Some((head.len() as u64, (head.len() + lines(90, 30).len()) as u64)),
                ..InputUnit::file(log, T0 + 7 * SECOND)
            },
        ];
        for (i, from) in [(0, 120), (1, 160)] {
            let path = object_store::path::Path::from(format!("in/o{i}.txt"));
            let text = lines(from, 40);
            let put = store.put(&path, text.clone().into()).await.unwrap();
            units.push(InputUnit {
                place: Place::Object {
                    store: Arc::clone(store),
                    store_url: store_url.clone(),
                    path,
                },
                display: format!("memory:///in/o{i}.txt"),
                ts_micros: T0 + (8 + i) * SECOND,
                range: None,
                size: Some(text.len() as u64),
                version: put.e_tag,
                source: Arc::from("objects"),
            });
        }
        units
    }

    async fn run(plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Vec<String> {
        let batches = collect(plan, task).await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
        rows.sort();
        rows
    }

    /// A bound trigger plan, encoded with DataFusion's protobuf and this codec and decoded in
    /// another session (with the object store registered under its URL), reads the same
    /// rows as the plan itself: the scan's files, byte ranges, pinned sizes, projection
    /// (`words(lower(value))` runs in the scan), event time and watermark all travel.
    #[tokio::test]
    async fn a_bound_trigger_plan_runs_the_same_after_a_round_trip_through_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let units = units(dir.path(), &store).await;
        let event_time = "to_timestamp(split_part(value, ' ', 1))";
        let cases: [(&str, usize, Option<&str>, Option<i64>); 5] = [
            ("sql/wordcount.sql", 1, None, None),
            (
                "sql/tumbling_wordcount.sql",
                1,
                Some(event_time),
                Some(T0 + 60 * SECOND),
            ),
            ("sql/window_wordcount.sql", 1, None, None),
            (
                "SELECT value, ts, file FROM lines WHERE value LIKE '%w3%'",
                2,
                None,
                None,
            ),
            (
                "SELECT ts, file FROM lines",
                2,
                Some(event_time),
                Some(T0 + 100 * SECOND),
            ),
        ];
        for (text, partitions, event_time, watermark) in cases {
            let file = if text.starts_with("sql/") {
                QueryFile::read(std::path::Path::new(text)).unwrap()
            } else {
                QueryFile {
                    path: "inline.sql".into(),
                    sql: text.to_string(),
                }
            };
            let params: Params = [("size", "1 minute"), ("slide", "30 seconds")]
                .into_iter()
                .filter(|(k, _)| file.sql.contains(&format!("${k}")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let counters = Arc::new(TextCounters::default());
            let slot = TriggerSlot::new(Arc::clone(&counters), 1 << 20);
            let spec = QuerySpec {
                file: &file,
                params: &params,
                mode: None,
                partitions,
                event_time,
                watermark: watermark.map(|_| std::time::Duration::from_secs(10)),
            };
            let query = StreamingQuery::plan(spec, slot.clone()).await.unwrap();
            if let Some(at) = watermark {
                slot.restore_watermark(at);
            }
            slot.set(units.clone());
            let plan = scan::bind(query.trigger_plan(), &units).unwrap();
            let expected = run(
                Arc::clone(&plan),
                crate::query::session(partitions).task_ctx(),
            )
            .await;

            let codec = PlanCodec::default();
            let bytes = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec)
                .unwrap()
                .encode_to_vec();
            let elsewhere = crate::query::session(partitions);
            elsewhere
                .runtime_env()
                .register_object_store(&url::Url::parse("memory://").unwrap(), Arc::clone(&store));
            let decoded = PhysicalPlanNode::decode(bytes.as_slice())
                .unwrap()
                .try_into_physical_plan(&elsewhere.task_ctx(), &codec)
                .unwrap();
            let actual = run(decoded, elsewhere.task_ctx()).await;
            assert!(expected.len() > 10, "{text}: {expected:?}");
            assert_eq!(actual, expected, "{text}");
            assert_eq!(
                codec.counters.late_rows.load(Ordering::Relaxed),
                counters.late_rows.load(Ordering::Relaxed),
                "{text}: late rows"
            );
            if watermark.is_some() {
                assert!(counters.late_rows.load(Ordering::Relaxed) > 0, "{text}");
            }
        }
    }

    /// An object whose store the receiving runtime does not know is an error that names it.
    #[tokio::test]
    async fn an_object_in_an_unregistered_store_does_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let units = units(dir.path(), &store).await;
        let file = QueryFile {
            path: "inline.sql".into(),
            sql: "SELECT value FROM lines".into(),
        };
        let slot = TriggerSlot::new(Arc::default(), 1 << 20);
        let spec = QuerySpec {
            file: &file,
            params: &Params::new(),
            mode: None,
            partitions: 1,
            event_time: None,
            watermark: None,
        };
        let query = StreamingQuery::plan(spec, slot).await.unwrap();
        let plan = scan::bind(query.trigger_plan(), &units).unwrap();
        let codec = PlanCodec::default();
        let node = PhysicalPlanNode::try_from_physical_plan(plan, &codec).unwrap();
        let err = node
            .try_into_physical_plan(&crate::query::session(1).task_ctx(), &codec)
            .unwrap_err();
        assert!(err.to_string().contains("memory://"), "{err}");
    }
}
