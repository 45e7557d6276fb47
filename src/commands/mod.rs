//! The commands besides `run`, one module each: `verify` (the batch oracle against the
//! streaming output), `checkpoint show` and `reset`, `generate` (input data), the original
//! example's mode shortcuts (`file`, `window`, `socket`) with `demo`, `sql`, and `state` (a
//! checkpoint's state as a table), `explain` (how a query would run) and `cluster` (a Ballista
//! scheduler or executor for `--engine ballista://`).

pub mod checkpoint;
pub mod cluster;
pub mod explain;
pub mod generate;
pub mod shortcuts;
pub mod sql;
pub mod state;
pub mod verify;

pub use checkpoint::{reset_checkpoint, show, skip_batch};
pub use cluster::cluster;
pub use explain::explain;
pub use generate::{generate, write_continuously};
pub use shortcuts::{demo, shortcut};
pub use sql::sql;
pub use state::state;
pub use verify::verify;
