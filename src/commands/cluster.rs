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
    use crate::query::engine::ballista::{ExecutorSettings, serve_executor, serve_scheduler};

    match command {
        ClusterCommand::Scheduler {
            bind,
            external_host,
            executor_timeout,
            stores,
        } => {
            serve_scheduler(
                bind,
                external_host,
                executor_timeout,
                runtime_with(&stores)?,
            )
            .await
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
            let settings = ExecutorSettings {
                scheduler: scheduler
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
                    .ok_or_else(|| {
                        Error::Usage(format!("--scheduler {scheduler}: expected HOST:PORT"))
                    })?,
                bind,
                grpc_port,
                external_host,
                concurrency: concurrency
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                heartbeat_interval,
                work_dir,
            };
            serve_executor(settings, runtime_with(&stores)?).await
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
