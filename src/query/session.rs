//! Session windows: a key's rows share a session while they come less than `gap` apart.
//!
//! `session(ts, gap)` gives each row the session it would open alone, `[ts, ts + gap)`, and the
//! trigger's `Partial` aggregation groups rows by those bounds and the query's other keys. Here
//! each key's new sessions are merged with its open ones wherever they overlap, and every row's
//! bounds are rewritten to those of the session it now belongs to, so that `PartialReduce` merges
//! the partial states of a whole session into one row. Open sessions that were absorbed into a
//! larger one leave the state.
//!
//! Sessions only grow, so a merged session covers every session it absorbed: a later row of a
//! key replaces the earlier rows whose session it overlaps. Recovery (replaying state deltas)
//! relies on that rule, and readers of update-mode output apply it too.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StructArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, internal_err};

use super::functions::{as_micros, session_array};

/// A session's bounds in microseconds: `[start, end)`.
type Bounds = (i64, i64);

/// The open sessions of every key; see the module docs.
pub struct Sessions {
    /// The session column among the state rows' group keys.
    column: usize,
    /// The other group key columns.
    other_keys: Vec<usize>,
    /// Schema of the group key columns (the first `num_keys` state columns).
    key_schema: SchemaRef,
    /// The timestamp type of the session bounds.
    ts_type: DataType,
    converter: RowConverter,
    /// Open sessions per key (the other keys' row bytes), sorted by start, disjoint.
    open: HashMap<Box<[u8]>, Vec<Bounds>>,
}

/// How one trigger's rows merge into the open sessions: see [`Sessions::plan_merge`].
pub struct SessionMerge {
    /// Key rows of the open sessions the trigger's rows join (their state rows are merged in).
    pub touched: Option<RecordBatch>,
    /// Key rows of the open sessions absorbed into a larger one (they leave the state).
    pub absorbed: Option<RecordBatch>,
    /// The trigger's rows, with the bounds of the sessions they now belong to.
    pub new_rows: RecordBatch,
    /// Each touched key's sessions after the merge.
    merged: HashMap<Box<[u8]>, Vec<Bounds>>,
}

impl Sessions {
    /// For state rows of `schema` whose first `num_keys` columns are the group keys, with the
    /// session key at `column`.
    pub fn new(schema: &SchemaRef, num_keys: usize, column: usize) -> Result<Self> {
        let DataType::Struct(fields) = schema.field(column).data_type() else {
            return internal_err!("the session key is not a struct");
        };
        let ts_type = fields[0].data_type().clone();
        let other_keys: Vec<usize> = (0..num_keys).filter(|&i| i != column).collect();
        let converter = RowConverter::new(
            other_keys
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        let key_schema = Arc::new(Schema::new(schema.fields()[..num_keys].to_vec()));
        Ok(Self {
            column,
            other_keys,
            key_schema,
            ts_type,
            converter,
            open: HashMap::new(),
        })
    }

    /// Merges the sessions of a trigger's partial rows with the open ones of the same keys.
    pub fn plan_merge(&self, new_rows: &RecordBatch) -> Result<SessionMerge> {
        let keys = self.key_bytes(new_rows)?;
        let bounds = self.bounds(new_rows)?;
        // Each key's new sessions, and one of its rows (to copy its key values from).
        let mut by_key: HashMap<&[u8], (usize, Vec<Bounds>)> = HashMap::new();
        for (row, b) in bounds.iter().enumerate() {
            if let Some(b) = b {
                by_key
                    .entry(keys[row].as_slice())
                    .or_insert_with(|| (row, Vec::new()))
                    .1
                    .push(*b);
            }
        }
        let mut touched = KeyRows::default();
        let mut absorbed = KeyRows::default();
        let mut merged = HashMap::with_capacity(by_key.len());
        for (key, (row, mut new)) in by_key {
            let open = self.open.get(key).map(Vec::as_slice).unwrap_or_default();
            new.sort_unstable();
            let sessions = merge_intervals(open.iter().copied().chain(new.iter().copied()));
            for &old in open {
                let into = containing(&sessions, old.0);
                // Only sessions that take new rows change; the others stay as they are.
                if new.iter().any(|n| containing(&sessions, n.0) == into) {
                    touched.push(row, old);
                    if into != old {
                        absorbed.push(row, old);
                    }
                }
            }
            merged.insert(Box::<[u8]>::from(key), sessions);
        }
        Ok(SessionMerge {
            touched: touched.build(self, new_rows)?,
            absorbed: absorbed.build(self, new_rows)?,
            new_rows: self.with_merged_bounds(new_rows, &keys, &bounds, &merged)?,
            merged,
        })
    }

    /// Gives each of `rows` (state rows of touched sessions) the bounds of the merged session
    /// holding its start.
    pub fn rewrite(&self, rows: &RecordBatch, merge: &SessionMerge) -> Result<RecordBatch> {
        let keys = self.key_bytes(rows)?;
        let bounds = self.bounds(rows)?;
        self.with_merged_bounds(rows, &keys, &bounds, &merge.merged)
    }

    fn with_merged_bounds(
        &self,
        rows: &RecordBatch,
        keys: &[Vec<u8>],
        bounds: &[Option<Bounds>],
        merged: &HashMap<Box<[u8]>, Vec<Bounds>>,
    ) -> Result<RecordBatch> {
        let (starts, ends): (Vec<Option<i64>>, Vec<Option<i64>>) = bounds
            .iter()
            .enumerate()
            .map(|(row, b)| {
                let session = b.map(|(start, end)| {
                    merged
                        .get(keys[row].as_slice())
                        .map(|sessions| containing(sessions, start))
                        .unwrap_or((start, end))
                });
                (session.map(|s| s.0), session.map(|s| s.1))
            })
            .unzip();
        let column = session_array(
            &self.ts_type,
            TimestampMicrosecondArray::from(starts),
            TimestampMicrosecondArray::from(ends),
        )?;
        let mut columns = rows.columns().to_vec();
        columns[self.column] = column;
        Ok(RecordBatch::try_new(rows.schema(), columns)?)
    }

    /// Records the sessions after a merge (once the state holds the merged rows).
    pub fn commit(&mut self, merge: SessionMerge) {
        self.open.extend(merge.merged);
    }

    /// Forgets sessions that left the state (closed by the watermark).
    pub fn forget(&mut self, rows: &RecordBatch) -> Result<()> {
        let keys = self.key_bytes(rows)?;
        for (row, b) in self.bounds(rows)?.into_iter().enumerate() {
            let Some(b) = b else { continue };
            if let Some(sessions) = self.open.get_mut(keys[row].as_slice()) {
                sessions.retain(|s| *s != b);
                if sessions.is_empty() {
                    self.open.remove(keys[row].as_slice());
                }
            }
        }
        Ok(())
    }

    /// Adds restored state rows; returns the key rows of the earlier sessions they replace
    /// (which they cover; see the module docs), to remove from the state first.
    pub fn restore(&mut self, rows: &RecordBatch) -> Result<Option<RecordBatch>> {
        let keys = self.key_bytes(rows)?;
        let mut replaced = KeyRows::default();
        for (row, b) in self.bounds(rows)?.into_iter().enumerate() {
            let Some(b) = b else { continue };
            let sessions = self
                .open
                .entry(Box::from(keys[row].as_slice()))
                .or_default();
            sessions.retain(|&s| {
                let overlaps = s.0 < b.1 && b.0 < s.1;
                if overlaps && s != b {
                    replaced.push(row, s);
                }
                !overlaps
            });
            let at = sessions.partition_point(|s| s.0 < b.0);
            sessions.insert(at, b);
        }
        replaced.build(self, rows)
    }

    /// The other keys of each row, as comparable bytes.
    fn key_bytes(&self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        if self.other_keys.is_empty() {
            return Ok(vec![Vec::new(); rows.num_rows()]); // one key: sessions of all rows
        }
        let columns: Vec<ArrayRef> = self
            .other_keys
            .iter()
            .map(|&i| Arc::clone(rows.column(i)))
            .collect();
        let converted = self.converter.convert_columns(&columns)?;
        Ok((0..rows.num_rows())
            .map(|i| converted.row(i).as_ref().to_vec())
            .collect())
    }

    /// Each row's session bounds (`None` for a NULL session).
    fn bounds(&self, rows: &RecordBatch) -> Result<Vec<Option<Bounds>>> {
        let session: &StructArray = rows.column(self.column).as_struct();
        let starts = as_micros(session.column(0))?;
        let ends = as_micros(session.column(1))?;
        Ok((0..rows.num_rows())
            .map(|i| {
                (session.is_valid(i) && starts.is_valid(i) && ends.is_valid(i))
                    .then(|| (starts.value(i), ends.value(i)))
            })
            .collect())
    }
}

/// Key rows to build: the other keys copied from a row of the source batch, and given bounds.
#[derive(Default)]
struct KeyRows {
    source_rows: Vec<u32>,
    bounds: Vec<Bounds>,
}

impl KeyRows {
    fn push(&mut self, source_row: usize, bounds: Bounds) {
        self.source_rows.push(source_row as u32);
        self.bounds.push(bounds);
    }

    /// The group key columns of the pushed rows (`None` if there are none).
    fn build(self, sessions: &Sessions, source: &RecordBatch) -> Result<Option<RecordBatch>> {
        if self.bounds.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(self.source_rows);
        let session = session_array(
            &sessions.ts_type,
            TimestampMicrosecondArray::from_iter_values(self.bounds.iter().map(|b| b.0)),
            TimestampMicrosecondArray::from_iter_values(self.bounds.iter().map(|b| b.1)),
        )?;
        let columns = (0..sessions.key_schema.fields().len())
            .map(|i| {
                if i == sessions.column {
                    Ok(Arc::clone(&session))
                } else {
                    Ok(take(source.column(i), &indices, None)?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&sessions.key_schema),
            columns,
        )?))
    }
}

/// Merges intervals that overlap (sharing more than an end point) into disjoint sessions,
/// sorted by start.
fn merge_intervals(intervals: impl Iterator<Item = Bounds>) -> Vec<Bounds> {
    let mut all: Vec<Bounds> = intervals.collect();
    all.sort_unstable();
    let mut merged: Vec<Bounds> = Vec::with_capacity(all.len());
    for (start, end) in all {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The session of `sessions` (sorted, disjoint, covering `start`) that holds `start`.
fn containing(sessions: &[Bounds], start: i64) -> Bounds {
    let i = sessions.partition_point(|s| s.0 <= start);
    sessions[i.saturating_sub(1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_intervals_merge_and_touching_ones_do_not() {
        let merged = merge_intervals([(10, 15), (0, 5), (3, 8), (8, 9), (14, 20)].into_iter());
        assert_eq!(merged, [(0, 8), (8, 9), (10, 20)]);
        assert_eq!(containing(&merged, 3), (0, 8));
        assert_eq!(containing(&merged, 8), (8, 9));
        assert_eq!(containing(&merged, 14), (10, 20));
    }
}
