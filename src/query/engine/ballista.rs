//! The Ballista engine: a trigger's plan as a job on an Apache DataFusion Ballista cluster.
//!
//! The driver binds the trigger plan to its input units, puts a [`ReportExec`] on top and
//! submits the physical plan as it is (`execute_physical_plan`: no re-planning on the
//! scheduler, so the job computes exactly the partial rows the local engine would). The plan
//! travels as `datafusion-proto` bytes through [`ClusterCodec`]: Ballista's own nodes (shuffle
//! writers and readers) as Ballista writes them, dfstream's (the scans, the event-time stage,
//! the report) as [`PlanCodec`] does, each in an envelope with the dfstream version, so that a
//! cluster of another version refuses the plan with a message instead of misreading it.
//!
//! The scheduler and executors must know dfstream's functions and nodes: [`cluster_state`] is
//! the session they run with, in `ballista-standalone` and in `dfstream cluster scheduler|
//! executor`. Executors read the trigger's input themselves: local paths must be the same files
//! on every machine (a shared file system), objects must be in stores the executors have
//! (`dfstream cluster executor --store URL`).

use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::RecordBatch;
use datafusion::common::{Result as DfResult, internal_datafusion_err};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use prost::Message;

use super::EngineChoice;
use super::report::{ReportExec, split_reports};
use crate::error::{Context, Error, Result};
use crate::query::codec::{PlanCodec, SHIPPED_TABLE_LIMIT};
use crate::query::lines::TriggerSlot;
use crate::source::{InputUnit, Place};
use crate::tables::StaticScanExec;

/// The version a plan's envelope carries; scheduler and executors must run the same.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a scheduler may stay unreachable (retried with backoff) before a trigger fails.
const UNREACHABLE_FOR: Duration = Duration::from_secs(20);

/// A connected cluster.
pub struct Cluster {
    /// `http://HOST:PORT`.
    scheduler: String,
    label: String,
    threshold: super::Threshold,
    codec: ClusterCodec,
    config: SessionConfig,
    session_id: String,
    /// `ballista-standalone`: the executors' runtime, where the units' stores are registered.
    runtime: Option<Arc<RuntimeEnv>>,
}

impl Cluster {
    pub async fn start(choice: &EngineChoice, threshold: super::Threshold) -> Result<Self> {
        let (scheduler, runtime) = match choice {
            EngineChoice::Standalone { executors } => {
                let (scheduler, runtime) = start_standalone(*executors).await?;
                (scheduler, Some(runtime))
            }
            EngineChoice::Ballista { scheduler } => (scheduler.clone(), None),
            EngineChoice::Local => unreachable!("the local engine is not a cluster"),
        };
        let cluster = Cluster {
            scheduler,
            label: choice.to_string(),
            threshold,
            codec: ClusterCodec::default(),
            config: SessionConfig::new_with_ballista().with_target_partitions(1),
            session_id: format!("dfstream-{}", std::process::id()),
            runtime,
        };
        cluster.probe().await?;
        log::info!("engine {}: connected", cluster.label);
        Ok(cluster)
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.label, self.threshold)
    }

    /// Whether a trigger over `units` is big enough to be worth a cluster job.
    pub fn takes(&self, units: &[InputUnit]) -> bool {
        self.threshold.takes(units)
    }

    /// Checks that the trigger plan can be shipped (see [`check`]).
    pub fn check(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        check(&self.label, plan)
    }

    /// Runs `plan` over `units` as a job; what its scans counted goes into `slot`.
    pub async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        units: &[InputUnit],
        slot: &TriggerSlot,
    ) -> Result<Vec<RecordBatch>> {
        self.register_stores(units);
        let plan = crate::query::scan::bind(plan, units).context(|| "preparing the plan".into())?;
        // A new version of a static table may have grown since the plan was checked.
        tables_fit(&plan).map_err(|e| {
            Error::Usage(format!(
                "--engine {}: this trigger cannot run on it: {e}",
                self.label
            ))
        })?;
        let schema = plan.schema();
        let batches = self.submit(Arc::new(ReportExec::new(plan))).await?;
        let (rows, max_event_time) = split_reports(batches, &schema, slot.counters())
            .context(|| "reading the cluster job's reports".into())?;
        if let Some(max) = max_event_time {
            slot.note_event_time(max);
        }
        Ok(rows)
    }

    /// Runs a whole plan over `units` (bound into it; stages and shuffles as Ballista splits
    /// it) and collects its rows.
    pub async fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        units: &[InputUnit],
    ) -> Result<Vec<RecordBatch>> {
        self.register_stores(units);
        self.submit(plan).await
    }

    /// Standalone: makes the stores of `units`' objects known to the in-process executors (a
    /// remote cluster's executors have theirs from `--store`).
    fn register_stores(&self, units: &[InputUnit]) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        for unit in units {
            if let Place::Object {
                store, store_url, ..
            } = &unit.place
            {
                runtime.register_object_store(store_url.as_ref(), Arc::clone(store));
            }
        }
    }

    /// Submits `plan` and collects its output. A scheduler that cannot be reached is retried
    /// with backoff for [`UNREACHABLE_FOR`]; once it answers, the job is submitted once, and
    /// any error of the job (or of fetching its result) fails the trigger.
    async fn submit(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        while let Err(e) = SchedulerGrpcClient::connect(self.scheduler.clone()).await {
            if started.elapsed() >= UNREACHABLE_FOR {
                return Err(Error::Usage(format!(
                    "--engine {}: the Ballista scheduler at {} has been unreachable for {:?}: {e}",
                    self.label, self.scheduler, UNREACHABLE_FOR
                )));
            }
            log::warn!(
                "the Ballista scheduler at {} is unreachable ({e}); retrying in {pause:?}",
                self.scheduler
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        let stream = execute_physical_plan::<PhysicalPlanNode>(
            self.scheduler.clone(),
            &BallistaConfig::default(),
            plan,
            &self.codec,
            self.session_id.clone(),
            self.config.clone(),
        )
        .await;
        async { stream?.try_collect::<Vec<_>>().await }
            .await
            .context(|| format!("running the trigger on {}", self.label))
    }

    /// One small job at start, so that a cluster without dfstream's functions, of another
    /// version or without executors is an error now, not at the first big trigger.
    async fn probe(&self) -> Result<()> {
        let ctx = crate::query::session(1);
        let plan = ctx
            // random(): not folded into a constant, so the executors evaluate words().
            .sql("SELECT words(CAST(random() AS VARCHAR)) AS w")
            .await
            .map(|df| df.logical_plan().clone())
            .context(|| "planning the probe job".into())?;
        let plan = ctx
            .state()
            .create_physical_plan(&plan)
            .await
            .context(|| "planning the probe job".into())?;
        let job = self.submit(Arc::new(ReportExec::new(plan)));
        match tokio::time::timeout(Duration::from_secs(60), job).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e @ Error::Usage(_))) => Err(e), // unreachable: it says so
            Ok(Err(e)) => {
                let text = e.to_string();
                let hint = if text.contains("words") {
                    " (its scheduler and executors do not know dfstream's functions: run them \
                     as `dfstream cluster scheduler` and `dfstream cluster executor`)"
                } else if text.contains("dfstream") && text.contains("version") {
                    ""
                } else {
                    " (is it a dfstream cluster of the same version?)"
                };
                Err(Error::Usage(format!(
                    "--engine {}: a first job on the cluster failed{hint}: {text}",
                    self.label
                )))
            }
            Err(_) => Err(Error::Usage(format!(
                "--engine {}: a first job on the cluster did not finish in 60 s: has the \
                 scheduler any executors?",
                self.label
            ))),
        }
    }
}

/// Checks that a trigger plan can be shipped to the cluster `label` names: no exchange
/// between partitions, static tables within the size a plan carries, every node encodes.
pub fn check(label: &str, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let cannot = |e: &dyn std::fmt::Display| {
        Error::Usage(format!(
            "--engine {label}: this query's trigger plan cannot run on a cluster: {e}"
        ))
    };
    let exchange = |name: &str| {
        matches!(
            name,
            "RepartitionExec" | "CoalescePartitionsExec" | "SortPreservingMergeExec"
        )
    };
    if let Some(exchange) = first_node(plan, |node| exchange(node.name())) {
        let hint = if has_null_aware_join(plan) {
            "; a `NOT IN (SELECT ...)` gathers the stream into one partition to keep its \
             NULL semantics: where the subquery's column has no NULLs, `NOT EXISTS (SELECT \
             ... WHERE ...)` gives the same rows without it"
        } else if joins_a_static_table_by_key(plan) {
            "; a static table of more than 8 MiB in memory when the query is planned is \
             joined by repartitioning both sides by key: such a table is too big to travel \
             with each job"
        } else {
            ""
        };
        return Err(cannot(&format!(
            "it moves rows between partitions ({exchange}), which would split it into stages \
             whose counts the driver cannot collect{hint}"
        )));
    }
    tables_fit(plan).map_err(|e| cannot(&e))?;
    let shipped: Arc<dyn ExecutionPlan> = Arc::new(ReportExec::new(Arc::clone(plan)));
    datafusion_proto::physical_plan::AsExecutionPlan::try_from_physical_plan(
        shipped,
        &ClusterCodec::default(),
    )
    .map(|_: PhysicalPlanNode| ())
    .map_err(|e| cannot(&e))
}

/// Checks that the rows of the static tables `plan` reads fit in one shipped plan together
/// (each travels in it, and a plan is one gRPC message of at most 16 MiB): at most
/// [`SHIPPED_TABLE_LIMIT`] bytes in memory, in the columns the query reads (their Arrow IPC,
/// which the codec writes once when the job is submitted, is those buffers and a little
/// metadata; the codec refuses a single table over the limit as written).
fn tables_fit(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut sizes = Vec::new();
    let mut total = 0;
    plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<StaticScanExec>() {
            let (_, bytes) = scan.size_now()?;
            sizes.push(format!("{} {bytes} bytes", scan.table()));
            total += bytes;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .context(|| "measuring the static tables a job carries".into())?;
    if total > SHIPPED_TABLE_LIMIT {
        return Err(Error::Usage(format!(
            "the static tables it reads ({}) are more than the {SHIPPED_TABLE_LIMIT} bytes a \
             plan shipped to a cluster carries, in the columns the query reads; run it with \
             --engine local",
            sizes.join(", ")
        )));
    }
    Ok(())
}

/// Whether `plan` joins a static table by repartitioning both sides by key.
fn joins_a_static_table_by_key(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
    any_node(plan, |node| {
        node.downcast_ref::<HashJoinExec>().is_some_and(|join| {
            join.mode == PartitionMode::Partitioned
                && join
                    .children()
                    .iter()
                    .any(|side| any_node(side, |n| n.name() == "StaticScanExec"))
        })
    })
}

/// Whether `plan` has a null-aware anti join (`NOT IN (SELECT ...)`).
fn has_null_aware_join(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_plan::joins::HashJoinExec;
    any_node(plan, |node| {
        node.downcast_ref::<HashJoinExec>()
            .is_some_and(|join| join.null_aware)
    })
}

/// Whether some node of `plan` is one `wanted` accepts.
fn any_node(
    plan: &Arc<dyn ExecutionPlan>,
    wanted: impl Fn(&Arc<dyn ExecutionPlan>) -> bool,
) -> bool {
    first_node(plan, wanted).is_some()
}

/// The name of the first node of `plan` that `wanted` accepts, if any.
fn first_node(
    plan: &Arc<dyn ExecutionPlan>,
    wanted: impl Fn(&Arc<dyn ExecutionPlan>) -> bool,
) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = None;
    let _ = plan.apply(|node| {
        if wanted(node) {
            found = Some(node.name().to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Starts a scheduler and `executors` executors in this process, as `dfstream cluster` runs
/// them (on free ports of 127.0.0.1); their address and the executors' runtime.
async fn start_standalone(executors: usize) -> Result<(String, Arc<RuntimeEnv>)> {
    let runtime = Arc::new(RuntimeEnv::default());
    let free_port = || -> Result<u16> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::io("finding a free port for ballista-standalone", e))
    };
    let scheduler = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let logged = |what: &'static str, served: Result<()>| {
        if let Err(e) = served {
            log::error!("ballista-standalone: {what}: {e}");
        }
    };
    let served = serve_scheduler(scheduler, None, 180, Arc::clone(&runtime));
    tokio::spawn(async move { logged("the scheduler", served.await) });
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..executors {
        let settings = ExecutorSettings {
            scheduler: ("127.0.0.1".into(), scheduler.port()),
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            grpc_port: free_port()?,
            external_host: None,
            concurrency,
            heartbeat_interval: 60,
            work_dir: None,
        };
        let served = serve_executor(settings, Arc::clone(&runtime));
        tokio::spawn(async move { logged("an executor", served.await) });
    }
    Ok((format!("http://{scheduler}"), runtime))
}

/// Runs a Ballista scheduler with dfstream's session until it stops; executors silent for
/// `executor_timeout` seconds are lost. `runtime` holds the object stores it may read.
pub async fn serve_scheduler(
    bind: std::net::SocketAddr,
    external_host: Option<String>,
    executor_timeout: u64,
    runtime: Arc<RuntimeEnv>,
) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;

    let failed = |what: &str, e: &dyn std::fmt::Display| Error::Usage(format!("{what}: {e}"));
    let state = cluster_state(Some(runtime));
    let config_state = state.clone();
    // Executors report task status to this host: not 0.0.0.0.
    let host = external_host.unwrap_or_else(|| {
        if bind.ip().is_unspecified() {
            host_name()
        } else {
            bind.ip().to_string()
        }
    });
    let mut config = SchedulerConfig::default()
        .with_hostname(host.clone())
        .with_port(bind.port());
    config.override_session_builder = Some(Arc::new(move |_| Ok(state.clone())));
    config.override_config_producer = Some(Arc::new(move || config_state.config().clone()));
    config.override_physical_codec = Some(Arc::new(ClusterCodec::default()));
    config.executor_timeout_seconds = executor_timeout;
    config.expire_dead_executor_interval_seconds = (executor_timeout / 4).clamp(1, 15);
    config.no_executors_grace_period_seconds = executor_timeout;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| failed("starting the scheduler", &e))?;
    log::info!("dfstream cluster scheduler listening on {bind} (executors reach it as {host})");
    ballista_scheduler::scheduler_process::start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| failed("the scheduler stopped", &e))
}

/// This machine's host name (`localhost` if it has none).
fn host_name() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates what fits.
    let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
    let end = name.iter().position(|&b| b == 0).unwrap_or(0);
    match std::str::from_utf8(&name[..end]) {
        Ok(host) if ok && !host.is_empty() => host.to_string(),
        _ => "localhost".to_string(),
    }
}

/// How an executor runs (`dfstream cluster executor`'s flags).
pub struct ExecutorSettings {
    pub scheduler: (String, u16),
    pub bind: std::net::SocketAddr,
    pub grpc_port: u16,
    pub external_host: Option<String>,
    pub concurrency: usize,
    pub heartbeat_interval: u64,
    pub work_dir: Option<std::path::PathBuf>,
}

/// Runs a Ballista executor with dfstream's session until it stops. `runtime` holds the object
/// stores it may read.
pub async fn serve_executor(settings: ExecutorSettings, runtime: Arc<RuntimeEnv>) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

    let state = cluster_state(Some(Arc::clone(&runtime)));
    let session_config = state.config().clone();
    let (scheduler_host, scheduler_port) = settings.scheduler;
    log::info!(
        "dfstream cluster executor on {}, scheduler {scheduler_host}:{scheduler_port}",
        settings.bind
    );
    let config = ExecutorProcessConfig {
        bind_host: settings.bind.ip().to_string(),
        port: settings.bind.port(),
        grpc_port: settings.grpc_port,
        external_host: settings.external_host,
        scheduler_host,
        scheduler_port,
        // A scheduler started at the same time may not listen yet.
        scheduler_connect_timeout_seconds: 30,
        vcores: settings.concurrency,
        executor_heartbeat_interval_seconds: settings.heartbeat_interval,
        work_dir: settings.work_dir.map(|d| d.display().to_string()),
        override_function_registry: Some(Arc::new((&state).into())),
        override_runtime_producer: Some(Arc::new(move |_| Ok(Arc::clone(&runtime)))),
        override_config_producer: Some(Arc::new(move || session_config.clone())),
        override_physical_codec: Some(Arc::new(ClusterCodec::default())),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Usage(format!("the executor stopped: {e}")))
}

/// The session a dfstream scheduler or executor runs with: dfstream's functions, its plan
/// nodes (through [`ClusterCodec`]) and `runtime` (with the object stores it may read), or a
/// default runtime.
pub fn cluster_state(runtime: Option<Arc<RuntimeEnv>>) -> SessionState {
    let config = SessionConfig::new_with_ballista()
        .with_ballista_physical_extension_codec(Arc::new(ClusterCodec::default()));
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    if let Some(runtime) = runtime {
        builder = builder.with_runtime_env(runtime);
    }
    let ctx = SessionContext::new_with_state(builder.build());
    crate::query::functions::register(&ctx);
    ctx.state()
}

/// Ballista's plan nodes and dfstream's, each in a versioned envelope.
#[derive(Debug, Default)]
pub struct ClusterCodec {
    dfstream: PlanCodec,
    ballista: BallistaPhysicalExtensionCodec,
}

#[derive(Clone, PartialEq, Message)]
struct Envelope {
    /// The dfstream version that wrote the node.
    #[prost(string, tag = "1")]
    version: String,
    #[prost(oneof = "Payload", tags = "2, 3")]
    payload: Option<Payload>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Payload {
    #[prost(bytes, tag = "2")]
    Dfstream(Vec<u8>),
    #[prost(bytes, tag = "3")]
    Ballista(Vec<u8>),
}

impl PhysicalExtensionCodec for ClusterCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let envelope = Envelope::decode(buf).map_err(|e| {
            internal_datafusion_err!(
                "a plan node that is not dfstream's ({e}): is the client dfstream {VERSION}?"
            )
        })?;
        if envelope.version != VERSION {
            return Err(internal_datafusion_err!(
                "a plan from dfstream {}, and this is dfstream {VERSION}: run the same \
                 version on the driver, the scheduler and the executors",
                envelope.version
            ));
        }
        match envelope.payload {
            Some(Payload::Dfstream(bytes)) => {
                self.dfstream
                    .try_decode(&bytes, inputs, ctx, proto_converter)
            }
            Some(Payload::Ballista(bytes)) => {
                self.ballista
                    .try_decode(&bytes, inputs, ctx, proto_converter)
            }
            None => Err(internal_datafusion_err!("an empty plan node")),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let mut bytes = Vec::new();
        let payload = if PlanCodec::encodes(node.as_ref()) {
            self.dfstream
                .try_encode(node, &mut bytes, proto_converter)?;
            Payload::Dfstream(bytes)
        } else {
            self.ballista
                .try_encode(node, &mut bytes, proto_converter)?;
            Payload::Ballista(bytes)
        };
        Envelope {
            version: VERSION.to_string(),
            payload: Some(payload),
        }
        .encode(buf)
        .map_err(|e| internal_datafusion_err!("encoding a plan node: {e}"))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.dfstream.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.dfstream.try_encode_udf(udf, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;

    #[test]
    fn a_plan_node_from_another_dfstream_version_is_refused_naming_both() {
        let codec = ClusterCodec::default();
        let converter = DefaultPhysicalProtoConverter {};
        let input: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )));
        let node: Arc<dyn ExecutionPlan> = Arc::new(ReportExec::new(Arc::clone(&input)));
        let mut buf = Vec::new();
        codec
            .try_encode(Arc::clone(&node), &mut buf, &converter)
            .unwrap();
        let ctx = TaskContext::default();
        let same = codec.try_decode(&buf, std::slice::from_ref(&input), &ctx, &converter);
        assert_eq!(same.unwrap().name(), "ReportExec");

        let mut envelope = Envelope::decode(buf.as_slice()).unwrap();
        envelope.version = "0.0.1".into();
        let other = codec.try_decode(
            &envelope.encode_to_vec(),
            std::slice::from_ref(&input),
            &ctx,
            &converter,
        );
        let message = other.unwrap_err().to_string();
        assert!(
            message.contains("a plan from dfstream 0.0.1")
                && message.contains(&format!("this is dfstream {VERSION}")),
            "{message}"
        );
        // Bytes that are no envelope at all: a client that is not dfstream.
        let foreign = codec.try_decode(b"\x0a\x03abc", &[], &ctx, &converter);
        assert!(foreign.is_err());
    }
}
