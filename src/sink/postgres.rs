//! Writes each trigger's result to a PostgreSQL table (`--sink postgres://...?table=T`)
//! exactly once, through the pure-Rust `tokio-postgres` client.
//!
//! Two phases, each one transaction:
//! - `write` (before the checkpoint commits batch N): the batch's rows are copied (`COPY ...
//!   FROM STDIN`) into a staging table `T__dfstream_staged` beside `T`, tagged with N; a
//!   re-run of N first removes what an earlier attempt staged.
//! - `commit` (after the checkpoint has): the staged batches up to N are applied to `T` (append
//!   mode inserts; update mode upserts by the GROUP BY key; complete mode replaces the rows),
//!   and N is recorded in `dfstream_commits` in the same transaction. A batch already recorded
//!   there is not applied again, so a replay after a crash, or a commit repeated at start,
//!   writes each batch once.
//!
//! `dfstream_commits` (one row per target table, in the target's schema) also names the
//! checkpoint's query: a table written by another query (or a checkpoint started over) is
//! refused, since its batch ids would not line up. A session advisory lock refuses a second job
//! writing the same table. The table is created when missing, with column types from the
//! result schema (and, when the result has a GROUP BY key, a unique constraint on it, which
//! update mode's upsert needs). The password comes from the URL or `PGPASSWORD` and is never
//! logged or shown.

use std::fmt::Write as _;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::{FutureExt, SinkExt};
use tokio_postgres::{Client, Config, NoTls};

use super::{Sink, SinkBatch};
use crate::error::{Error, Result};
use crate::query::OutputMode;

/// The PostgreSQL sink among the kinds of sink: on with `--sink postgres://...`.
pub const KIND: super::Kind = super::Kind {
    name: "postgres",
    build: |job| {
        async move {
            Ok(match &job.config.args.sink {
                Some(url) => {
                    let target = Target::parse(url, |name| std::env::var(name).ok())?;
                    Some(Box::new(PostgresSink::open(target, job).await?) as Box<dyn Sink>)
                }
                None => None,
            })
        }
        .boxed()
    },
};

/// Where `--sink` writes: the connection settings and the table.
#[derive(Debug)]
pub struct Target {
    /// Connection settings (its Debug output hides the password).
    pub config: Config,
    /// `None`: the connection's search path decides (usually `public`).
    pub schema: Option<String>,
    pub table: String,
    /// `?key=COL,...`: the upsert key, instead of the GROUP BY key found in the query.
    pub key: Option<Vec<String>>,
}

impl Target {
    /// Reads `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB?table=[SCHEMA.]TABLE[&key=COL,...]`
    /// plus the connection options tokio-postgres knows (`sslmode`, `connect_timeout`, ...);
    /// what the URL leaves out comes from `env` (PGHOST, PGPORT, PGUSER, PGPASSWORD,
    /// PGDATABASE), as libpq does.
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Target> {
        let usage = |why: String| Error::Usage(format!("--sink: {why}"));
        let mut parsed = url::Url::parse(url).map_err(|e| usage(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(usage(format!(
                "unknown kind of sink '{}:' (supported: postgres://HOST/DB?table=T)",
                parsed.scheme()
            )));
        }
        let mut table = None;
        let mut key = None;
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "table" => table = Some(value.into_owned()),
                "key" => {
                    let columns: Vec<String> = value
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if columns.is_empty() {
                        return Err(usage("?key= names no column".into()));
                    }
                    key = Some(columns);
                }
                _ => {}
            }
        }
        // The other options go to tokio-postgres as written (a re-encoding would turn
        // spaces into '+', which it does not read back).
        let options: Vec<&str> = parsed
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                !pair.is_empty() && name != "table" && name != "key"
            })
            .collect();
        let options = options.join("&");
        let table = table.filter(|t| !t.is_empty()).ok_or_else(|| {
            usage("name the table to write: add ?table=NAME (or SCHEMA.NAME)".into())
        })?;
        let (schema, table) = match table.split_once('.') {
            Some((schema, table)) => (Some(schema.to_string()), table.to_string()),
            None => (None, table),
        };
        // PostgreSQL cuts names to 63 bytes: the staging table's name must stay distinct.
        if table.len() > MAX_NAME_BYTES - STAGED_SUFFIX.len() {
            return Err(usage(format!(
                "the table name {table} is longer than {} bytes (PostgreSQL keeps {MAX_NAME_BYTES}, \
                 and the staging table adds {STAGED_SUFFIX})",
                MAX_NAME_BYTES - STAGED_SUFFIX.len()
            )));
        }
        parsed.set_query((!options.is_empty()).then_some(options.as_str()));
        let mut config: Config = parsed
            .as_str()
            .parse()
            .map_err(|e| usage(format!("{e} (in the connection options)")))?;
        if matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        ) {
            return Err(usage(
                "sslmode=require: the sink connects without TLS (sslmode=disable or prefer); \
                 reach a TLS-only server through a local tunnel"
                    .into(),
            ));
        }
        if config.get_hosts().is_empty() {
            let host = env("PGHOST").unwrap_or_else(|| "localhost".into());
            if host.starts_with('/') {
                config.host_path(host);
            } else {
                config.host(host);
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = env("PGPORT")
        {
            config.port(
                port.parse()
                    .map_err(|_| usage(format!("PGPORT={port} is not a port number")))?,
            );
        }
        if config.get_user().is_none()
            && let Some(user) = env("PGUSER")
        {
            config.user(user);
        }
        if config.get_password().is_none()
            && let Some(password) = env("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env("PGDATABASE")
        {
            config.dbname(db);
        }
        if config.get_application_name().is_none() {
            config.application_name("dfstream");
        }
        Ok(Target {
            config,
            schema,
            table,
            key,
        })
    }

    /// `"schema"."table"` (or `"table"`), with `suffix` added to the table's name.
    fn qualified(&self, suffix: &str) -> String {
        let table = quote_ident(&format!("{}{suffix}", self.table));
        match &self.schema {
            Some(schema) => format!("{}.{table}", quote_ident(schema)),
            None => table,
        }
    }

    /// The table's name as it is recorded and shown: `schema.table` or `table`.
    fn name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }

    /// Where the server is, without user or password.
    fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or("");
        format!("{host}:{port}/{db}")
    }
}

/// The longest name PostgreSQL keeps (longer ones are cut).
const MAX_NAME_BYTES: usize = 63;

/// The staging table's name: the target's with this added.
const STAGED_SUFFIX: &str = "__dfstream_staged";

/// An identifier as PostgreSQL reads it back unchanged: in double quotes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL type a result column of this type is stored as, if there is one.
fn column_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "SMALLINT".into(),
        DataType::Int32 | DataType::UInt16 => "INTEGER".into(),
        DataType::Int64 | DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "NUMERIC(20, 0)".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => {
            format!("NUMERIC({p}, {s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        _ => return None,
    })
}

/// How a PostgreSQL failure is reported: what dfstream was doing, and the server's message.
fn failed(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let action = action.into();
    move |e| Error::io(action, std::io::Error::other(describe_error(&e)))
}

/// The server's message with its detail and hint, or the client's error with its cause
/// (tokio-postgres shows only the kind: "db error").
fn describe_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

pub struct PostgresSink {
    client: Client,
    target: Target,
    mode: OutputMode,
    layout: Layout,
    /// The connection's task (stopped at close).
    connection: tokio::task::JoinHandle<()>,
}

/// The tables a sink writes and the result's columns, quoted for SQL.
struct Layout {
    table: String,
    /// The table's name as `dfstream_commits` records it (`schema.table`).
    name: String,
    /// `schema.dfstream_commits`.
    commits: String,
    /// The staging table beside it.
    staged: String,
    /// The result's column names, in order.
    columns: Vec<String>,
    /// The key columns update mode upserts by.
    key: Vec<String>,
    /// Rows are staged with their changelog operation in `dfstream_op` (upsert or delete).
    changelog: bool,
}

impl Layout {
    /// The staging table's columns after `dfstream_batch_id`, as COPY writes them.
    fn staged_columns(&self) -> String {
        let op = if self.changelog { "dfstream_op, " } else { "" };
        format!("{op}{}", self.columns.join(", "))
    }

    /// Removes what is staged for batches `first` and later, and records that batches up to
    /// `staged_through` are staged, in `transaction`.
    async fn unstage_from(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        first: i64,
        staged_through: i64,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        transaction
            .execute(
                &format!("DELETE FROM {} WHERE dfstream_batch_id >= $1", self.staged),
                &[&first],
            )
            .await?;
        transaction
            .execute(
                &format!(
                    "UPDATE {} SET staged_through = $1 WHERE target = $2",
                    self.commits
                ),
                &[&staged_through, &self.name],
            )
            .await?;
        Ok(())
    }
}

impl PostgresSink {
    /// Connects, takes the table's lock, and creates what is missing: the commit table, the
    /// target table (with a unique key for upserts), the staging table.
    pub async fn open(target: Target, job: &super::Job<'_>) -> Result<PostgresSink> {
        // A changelog's operation column is staged, not stored: it says what to do.
        let skip = usize::from(job.changelog);
        let fields = &job.schema.fields()[skip..];
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        let mut types = Vec::with_capacity(names.len());
        for field in fields {
            if ["dfstream_batch_id", "dfstream_op"].contains(&field.name().as_str()) {
                return Err(Error::Usage(format!(
                    "--sink postgres: the result column {} has the name of a column of the \
                     sink's staging table: give it another alias in the query",
                    field.name()
                )));
            }
            if field.name().len() > MAX_NAME_BYTES {
                return Err(Error::Usage(format!(
                    "--sink postgres: the result column {} has a name longer than PostgreSQL \
                     keeps ({MAX_NAME_BYTES} bytes): give it a shorter alias in the query",
                    field.name()
                )));
            }
            types.push(column_type(field.data_type()).ok_or_else(|| {
                Error::Usage(format!(
                    "--sink postgres: the result column {} is {}, which the sink does not \
                     store; cast it in the query (e.g. CAST({} AS VARCHAR))",
                    field.name(),
                    field.data_type(),
                    field.name()
                ))
            })?);
        }
        let query_key: Option<Vec<usize>> =
            job.key.map(|key| key.iter().map(|i| i - skip).collect());
        let key: Option<Vec<usize>> = match &target.key {
            Some(columns) => Some(
                columns
                    .iter()
                    .map(|c| {
                        names.iter().position(|n| n == c).ok_or_else(|| {
                            Error::Usage(format!(
                                "--sink ...?key={}: the result has no column {c} (it has {})",
                                columns.join(","),
                                names.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            None => query_key.clone(),
        };
        let sorted = |key: &Option<Vec<usize>>| {
            key.clone().map(|mut key| {
                key.sort_unstable();
                key
            })
        };
        if job.changelog && sorted(&key) != sorted(&query_key) {
            return Err(Error::Usage(
                "--sink ...?key=: this query's update-mode rows are a changelog whose deletes \
                 are by the GROUP BY key; a ?key= other than it could delete another group's \
                 row. Leave ?key= out"
                    .into(),
            ));
        }
        if job.mode == OutputMode::Update && key.is_none() {
            return Err(Error::Usage(
                "--sink postgres in update mode upserts each changed row by the GROUP BY key, \
                 but this query's result has none: keep the GROUP BY columns in the SELECT \
                 list, name the key with ?key=COL,..., or use --mode complete"
                    .into(),
            ));
        }
        let mut target = target;
        let server = target.server();
        let (client, connection) = target
            .config
            .connect(NoTls)
            .await
            .map_err(failed(format!("connecting to PostgreSQL at {server}")))?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::error!("the PostgreSQL connection failed: {}", describe_error(&e));
            }
        });
        // The server notices a vanished client within half a minute (and frees its lock), not
        // the two hours of the system's default; the table's name is spelled one way (with
        // its schema), so that one lock and one commit record stand for one table.
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; \
                 SET tcp_keepalives_count = 3",
            )
            .await
            .map_err(failed(format!("setting up the session at {server}")))?;
        if target.schema.is_none() {
            let schema: Option<String> = client
                .query_one("SELECT current_schema()", &[])
                .await
                .map_err(failed("reading the current schema"))?
                .get(0);
            target.schema = Some(schema.ok_or_else(|| {
                Error::Usage(
                    "--sink: the connection has no current schema (search_path): name the \
                     table as SCHEMA.TABLE"
                        .into(),
                )
            })?);
        }
        let commits = match &target.schema {
            Some(s) => format!("{}.dfstream_commits", quote_ident(s)),
            None => "dfstream_commits".to_string(),
        };
        let sink = PostgresSink {
            client,
            mode: job.mode,
            layout: Layout {
                table: target.qualified(""),
                name: target.name(),
                commits,
                staged: target.qualified(STAGED_SUFFIX),
                columns: names.iter().map(|n| quote_ident(n)).collect(),
                key: key
                    .iter()
                    .flatten()
                    .map(|&i| quote_ident(names[i]))
                    .collect(),
                changelog: job.changelog,
            },
            target,
            connection,
        };
        sink.prepare(&types, job).await?;
        log::info!(
            "writing the result to PostgreSQL at {server}, table {}",
            sink.target.name()
        );
        Ok(sink)
    }

    async fn prepare(&self, types: &[String], job: &super::Job<'_>) -> Result<()> {
        let query_id = job.query_id;
        let name = self.target.name();
        let table = &self.layout.table;
        self.lock(&name).await?;
        self.client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (target TEXT PRIMARY KEY, query_id TEXT NOT \
                 NULL, batch_id BIGINT NOT NULL, staged_through BIGINT NOT NULL, updated_at \
                 TIMESTAMPTZ NOT NULL DEFAULT now())",
                self.layout.commits
            ))
            .await
            .map_err(failed(format!("creating {}", self.layout.commits)))?;
        let recorded = self
            .client
            .query_opt(
                &format!(
                    "SELECT query_id FROM {} WHERE target = $1",
                    self.layout.commits
                ),
                &[&name],
            )
            .await
            .map_err(failed(format!("reading {}", self.layout.commits)))?;
        let fresh = match recorded {
            Some(row) => {
                let theirs: String = row.get(0);
                if theirs != query_id {
                    return Err(Error::Checkpoint(format!(
                        "the PostgreSQL table {name} holds the output of another query \
                         (checkpoint query id {theirs}; this checkpoint's is {query_id}), whose \
                         batch ids do not match this one's. Write to another table, or delete \
                         its row from {} (and the table's rows) to start it over",
                        self.layout.commits
                    )));
                }
                false
            }
            None => true,
        };
        if fresh
            && let Some(last) = job.last_commit
            && self.mode != OutputMode::Complete
        {
            return Err(Error::Usage(format!(
                "--sink: this checkpoint has run batches 0 to {last} without the PostgreSQL \
                 table {name}, whose rows the sink in --mode {} cannot write again; start \
                 with a new --checkpoint, or use --mode complete (each batch writes the whole \
                 result)",
                self.mode
            )));
        }
        let columns: Vec<(String, String)> = self
            .client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&table],
            )
            .await
            .map_err(failed(format!("reading the columns of {name}")))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let definitions: Vec<String> = self
            .layout
            .columns
            .iter()
            .zip(types)
            .map(|(column, ty)| format!("{column} {ty}"))
            .collect();
        if columns.is_empty() {
            // Update mode's upserts need a unique key; other modes have none to keep.
            let unique = if self.layout.key.is_empty() || self.mode != OutputMode::Update {
                String::new()
            } else {
                let version: i32 = self
                    .client
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .map_err(failed("reading the server's version"))?
                    .get(0);
                // NULL is a key value like any other (a GROUP BY puts NULLs in one group);
                // before PostgreSQL 15 a unique constraint cannot say so.
                let nulls = if version >= 150000 {
                    "NULLS NOT DISTINCT "
                } else {
                    log::warn!(
                        "PostgreSQL before 15: rows whose key has a NULL are inserted, not \
                         upserted"
                    );
                    ""
                };
                format!(", UNIQUE {nulls}({})", self.layout.key.join(", "))
            };
            self.client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({}{unique})",
                    definitions.join(", ")
                ))
                .await
                .map_err(failed(format!("creating the table {name}")))?;
            log::info!("created the PostgreSQL table {name}");
        } else {
            self.check_existing(&columns).await?;
        }
        if fresh {
            // Nothing staged belongs to this query yet: start the staging table afresh (an
            // earlier query's may have other columns).
            let creating = || format!("creating the staging table of {name}");
            self.client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {staged}; CREATE TABLE {staged} (dfstream_batch_id \
                     BIGINT NOT NULL, {op}{})",
                    definitions.join(", "),
                    op = if self.layout.changelog {
                        "dfstream_op TEXT NOT NULL, "
                    } else {
                        ""
                    },
                    staged = self.layout.staged,
                ))
                .await
                .map_err(failed(creating()))?;
            self.client
                .execute(
                    &format!(
                        "INSERT INTO {} (target, query_id, batch_id, staged_through) VALUES \
                         ($1, $2, -1, -1)",
                        self.layout.commits
                    ),
                    &[&name, &query_id],
                )
                .await
                .map_err(failed(creating()))?;
        }
        // What phase two will run, planned now: a column of another type, a missing
        // constraint or a key the table cannot upsert by fails here, before any batch (a
        // failure after the checkpoint's commit would recur at every start).
        for statement in apply_sql(&self.layout, self.mode, 0, 1) {
            self.client
                .batch_execute(&format!("EXPLAIN {statement}"))
                .await
                .map_err(|e| {
                    Error::Usage(format!(
                        "--sink: the PostgreSQL table {name} cannot take this query's rows: {}",
                        describe_error(&e)
                    ))
                })?;
        }
        Ok(())
    }

    /// Takes the table's lock (a session advisory lock, freed when the connection ends). A
    /// job killed a moment ago may still hold it while the server notices: a few retries.
    async fn lock(&self, name: &str) -> Result<()> {
        let key = format!("dfstream {name}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let locked: bool = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 7))",
                    &[&key],
                )
                .await
                .map_err(failed(format!("locking {name}")))?
                .get(0);
            if locked {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let holder = self
            .client
            .query_opt(
                "SELECT a.pid, coalesce(host(a.client_addr), 'local'), a.application_name \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = \
                 'advisory' AND l.granted AND l.objid = (hashtextextended($1, 7) & \
                 4294967295)::bigint::oid LIMIT 1",
                &[&key],
            )
            .await
            .ok()
            .flatten()
            .map(|row| {
                let (pid, address, application): (i32, String, String) =
                    (row.get(0), row.get(1), row.get(2));
                format!(" (server process {pid}, client {address}, {application})")
            })
            .unwrap_or_default();
        Err(Error::Usage(format!(
            "--sink: another job writes the PostgreSQL table {name}: it holds its lock{holder}"
        )))
    }

    /// A table that was there: it must have the result's columns, and for update mode a
    /// unique index on exactly the key.
    async fn check_existing(&self, columns: &[(String, String)]) -> Result<()> {
        let name = self.target.name();
        let missing: Vec<&String> = self
            .layout
            .columns
            .iter()
            .filter(|c| !columns.iter().any(|(have, _)| &quote_ident(have) == *c))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "--sink: the PostgreSQL table {name} has no column {} for the result (it has {})",
                missing
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                columns
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if self.mode != OutputMode::Update {
            return Ok(());
        }
        let mut key: Vec<String> = self
            .layout
            .key
            .iter()
            .map(|c| c[1..c.len() - 1].replace("\"\"", "\""))
            .collect();
        key.sort();
        let unique = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique \
                 AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND (SELECT \
                 array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a WHERE \
                 a.attrelid = i.indrelid AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts \
                 - 1])) = $2::text[] AND i.indnkeyatts = cardinality($2::text[])",
                &[&self.layout.table, &key],
            )
            .await
            .map_err(failed(format!("reading the indexes of {name}")))?;
        if unique.is_none() {
            return Err(Error::Usage(format!(
                "--sink: update mode upserts by ({}), but the PostgreSQL table {name} has no \
                 unique index on exactly those columns: create one (CREATE UNIQUE INDEX ON \
                 {} ({}) NULLS NOT DISTINCT), or let dfstream create the table",
                self.layout.key.join(", "),
                self.layout.table,
                self.layout.key.join(", ")
            )));
        }
        Ok(())
    }
}

/// The statements that apply staged batches `(after, through]` to the table.
fn apply_sql(layout: &Layout, mode: OutputMode, after: i64, through: i64) -> Vec<String> {
    let Layout {
        table,
        staged,
        columns,
        key,
        changelog,
        ..
    } = layout;
    let columns_list = columns.join(", ");
    match mode {
        OutputMode::Complete => vec![
            format!("DELETE FROM {table}"),
            format!(
                "INSERT INTO {table} ({columns_list}) SELECT {columns_list} FROM {staged} WHERE \
                 dfstream_batch_id = {through}"
            ),
        ],
        OutputMode::Append => vec![format!(
            "INSERT INTO {table} ({columns_list}) SELECT {columns_list} FROM {staged} WHERE \
             dfstream_batch_id > {after} AND dfstream_batch_id <= {through}"
        )],
        OutputMode::Update => {
            let values: Vec<String> = columns
                .iter()
                .filter(|c| !key.contains(c))
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            let action = if values.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", values.join(", "))
            };
            let upserts = if *changelog {
                " AND dfstream_op = 'upsert'"
            } else {
                ""
            };
            // Statements per batch, in batch order: an upsert may touch a row once.
            let mut statements = Vec::new();
            for batch in after + 1..=through {
                if *changelog {
                    statements.extend(delete_sql(layout, batch));
                }
                statements.push(format!(
                    "INSERT INTO {table} ({columns_list}) SELECT {columns_list} FROM {staged} \
                     WHERE dfstream_batch_id = {batch}{upserts} ON CONFLICT ({}) DO {action}",
                    key.join(", ")
                ));
            }
            statements
        }
    }
}

/// The statements that delete the rows a changelog's batch `batch` deletes, by key: one that
/// matches keys with `=` (which an index or a hash join serves), one for keys with a NULL.
fn delete_sql(layout: &Layout, batch: i64) -> [String; 2] {
    let Layout {
        table, staged, key, ..
    } = layout;
    let deletes = format!("s.dfstream_batch_id = {batch} AND s.dfstream_op = 'delete'");
    let equal: Vec<String> = key.iter().map(|k| format!("t.{k} = s.{k}")).collect();
    let same: Vec<String> = key
        .iter()
        .map(|k| format!("t.{k} IS NOT DISTINCT FROM s.{k}"))
        .collect();
    let has_null: Vec<String> = key.iter().map(|k| format!("s.{k} IS NULL")).collect();
    [
        format!(
            "DELETE FROM {table} t USING {staged} s WHERE {deletes} AND {}",
            equal.join(" AND ")
        ),
        format!(
            "DELETE FROM {table} t USING {staged} s WHERE {deletes} AND ({}) AND {}",
            has_null.join(" OR "),
            same.join(" AND ")
        ),
    ]
}

/// Appends `value` to a `COPY ... FROM STDIN` text-format line, escaped.
fn put_escaped(out: &mut BytesMut, value: &str) {
    for byte in value.bytes() {
        match byte {
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            other => out.put_u8(other),
        }
    }
}

/// How many bytes of COPY data are sent at a time.
const COPY_CHUNK: usize = 1 << 20;

/// Encodes `batch`'s rows as COPY text lines, each led by `batch_id`, in chunks of about
/// [`COPY_CHUNK`] bytes.
fn copy_lines(batch_id: u64, batch: &RecordBatch, chunks: &mut Vec<Bytes>) -> Result<()> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::io("formatting rows for PostgreSQL", std::io::Error::other(e)))?;
    let lead = batch_id.to_string();
    let mut buffer = BytesMut::with_capacity(COPY_CHUNK + 4096);
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        buffer.put_slice(lead.as_bytes());
        for (column_index, (column, formatter)) in
            batch.columns().iter().zip(&formatters).enumerate()
        {
            buffer.put_u8(b'\t');
            if column.is_null(row) {
                buffer.put_slice(b"\\N");
                continue;
            }
            text.clear();
            match column.data_type() {
                DataType::Binary => put_hex(&mut text, column.as_binary::<i32>().value(row)),
                DataType::LargeBinary => put_hex(&mut text, column.as_binary::<i64>().value(row)),
                DataType::BinaryView => put_hex(&mut text, column.as_binary_view().value(row)),
                _ => formatter.value(row).write(&mut text).map_err(|e| {
                    Error::io("formatting rows for PostgreSQL", std::io::Error::other(e))
                })?,
            }
            if text.contains('\0') {
                return Err(Error::io(
                    "copying rows to PostgreSQL",
                    std::io::Error::other(format!(
                        "a value of column {} holds a NUL character, which PostgreSQL text \
                         cannot store; replace it in the query (e.g. replace(col, chr(0), ''))",
                        batch.schema().field(column_index).name()
                    )),
                ));
            }
            put_escaped(&mut buffer, &text);
        }
        buffer.put_u8(b'\n');
        if buffer.len() >= COPY_CHUNK {
            chunks.push(buffer.split().freeze());
        }
    }
    if !buffer.is_empty() {
        chunks.push(buffer.freeze());
    }
    Ok(())
}

/// `bytes` as BYTEA's hex input (`\x0a1b...`).
fn put_hex(out: &mut String, bytes: &[u8]) {
    out.push_str("\\x");
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn describe(&self) -> String {
        format!("postgres {} {}", self.target.server(), self.target.name())
    }

    async fn write(&mut self, batch: &SinkBatch<'_>) -> Result<()> {
        let id = batch.batch_id as i64;
        let name = self.target.name();
        let staging = || format!("staging batch {id} for {name}");
        let mut chunks = Vec::new();
        for rows in batch.rows {
            copy_lines(batch.batch_id, rows, &mut chunks)?;
        }
        let transaction = self.client.transaction().await.map_err(failed(staging()))?;
        self.layout
            .unstage_from(&transaction, id, id)
            .await
            .map_err(failed(staging()))?;
        if batch.num_rows() > 0 {
            let sink = transaction
                .copy_in(&format!(
                    "COPY {} (dfstream_batch_id, {}) FROM STDIN",
                    self.layout.staged,
                    self.layout.staged_columns()
                ))
                .await
                .map_err(failed(format!("copying batch {id} to {name}")))?;
            futures::pin_mut!(sink);
            for chunk in chunks {
                sink.send(chunk)
                    .await
                    .map_err(failed(format!("copying batch {id} to {name}")))?;
            }
            sink.finish()
                .await
                .map_err(failed(format!("copying batch {id} to {name}")))?;
            if self.mode == OutputMode::Update {
                // Two rows of one key would fail the upsert in phase two, after the
                // checkpoint's commit, at every start; here the batch fails before it.
                let key = self.layout.key.join(", ");
                let twice = transaction
                    .query_opt(
                        &format!(
                            "SELECT {key} FROM {} WHERE dfstream_batch_id = $1 GROUP BY {key} \
                             HAVING count(*) > 1 LIMIT 1",
                            self.layout.staged
                        ),
                        &[&id],
                    )
                    .await
                    .map_err(failed(staging()))?;
                if twice.is_some() {
                    return Err(Error::io(
                        staging(),
                        std::io::Error::other(format!(
                            "two rows of the batch have the same key ({key}): the key does not \
                             identify a row, so an upsert cannot keep both"
                        )),
                    ));
                }
            }
        }
        transaction.commit().await.map_err(failed(staging()))
    }

    async fn commit(&mut self, batch_id: u64) -> Result<()> {
        let id = batch_id as i64;
        let name = self.target.name();
        let action = || format!("applying batch {id} to {name}");
        let transaction = self.client.transaction().await.map_err(failed(action()))?;
        let row = transaction
            .query_one(
                &format!(
                    "SELECT batch_id, staged_through FROM {} WHERE target = $1 FOR UPDATE",
                    self.layout.commits
                ),
                &[&name],
            )
            .await
            .map_err(failed(action()))?;
        let (applied, staged): (i64, i64) = (row.get(0), row.get(1));
        if applied >= id {
            return Ok(()); // written before a crash: the replay writes nothing
        }
        let through = staged.min(id);
        let mut statements = Vec::new();
        if through > applied {
            statements = apply_sql(&self.layout, self.mode, applied, through);
            statements.push(format!(
                "DELETE FROM {} WHERE dfstream_batch_id <= {through}",
                self.layout.staged
            ));
        }
        if !statements.is_empty() {
            transaction
                .batch_execute(&statements.join(";\n"))
                .await
                .map_err(failed(action()))?;
        }
        transaction
            .execute(
                &format!(
                    "UPDATE {} SET batch_id = $1, updated_at = now() WHERE target = $2",
                    self.layout.commits
                ),
                &[&id, &name],
            )
            .await
            .map_err(failed(action()))?;
        transaction.commit().await.map_err(failed(action()))
    }

    async fn discard_from(&mut self, first: u64) -> Result<()> {
        let first = first as i64;
        let name = self.target.name();
        let action = || format!("discarding staged batches of {name}");
        let transaction = self.client.transaction().await.map_err(failed(action()))?;
        let row = transaction
            .query_one(
                &format!(
                    "SELECT batch_id, staged_through FROM {} WHERE target = $1 FOR UPDATE",
                    self.layout.commits
                ),
                &[&name],
            )
            .await
            .map_err(failed(action()))?;
        let (applied, staged): (i64, i64) = (row.get(0), row.get(1));
        if applied >= first {
            // The table has rows of batches the checkpoint will number again with other
            // input: they cannot be taken out of it.
            return Err(Error::Checkpoint(format!(
                "the PostgreSQL table {name} holds batches up to {applied}, but the checkpoint \
                 can only reproduce batches before {first} (the later ones were lost or \
                 damaged): the table is ahead of the checkpoint. Write to a new table, or \
                 restore the table to batch {} (see {})",
                first - 1,
                self.layout.commits
            )));
        }
        self.layout
            .unstage_from(&transaction, first, staged.min(first - 1))
            .await
            .map_err(failed(action()))?;
        transaction.commit().await.map_err(failed(action()))
    }

    async fn close(self: Box<Self>) {
        drop(self.client);
        let _ = self.connection.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_url_names_the_table_and_the_environment_fills_the_rest() {
        let target = Target::parse(
            "postgres://ann:s%40cret@127.0.0.1:5433/db?table=counts&connect_timeout=5",
            env(&[("PGUSER", "bob"), ("PGPASSWORD", "other")]),
        )
        .unwrap();
        assert_eq!(target.table, "counts");
        assert_eq!(target.schema, None);
        assert_eq!(target.config.get_user(), Some("ann"));
        assert_eq!(target.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(target.config.get_ports(), [5433]);
        assert_eq!(target.server(), "127.0.0.1:5433/db");
        assert!(!format!("{target:?}").contains("s@cret"));

        let target = Target::parse(
            "postgresql:///?table=stats.words&key=word,day",
            env(&[
                ("PGHOST", "db.local"),
                ("PGPORT", "6000"),
                ("PGUSER", "bob"),
                ("PGPASSWORD", "pw"),
                ("PGDATABASE", "w"),
            ]),
        )
        .unwrap();
        assert_eq!(target.schema.as_deref(), Some("stats"));
        assert_eq!(target.qualified("_x"), "\"stats\".\"words_x\"");
        assert_eq!(target.key, Some(vec!["word".into(), "day".into()]));
        assert_eq!(target.server(), "db.local:6000/w");
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn urls_without_a_table_or_of_another_kind_are_refused() {
        let e = Target::parse("postgres://h/db", env(&[])).unwrap_err();
        assert!(e.to_string().contains("?table="), "{e}");
        let e = Target::parse("mysql://h/db?table=t", env(&[])).unwrap_err();
        assert!(e.to_string().contains("unknown kind of sink"), "{e}");
        let e = Target::parse("postgres://h/db?table=t&bogus=1", env(&[])).unwrap_err();
        assert!(e.to_string().contains("connection options"), "{e}");
    }

    #[test]
    fn copy_text_escapes_what_would_end_a_field_or_a_line() {
        let mut out = BytesMut::new();
        put_escaped(&mut out, "a\tb\\c\nd\re");
        assert_eq!(&out[..], b"a\\tb\\\\c\\nd\\re");
    }
}
