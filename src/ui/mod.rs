//! The status page (`--ui ADDR`): a view of the running job, read from what the trigger loop
//! hands to a [`Monitor`] and nothing else.
//!
//! Routes, all `GET`: `/` (one self-refreshing page: charts over the recent batches, the latest
//! result rows, the query, its plan and the checkpoint's position), `/api/progress` (the recent
//! progress records and idle events, as the `--progress` file has them), `/api/result` (the
//! latest result rows) and `/metrics` (Prometheus text; see [`metrics`]). Nothing else: no file
//! is served, and the server binds only its own address.
//!
//! The job never waits for a client: the server runs on a thread of its own, the loop only
//! records into the monitor (a short lock, no I/O), handlers copy out of it under the same lock, every response is bounded (the recent
//! [`RECENT`] events, the first [`RESULT_ROWS`] rows), a connection must send its request
//! headers within [`HEADER_TIMEOUT`] and finish within [`CONNECTION_TIMEOUT`], and at most
//! [`CONNECTIONS`] are served at once (more wait in the kernel's backlog).

pub mod metrics;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::progress::{BatchProgress, IdleEvent};

/// Events kept for `/api/progress` and the charts.
pub const RECENT: usize = 300;
/// Result rows kept for `/api/result` and the page's table.
pub const RESULT_ROWS: usize = 100;
/// Connections served at once.
pub const CONNECTIONS: usize = 32;
/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the page says about the query, fixed at start.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryInfo {
    /// The query file's name.
    pub name: String,
    pub sql: String,
    /// How it runs as a stream (`dfstream explain`'s text).
    pub plan: String,
    pub mode: String,
    /// The checkpoint's location.
    pub checkpoint: String,
}

/// The latest result rows, kept as Arrow and turned into JSON only when asked for.
#[derive(Debug, Clone, Default)]
struct ResultRows {
    batch_id: Option<u64>,
    /// The first [`RESULT_ROWS`] rows (a copy: the batch's own buffers are not held).
    first: Option<RecordBatch>,
    /// All the rows the batch emitted.
    num_rows: u64,
}

/// [`ResultRows`] as `/api/result` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultJson {
    batch_id: Option<u64>,
    columns: Vec<String>,
    rows: Vec<Value>,
    num_rows: u64,
}

/// What the status page shows, recorded by the trigger loop; see the module docs.
pub struct Monitor {
    query: QueryInfo,
    recent: Mutex<VecDeque<Value>>,
    result: Mutex<ResultRows>,
    metrics: metrics::Metrics,
}

impl Monitor {
    pub fn new(query: QueryInfo) -> Arc<Self> {
        Arc::new(Self {
            query,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            result: Mutex::default(),
            metrics: metrics::Metrics::default(),
        })
    }

    /// A batch was committed; `watermark_micros` is the watermark after it.
    pub fn committed(&self, record: &BatchProgress, watermark_micros: Option<i64>) {
        self.metrics.committed(record, watermark_micros);
        self.push(serde_json::to_value(record));
    }

    /// A trigger found no input (once per idle period).
    pub fn idle(&self, event: &IdleEvent) {
        self.push(serde_json::to_value(event));
    }

    /// The rows batch `batch_id` emitted: only the first [`RESULT_ROWS`] are copied here.
    pub fn result(&self, batch_id: u64, schema: &SchemaRef, rows: &[RecordBatch]) {
        let num_rows: usize = rows.iter().map(|b| b.num_rows()).sum();
        let mut first = Vec::new();
        let mut left = RESULT_ROWS;
        for batch in rows {
            if left == 0 {
                break;
            }
            let batch = batch.slice(0, batch.num_rows().min(left));
            left -= batch.num_rows();
            first.push(batch);
        }
        let first = match concat_batches(schema, &first) {
            Ok(first) => first,
            Err(e) => {
                log::warn!("status page: the result of batch {batch_id}: {e}");
                return;
            }
        };
        *self.result.lock().expect("monitor poisoned") = ResultRows {
            batch_id: Some(batch_id),
            first: Some(first),
            num_rows: num_rows as u64,
        };
    }

    fn push(&self, value: serde_json::Result<Value>) {
        let Ok(value) = value else { return };
        let mut recent = self.recent.lock().expect("monitor poisoned");
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(value);
    }

    fn progress_json(&self) -> String {
        let recent = self.recent.lock().expect("monitor poisoned");
        serde_json::to_string(&*recent).unwrap_or_else(|_| "[]".into())
    }

    fn result_json(&self) -> String {
        let result = self.result.lock().expect("monitor poisoned").clone();
        let (columns, rows) = match &result.first {
            Some(first) => (
                first
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
                rows_as_json(first).unwrap_or_else(|e| {
                    log::warn!("status page: the latest result as JSON: {e}");
                    Vec::new()
                }),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let json = ResultJson {
            batch_id: result.batch_id,
            columns,
            rows,
            num_rows: result.num_rows,
        };
        serde_json::to_string(&json).unwrap_or_else(|_| "{}".into())
    }
}

fn rows_as_json(batch: &RecordBatch) -> std::result::Result<Vec<Value>, String> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Checks `--ui ADDR`: a loopback address unless `public` (`--ui-public`) says otherwise.
pub fn check_address(addr: SocketAddr, public: bool) -> Result<()> {
    if addr.ip().is_loopback() || public {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "--ui {addr} would show the job (its query, results and metrics) to the network: use a \
         loopback address such as 127.0.0.1:4040, or add --ui-public to mean it"
    )))
}

/// Binds `addr` and serves the status page until the process ends, on a thread of its own
/// (so that requests never take the job's worker threads); returns the bound address (a port
/// of 0 picks a free one).
pub fn serve(addr: SocketAddr, monitor: Arc<Monitor>) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Usage(format!("--ui {addr}: cannot listen there: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("--ui {addr}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the status page".to_string(), e))?;
    std::thread::Builder::new()
        .name("status-page".into())
        .spawn(move || runtime.block_on(accept(listener, monitor)))
        .map_err(|e| Error::io("starting the status page".to_string(), e))?;
    Ok(bound)
}

/// Serves connections from `listener`, at most [`CONNECTIONS`] at once.
async fn accept(listener: std::net::TcpListener, monitor: Arc<Monitor>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        log::warn!("status page: cannot serve its socket");
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::debug!("status page: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let monitor = Arc::clone(&monitor);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let monitor = Arc::clone(&monitor);
                async move { Ok::<_, std::convert::Infallible>(respond(&monitor, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(permit);
        });
    }
}

fn respond(monitor: &Monitor, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page(&monitor.query),
        ),
        "/api/progress" => reply(StatusCode::OK, "application/json", monitor.progress_json()),
        "/api/result" => reply(StatusCode::OK, "application/json", monitor.result_json()),
        "/metrics" => reply(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            monitor.metrics.text(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the status page serves /, /api/progress, /api/result and /metrics\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = content_type.parse() {
        headers.insert(hyper::header::CONTENT_TYPE, value);
    }
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The page: the query's text, plan and checkpoint filled in (escaped), and a script that
/// polls the two JSON routes.
fn page(query: &QueryInfo) -> String {
    include_str!("page.html")
        .replace("{{name}}", &escape(&query.name))
        .replace("{{mode}}", &escape(&query.mode))
        .replace("{{checkpoint}}", &escape(&query.checkpoint))
        .replace("{{sql}}", &escape(&query.sql))
        .replace("{{plan}}", &escape(&query.plan))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '{' => out.push_str("&#123;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_without_ui_public() {
        assert!(check_address("127.0.0.1:4040".parse().unwrap(), false).is_ok());
        assert!(check_address("[::1]:4040".parse().unwrap(), false).is_ok());
        let err = check_address("0.0.0.0:4040".parse().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("--ui-public"), "{err}");
        assert!(check_address("0.0.0.0:4040".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn the_query_text_cannot_inject_markup_or_placeholders() {
        let page = page(&QueryInfo {
            name: "q.sql".into(),
            sql: "SELECT '</pre><script>alert(1)</script>' AS x, '{{plan}}' AS y".into(),
            plan: "plan".into(),
            mode: "complete".into(),
            checkpoint: "checkpoint/".into(),
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("'{{plan}}'"), "{page}");
    }
}
