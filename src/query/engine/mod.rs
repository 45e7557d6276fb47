//! Where a trigger's plan runs (`--engine`): in this process (`local`), or as a job on an
//! Apache DataFusion Ballista cluster (`ballista://HOST:PORT`, or `ballista-standalone` for a
//! scheduler and executors inside this process).
//!
//! Only the part of a trigger that reads its input moves: the plan [`super::StreamingQuery`]
//! runs over the trigger's input units (the partial aggregation below the GROUP BY, or a
//! stateless query's whole plan). Offsets, the state merge, checkpoints and sinks stay in the
//! driver, as in Spark's micro-batches, so a cluster engine gives the same partial rows and the
//! same answers, and a job may switch engines between runs on the same checkpoint. What the
//! shipped scans counted comes back with the rows (see [`report`]). Triggers smaller than
//! `--cluster-min-bytes` run locally: a Ballista job costs a round of scheduling and a shuffle
//! write, more than a small trigger's whole work.

pub mod report;

#[cfg(feature = "ballista")]
pub mod ballista;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;

use super::lines::TriggerSlot;
use crate::error::Result;

/// `--engine`, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    Local,
    /// A Ballista scheduler at `http://HOST:PORT`.
    Ballista {
        scheduler: String,
    },
    /// A scheduler and this many executors inside this process.
    Standalone {
        executors: usize,
    },
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if text == "local" {
            return Ok(EngineChoice::Local);
        }
        if let Some(rest) = text.strip_prefix("ballista-standalone") {
            let executors = match rest.strip_prefix(':') {
                None if rest.is_empty() => 1,
                Some(n) => n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("{text:?}: ballista-standalone:N takes a number of executors")
                })?,
                None => return Err(format!("{text:?}: did you mean ballista-standalone:N?")),
            };
            return Ok(EngineChoice::Standalone { executors });
        }
        if let Some(address) = text.strip_prefix("ballista://") {
            let address = address.trim_end_matches('/');
            let valid = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(format!(
                    "{text:?}: a Ballista scheduler is ballista://HOST:PORT (e.g. \
                     ballista://127.0.0.1:50050)"
                ));
            }
            return Ok(EngineChoice::Ballista {
                scheduler: format!("http://{address}"),
            });
        }
        Err(format!(
            "{text:?}: the engine is local, ballista://HOST:PORT or ballista-standalone[:N]"
        ))
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineChoice::Local => f.write_str("local"),
            EngineChoice::Ballista { scheduler } => {
                write!(f, "ballista://{}", scheduler.trim_start_matches("http://"))
            }
            EngineChoice::Standalone { executors: 1 } => f.write_str("ballista-standalone"),
            EngineChoice::Standalone { executors } => write!(f, "ballista-standalone:{executors}"),
        }
    }
}

/// The engine a query's triggers run on.
#[derive(Clone, Default)]
pub enum Engine {
    #[default]
    Local,
    #[cfg(feature = "ballista")]
    Cluster(Arc<ballista::Cluster>),
}

impl Engine {
    /// Connects to (or, standalone, starts) the engine `choice` names; triggers below
    /// `threshold` stay local.
    pub async fn start(choice: &EngineChoice, threshold: Threshold) -> Result<Self> {
        match choice {
            EngineChoice::Local => Ok(Engine::Local),
            #[cfg(feature = "ballista")]
            _ => Ok(Engine::Cluster(Arc::new(
                ballista::Cluster::start(choice, threshold).await?,
            ))),
            #[cfg(not(feature = "ballista"))]
            _ => {
                let _ = threshold;
                Err(crate::error::Error::Usage(format!(
                    "--engine {choice}: this dfstream was built without Ballista; build it \
                     with `cargo build --release --features ballista`"
                )))
            }
        }
    }

    /// Checks that `plan` (a trigger plan) can run on the engine `choice` names, before
    /// connecting to it.
    pub fn check_choice(choice: &EngineChoice, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        match choice {
            EngineChoice::Local => Ok(()),
            #[cfg(feature = "ballista")]
            _ => ballista::check(&choice.to_string(), plan),
            #[cfg(not(feature = "ballista"))]
            _ => {
                let _ = plan;
                Ok(()) // `start` says how to build with Ballista
            }
        }
    }

    /// Checks that `plan` (a trigger plan) can run on this engine.
    pub fn check(&self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        match self {
            Engine::Local => {
                let _ = plan;
                Ok(())
            }
            #[cfg(feature = "ballista")]
            Engine::Cluster(cluster) => cluster.check(plan),
        }
    }

    /// Runs `plan` over the trigger's units in `slot` and collects its rows; what its scans
    /// counted ends up in the slot's counters and watermark either way.
    pub async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
        slot: &TriggerSlot,
    ) -> Result<Vec<RecordBatch>> {
        let units = slot.units();
        match self {
            #[cfg(feature = "ballista")]
            Engine::Cluster(cluster) if cluster.takes(&units) => {
                cluster.run(plan, &units, slot).await
            }
            _ => super::execute_over(plan, task, &units).await,
        }
    }

    /// Runs a whole plan (a batch query whose scans are bound to `units`) and collects its
    /// rows.
    pub async fn collect(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        units: &[crate::source::InputUnit],
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Engine::Local => {
                let _ = units;
                super::execute(plan, super::session(1).task_ctx()).await
            }
            #[cfg(feature = "ballista")]
            Engine::Cluster(cluster) => cluster.collect(plan, units).await,
        }
    }

    /// What `explain` and the logs call it.
    pub fn describe(&self) -> String {
        match self {
            Engine::Local => "local".into(),
            #[cfg(feature = "ballista")]
            Engine::Cluster(cluster) => cluster.describe(),
        }
    }
}

/// Which triggers are worth a cluster job (`--cluster-min-bytes`, `--cluster-min-files`):
/// one with at least `bytes` of input, or at least `units` input units (files, log ranges)
/// whatever their size; smaller ones run locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Threshold {
    pub bytes: u64,
    pub units: Option<usize>,
}

impl Threshold {
    pub fn takes(&self, units: &[crate::source::InputUnit]) -> bool {
        !units.is_empty()
            && (input_bytes(units) >= self.bytes || self.units.is_some_and(|n| units.len() >= n))
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "triggers of at least {} bytes", self.bytes)?;
        if let Some(units) = self.units {
            write!(f, " or {units} files")?;
        }
        f.write_str("; smaller ones run here")
    }
}

/// Input bytes of a trigger (the bytes of each unit as taken, or of its range).
pub fn input_bytes(units: &[crate::source::InputUnit]) -> u64 {
    units.iter().map(|u| u.bytes().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_is_worth_a_job_by_its_bytes_or_its_files() {
        let units = |sizes: &[u64]| -> Vec<crate::source::InputUnit> {
            sizes
                .iter()
                .map(|&size| crate::source::InputUnit {
                    size: Some(size),
                    ..crate::source::InputUnit::file("f".into(), 0)
                })
                .collect()
        };
        let by_bytes = Threshold {
            bytes: 100,
            units: None,
        };
        assert!(!by_bytes.takes(&units(&[])));
        assert!(!by_bytes.takes(&units(&[40, 59])));
        assert!(by_bytes.takes(&units(&[40, 60])));
        assert!(!by_bytes.takes(&units(&[1; 50])));
        let or_files = Threshold {
            bytes: 100,
            units: Some(3),
        };
        assert!(!or_files.takes(&units(&[1, 1])));
        assert!(or_files.takes(&units(&[1, 1, 1])));
        assert!(or_files.takes(&units(&[200])));
        assert!(!Threshold::default().takes(&units(&[])));
        assert!(Threshold::default().takes(&units(&[0])));
    }

    #[test]
    fn engines_parse_and_print_back() {
        for text in [
            "local",
            "ballista-standalone",
            "ballista-standalone:2",
            "ballista://127.0.0.1:50050",
        ] {
            let choice: EngineChoice = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
        }
        for bad in [
            "spark",
            "ballista://nohost",
            "ballista://:50050",
            "ballista-standalone:0",
            "ballista-standalonex",
        ] {
            assert!(bad.parse::<EngineChoice>().is_err(), "{bad}");
        }
    }
}
