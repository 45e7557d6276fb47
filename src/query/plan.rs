//! From a query file to a DataFusion logical plan, with errors that point into the file.
//!
//! Owns: reading the SQL, checking it is one SELECT, binding `--param` values to `$name`
//! placeholders (unknown or missing names are errors), and rendering DataFusion's errors as
//! `FILE:LINE:COL: message`, the line, and a caret under the spot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast;

use crate::error::Error;

/// The text of a query file.
#[derive(Debug, Clone)]
pub struct QueryFile {
    pub path: PathBuf,
    pub sql: String,
}

impl QueryFile {
    /// Reads a query file; a shipped query (`sql/wordcount.sql`) that is not on disk comes
    /// from the copy built into the binary, so shortcuts work from any directory.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let sql = match std::fs::read_to_string(path) {
            Ok(sql) => sql,
            Err(e) => match shipped(path) {
                Some(sql) if e.kind() == std::io::ErrorKind::NotFound => sql.to_string(),
                _ => {
                    return Err(Error::Usage(format!(
                        "cannot read query file {}: {e}",
                        path.display()
                    )));
                }
            },
        };
        Ok(Self {
            path: path.to_path_buf(),
            sql,
        })
    }

    /// An error about this file, at a 1-based line and column if known.
    pub fn error_at(&self, position: Option<(u64, u64)>, message: &str) -> Error {
        Error::Sql(render(&self.path, &self.sql, position, message))
    }
}

/// The queries shipped in `sql/`, built into the binary.
const SHIPPED: &[(&str, &str)] = &[
    ("sql/wordcount.sql", include_str!("../../sql/wordcount.sql")),
    (
        "sql/window_wordcount.sql",
        include_str!("../../sql/window_wordcount.sql"),
    ),
    (
        "sql/tumbling_wordcount.sql",
        include_str!("../../sql/tumbling_wordcount.sql"),
    ),
    (
        "sql/session_wordcount.sql",
        include_str!("../../sql/session_wordcount.sql"),
    ),
];

fn shipped(path: &Path) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .map(|(_, sql)| *sql)
}

/// `--param name=value` pairs, sorted by name.
pub type Params = BTreeMap<String, String>;

/// Plans the query file's single SELECT with `params` bound.
pub async fn logical_plan(
    ctx: &SessionContext,
    query: &QueryFile,
    params: &Params,
) -> Result<LogicalPlan, Error> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    if query.sql.trim().is_empty() {
        return Err(query.error_at(None, "the file holds no SQL statement"));
    }
    let statement = state
        .sql_to_statement(&query.sql, &dialect)
        .map_err(|e| sql_error(query, e))?;
    let is_query =
        matches!(&statement, Statement::Statement(s) if matches!(**s, ast::Statement::Query(_)));
    if !is_query {
        return Err(query.error_at(
            None,
            "the statement is not a query; the file must hold one SELECT over `lines`",
        ));
    }
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| sql_error(query, e))?;
    bind_params(query, plan, params)
}

fn bind_params(
    query: &QueryFile,
    plan: LogicalPlan,
    params: &Params,
) -> Result<LogicalPlan, Error> {
    let wanted: BTreeSet<String> = plan
        .get_parameter_names()
        .map_err(|e| sql_error(query, e))?
        .into_iter()
        .map(|id| id.trim_start_matches('$').to_string())
        .collect();
    let given: BTreeSet<String> = params.keys().cloned().collect();
    if let Some(name) = given.difference(&wanted).next() {
        let known = if wanted.is_empty() {
            "the query has no parameters".to_string()
        } else {
            format!("the query's parameters are: ${}", join(&wanted, ", $"))
        };
        return Err(Error::Usage(format!(
            "unknown parameter '{name}' given with --param: {} uses no ${name} ({known})",
            query.path.display()
        )));
    }
    if let Some(name) = wanted.difference(&given).next() {
        return Err(Error::Usage(format!(
            "{} uses ${name} but no value was given: add --param {name}=VALUE",
            query.path.display()
        )));
    }
    if wanted.is_empty() {
        return Ok(plan);
    }
    let values: Vec<(String, ScalarValue)> = params
        .iter()
        .map(|(k, v)| (k.clone(), param_value(v)))
        .collect();
    plan.with_param_values(values)
        .map_err(|e| sql_error(query, e))
}

/// A `--param` value as a SQL literal: integers and decimals become numbers, `true`/`false`
/// booleans, anything else a string (DataFusion casts strings such as `'1 minute'` where an
/// interval is expected; write `$size::INTERVAL` to be explicit).
pub fn param_value(text: &str) -> ScalarValue {
    if let Ok(i) = text.parse::<i64>() {
        return ScalarValue::Int64(Some(i));
    }
    // A whole number past BIGINT stays exact as a DECIMAL(38, 0) (the flag parser refuses
    // longer ones), rather than turning into an inexact float.
    if is_whole_number(text)
        && let Ok(i) = text.parse::<i128>()
        && i.unsigned_abs() < 10u128.pow(38)
    {
        return ScalarValue::Decimal128(Some(i), 38, 0);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return ScalarValue::Float64(Some(f));
    }
    match text {
        "true" => ScalarValue::Boolean(Some(true)),
        "false" => ScalarValue::Boolean(Some(false)),
        _ => ScalarValue::Utf8(Some(text.to_string())),
    }
}

/// Digits with an optional sign: a parameter meant as an integer.
pub fn is_whole_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn join(names: &BTreeSet<String>, sep: &str) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(sep)
}

/// Turns a DataFusion planning error into a message that points into the query file.
pub fn sql_error(query: &QueryFile, err: DataFusionError) -> Error {
    let mut message = err.find_root().strip_backtrace();
    let mut position = None;
    let mut extra = Vec::new();
    if let Some(diagnostic) = err.diagnostic() {
        message = diagnostic.message.clone();
        position = diagnostic
            .span
            .map(|s| (s.start.line, s.start.column))
            .filter(|&(l, _)| l > 0);
        for note in &diagnostic.notes {
            extra.push(format!("note: {}", note.message));
        }
        for help in &diagnostic.helps {
            extra.push(format!("help: {}", help.message));
        }
    } else if let Some(p) = parser_position(&message) {
        position = Some(p);
    }
    let mut rendered = render(&query.path, &query.sql, position, &message);
    for line in extra {
        rendered.push('\n');
        rendered.push_str(&line);
    }
    Error::Sql(rendered)
}

/// Finds `Line: L, Column: C` in a sqlparser message.
fn parser_position(message: &str) -> Option<(u64, u64)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// `path:line:col: message`, then the line of SQL and a caret under the column.
fn render(path: &Path, sql: &str, position: Option<(u64, u64)>, message: &str) -> String {
    let Some((line, column)) = position else {
        return format!("{}: {message}", path.display());
    };
    let mut out = format!("{}:{line}:{column}: {message}", path.display());
    if let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) {
        let gutter = format!("{line:>4} | ");
        let pad: String = text
            .chars()
            .take(column.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "\n{gutter}{text}\n{:width$} | {pad}^",
            "",
            width = gutter.len() - 3
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions_are_found() {
        let msg = "sql parser error: Expected: end of statement, found: wrd at Line: 3, Column: 8";
        assert_eq!(parser_position(msg), Some((3, 8)));
        assert_eq!(parser_position("no position"), None);
    }

    #[test]
    fn render_points_at_the_column() {
        let out = render(
            Path::new("q.sql"),
            "SELECT\n  wrd FROM lines",
            Some((2, 3)),
            "boom",
        );
        assert_eq!(out, "q.sql:2:3: boom\n   2 |   wrd FROM lines\n     |   ^");
    }

    #[test]
    fn params_become_typed_literals() {
        assert_eq!(param_value("5"), ScalarValue::Int64(Some(5)));
        assert_eq!(param_value("0.5"), ScalarValue::Float64(Some(0.5)));
        assert_eq!(
            param_value("1 minute"),
            ScalarValue::Utf8(Some("1 minute".into()))
        );
    }
}
