//! The commands besides `run`, one module each: `verify` (the batch oracle against the
//! streaming output), `checkpoint show` and `reset`, `generate` (input data), the original
//! example's mode shortcuts (`file`, `window`, `socket`) with `demo`, and `sql`.

pub mod checkpoint;
pub mod generate;
pub mod shortcuts;
pub mod sql;
pub mod verify;

pub use checkpoint::{reset_checkpoint, show, skip_batch};
pub use generate::{generate, write_continuously};
pub use shortcuts::{demo, shortcut};
pub use sql::sql;
pub use verify::verify;
