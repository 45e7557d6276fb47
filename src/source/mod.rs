//! Sources of input lines. A source hands out units of input (files, ranges of the socket
//! log) exactly once, in an order it can record in a checkpoint and replay; reading their
//! lines is the `lines` table's job (see `query::lines`).

pub mod dir;
pub mod socket;
