//! What survives between triggers and across restarts: the GROUP BY state and the checkpoint
//! directory that stores it with the record of consumed input. Only `query` and `app` use it.

pub mod checkpoint;
pub mod groups;
pub mod store;
