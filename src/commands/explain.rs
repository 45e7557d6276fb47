//! `dfstream explain`: plans a query with the run's flags, as `run` would, without opening
//! sources, sinks or the checkpoint, and prints how it would run as a stream. A query or flag
//! that `run` would refuse is refused here the same way (exit 2), so it can check pipelines
//! in CI, like Spark's pipeline dry run.

use std::io::Write;
use std::sync::Arc;

use crate::batch::TextCounters;
use crate::cli::RunConfig;
use crate::error::{Error, Result};

/// `dfstream explain QUERY [run flags]`.
pub async fn explain(config: RunConfig, out: &mut impl Write) -> Result<()> {
    let args = &config.args;
    let (_, query, _) = crate::app::plan(&config, Arc::new(TextCounters::default())).await?;
    let mut text = format!("query          {}\n", args.query.display());
    for (name, value) in &config.params {
        text.push_str(&format!("param          {name}={value}\n"));
    }
    if let Some(event_time) = &args.event_time {
        text.push_str(&format!("event time     {event_time}\n"));
    }
    if let Some(delay) = args.watermark {
        text.push_str(&format!(
            "watermark      {delay:?} behind the largest event time\n"
        ));
    }
    text.push_str(&query.explain());
    text.push_str("it would run as a stream\n");
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing to the console", e))
}
