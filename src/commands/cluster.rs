//! `dfstream cluster scheduler|executor`: Ballista's own scheduler and executor processes,
//! started with dfstream's session (its functions, and its plan nodes through the cluster
//! codec) and the object stores given with `--store`, for `run --engine ballista://...`.

use crate::cli::ClusterCommand;
use crate::error::{Error, Result};

#[cfg(not(feature = "ballista"))]
pub async fn cluster(_command: ClusterCommand) -> Result<()> {
    Err(Error::Usage(
        "this dfstream was built without Ballista; build it with `cargo build --release \
         --features ballista`"
            .into(),
    ))
}

#[cfg(feature = "ballista")]
pub async fn cluster(command: ClusterCommand) -> Result<()> {
    use std::sync::Arc;

    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    use ballista_scheduler::scheduler_process::start_server;

    use crate::query::engine::ballista::{ClusterCodec, cluster_state};

    let failed = |what: &str, e: &dyn std::fmt::Display| Error::Usage(format!("{what}: {e}"));
    match command {
        ClusterCommand::Scheduler {
            bind,
            executor_timeout,
            stores,
        } => {
            let runtime = runtime_with(&stores)?;
            let state = cluster_state(Some(runtime));
            let config_state = state.clone();
            let mut config = SchedulerConfig::default()
                .with_hostname(bind.ip().to_string())
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
            log::info!("dfstream cluster scheduler listening on {bind}");
            start_server(cluster, bind, Arc::new(config))
                .await
                .map_err(|e| failed("the scheduler stopped", &e))
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            grpc_port,
            external_host,
            concurrency,
            heartbeat_interval,
            work_dir,
            stores,
        } => {
            let (scheduler_host, scheduler_port) = scheduler
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
                .ok_or_else(|| {
                    Error::Usage(format!("--scheduler {scheduler}: expected HOST:PORT"))
                })?;
            let runtime = runtime_with(&stores)?;
            let state = cluster_state(Some(Arc::clone(&runtime)));
            let session_config = state.config().clone();
            let config = ExecutorProcessConfig {
                bind_host: bind.ip().to_string(),
                port: bind.port(),
                grpc_port,
                external_host,
                scheduler_host,
                scheduler_port,
                // A scheduler started at the same time may not listen yet.
                scheduler_connect_timeout_seconds: 30,
                vcores: concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                executor_heartbeat_interval_seconds: heartbeat_interval,
                work_dir: work_dir.map(|d| d.display().to_string()),
                override_function_registry: Some(Arc::new((&state).into())),
                override_runtime_producer: Some(Arc::new(move |_| Ok(Arc::clone(&runtime)))),
                override_config_producer: Some(Arc::new(move || session_config.clone())),
                override_physical_codec: Some(Arc::new(ClusterCodec::default())),
                ..Default::default()
            };
            log::info!("dfstream cluster executor on {bind}, scheduler {scheduler}");
            start_executor_process(Arc::new(config))
                .await
                .map_err(|e| failed("the executor stopped", &e))
        }
    }
}

/// A runtime with the `--store` object stores registered.
#[cfg(feature = "ballista")]
fn runtime_with(
    stores: &crate::cli::ClusterStores,
) -> Result<std::sync::Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use crate::storage::Location;
    let runtime = std::sync::Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default());
    let options = &stores.storage_options;
    for url in &stores.stores {
        match Location::parse(url, "--store", options)? {
            Location::Remote(remote) => {
                runtime.register_object_store(remote.store_url.as_ref(), remote.store);
            }
            Location::Local(_) => {
                return Err(Error::Usage(format!(
                    "--store {url}: local paths need no --store (the executors read them as \
                     they are); give object store URLs such as s3://bucket"
                )));
            }
        }
    }
    Ok(runtime)
}
