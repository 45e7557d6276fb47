//! dfstream: streaming SQL over files, on Apache DataFusion.
//!
//! New files in a directory become rows of the table `lines`; each trigger runs the user's
//! SQL over just the new rows, merges an aggregation into state kept from earlier triggers,
//! and hands the result to sinks. Data flows one way:
//!
//! - [`source`]: which files are new (directory listing, woken by `notify`);
//! - [`batch`]: a file's bytes to Arrow record batches of `lines` (text policy), after
//!   [`compression`] undoes a `.gz`, `.bz2`, `.xz` or `.zst`;
//! - [`query`]: SQL planning, the `lines` scan of a trigger, incremental aggregation;
//! - [`state`]: the GROUP BY state and the checkpoint directory;
//! - [`sink`]: console table and Parquet output;
//! - [`app`]: the trigger loop that wires them; [`commands`]: verify, checkpoint show, reset,
//!   generate, the mode shortcuts, demo and sql; [`generate`]: the data generator;
//!   [`cli`] and [`error`] face the user; [`storage`] opens local paths and object-store
//!   URLs for the others; [`progress`] assembles each batch's record, which the `--progress`
//!   file and the status page ([`ui`]) read.

pub mod app;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod compression;
pub mod error;
pub mod format;
pub mod generate;
pub mod progress;
pub mod query;
pub mod sink;
pub mod source;
pub mod state;
pub mod storage;
pub mod tables;
pub mod time;
pub mod ui;
