//! Errors users see, and the exit code each class of error maps to.
//!
//! Exit codes: 0 success, 1 a failure while running (I/O, execution), 2 a problem with what
//! the user asked for (flags, SQL, parameters, a checkpoint of another query), found before
//! any input is processed.

use std::path::PathBuf;

use datafusion::common::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or parameter that cannot work; found before start.
    #[error("{0}")]
    Usage(String),
    /// The query file does not plan; already rendered with file, line, column and caret.
    #[error("{0}")]
    Sql(String),
    /// The query plans, but cannot run as a stream in the chosen mode.
    #[error("{path}: {reason}", path = .path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// The checkpoint belongs to another query, or is from an unknown format.
    #[error("{0}")]
    Checkpoint(String),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// A batch's query failed; it is re-run (and fails again) at every start until its input
    /// is set aside.
    #[error(
        "batch {batch_id} failed (input: {inputs}): {source}\nThe batch is re-run at every start. \
         To set its input aside and go on with the rest, run `dfstream checkpoint skip-batch \
         {batch_id} --checkpoint {checkpoint}`, then start the job again."
    )]
    BatchFailed {
        batch_id: u64,
        inputs: String,
        checkpoint: String,
        #[source]
        source: Box<Error>,
    },
    #[error("{context}: {source}")]
    DataFusion {
        context: String,
        #[source]
        source: Box<DataFusionError>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Sql(_) | Error::Unsupported { .. } | Error::Checkpoint(_) => 2,
            Error::Io { .. } | Error::DataFusion { .. } => 1,
            Error::BatchFailed { source, .. } => source.exit_code(),
        }
    }

    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }
}

/// Adds what dfstream was doing to a DataFusion error.
pub trait Context<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, DataFusionError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::DataFusion {
            context: context(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Result<T, datafusion::arrow::error::ArrowError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(DataFusionError::from).context(context)
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::io(context(), e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
