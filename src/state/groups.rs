//! The GROUP BY state: one partial-aggregate row per group, kept as a log of Arrow chunks.
//!
//! A row holds the group columns followed by each aggregate's partial state, exactly as
//! DataFusion's `Partial` aggregation emits them. An index maps each group key to the chunk and
//! row of its latest version, so a trigger touches only the groups it updates: it gathers their
//! old rows, and appends the merged rows as a new chunk (which is also the checkpoint delta).
//! Knows nothing of SQL or aggregate functions: merging rows is the query's job.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{Result, internal_err};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

/// Where a group's latest row lives: (chunk, row).
type Location = (u32, u32);
const NOWHERE: Location = (u32::MAX, u32::MAX);
/// A group removed by [`GroupState::evict`] (its key stays in the index until compaction).
const EVICTED: Location = (u32::MAX - 1, 0);

/// See the module docs.
pub struct GroupState {
    schema: SchemaRef,
    num_keys: usize,
    /// Append-only log of partial-state rows; older rows of a group are dead.
    chunks: Vec<RecordBatch>,
    rows_in_chunks: usize,
    /// Group key -> dense group id. `None` when the query has no GROUP BY keys (one group).
    index: Option<Box<dyn GroupValues>>,
    /// Latest row of each group, by group id. Every id below `locations.len()` has a row, or
    /// is `EVICTED`.
    locations: Vec<Location>,
    /// How many groups are `EVICTED`.
    evicted: usize,
    /// Scratch for interning.
    ids: Vec<usize>,
    /// The rows of the only chunk are not in the index yet: rows appended to an empty state
    /// (one per group) are interned when a lookup first needs them, which a run of one big
    /// trigger never does.
    unindexed: bool,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState")
            .field("groups", &self.locations.len())
            .field("chunks", &self.chunks.len())
            .field("rows_in_chunks", &self.rows_in_chunks)
            .finish()
    }
}

impl GroupState {
    /// An empty state for rows of `schema` whose first `num_keys` columns are the group key.
    pub fn new(schema: SchemaRef, num_keys: usize) -> Result<Self> {
        let index = if num_keys == 0 {
            None
        } else {
            let key_schema = Arc::new(Schema::new(schema.fields()[..num_keys].to_vec()));
            Some(new_group_values(key_schema, &GroupOrdering::None)?)
        };
        Ok(Self {
            schema,
            num_keys,
            chunks: Vec::new(),
            rows_in_chunks: 0,
            index,
            locations: Vec::new(),
            evicted: 0,
            ids: Vec::new(),
            unindexed: false,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How many leading columns of a row are its group key.
    pub fn num_keys(&self) -> usize {
        self.num_keys
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        if self.unindexed {
            return self.rows_in_chunks;
        }
        self.locations.len() - self.evicted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An estimate of the memory the state holds: its stored rows, the key index and the
    /// group locations.
    pub fn memory_size(&self) -> usize {
        let rows: usize = self
            .chunks
            .iter()
            .map(|chunk| chunk.get_array_memory_size())
            .sum();
        rows + self.index.as_ref().map_or(0, |index| index.size())
            + self.locations.capacity() * std::mem::size_of::<Location>()
    }

    /// Rows stored, live and dead.
    pub fn stored_rows(&self) -> usize {
        self.rows_in_chunks
    }

    /// The current rows of the groups that appear in `batches` (each group once), or `None`
    /// if none of them exists yet. The batches may name a group several times.
    pub fn existing_rows(&mut self, batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
        self.index_pending()?;
        let known = self.locations.len();
        let mut wanted: Vec<usize> = Vec::new();
        for rows in batches {
            self.intern(rows)?;
            wanted.extend(
                self.ids
                    .iter()
                    .copied()
                    .filter(|&id| id < known && self.locations[id] != EVICTED),
            );
        }
        // A key can occur more than once in `rows` (several partitions, or skipped partial
        // aggregation); gathering its old row twice would count it twice.
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(None);
        }
        let picks: Vec<(usize, usize)> = wanted
            .iter()
            .map(|&id| {
                let (c, r) = self.locations[id];
                (c as usize, r as usize)
            })
            .collect();
        Ok(Some(self.gather(&picks)?))
    }

    /// Appends merged rows (one per group) as a new chunk and makes them the groups' latest.
    pub fn append(&mut self, merged: RecordBatch) -> Result<()> {
        if merged.num_rows() == 0 {
            return Ok(());
        }
        let merged = self.conform(merged)?;
        if self.chunks.is_empty() && self.locations.is_empty() && self.index.is_some() {
            self.rows_in_chunks = merged.num_rows();
            self.chunks.push(merged);
            self.unindexed = true;
            return Ok(());
        }
        self.index_pending()?;
        self.intern(&merged)?;
        let chunk = u32::try_from(self.chunks.len()).expect("fewer than 2^32 chunks");
        let groups = self.group_count();
        let known = self.locations.len();
        if known < groups {
            self.locations.resize(groups, NOWHERE);
        }
        for (row, &id) in self.ids.iter().enumerate() {
            if self.locations[id] == EVICTED {
                self.evicted -= 1; // the group starts again
            }
            self.locations[id] = (chunk, row as u32);
        }
        // Only groups new in this append can lack a row: a check that follows the trigger,
        // not the state's size.
        if let Some(missing) = self.locations[known..].iter().position(|l| *l == NOWHERE) {
            return internal_err!(
                "group {} was interned but never given a row",
                known + missing
            );
        }
        self.rows_in_chunks += merged.num_rows();
        self.chunks.push(merged);
        self.compact_if_sparse()
    }

    /// Every group's latest row (in no particular order).
    pub fn live_rows(&self) -> Result<RecordBatch> {
        if let [only] = self.chunks.as_slice()
            && (self.unindexed
                || (self.evicted == 0 && self.rows_in_chunks == self.locations.len()))
        {
            // One chunk holding one row per group (a first trigger, or just compacted).
            return Ok(only.clone());
        }
        self.live_rows_by_id()
    }

    /// Every group's latest row, in group-id order.
    fn live_rows_by_id(&self) -> Result<RecordBatch> {
        let picks: Vec<(usize, usize)> = self
            .locations
            .iter()
            .filter(|&&l| l != EVICTED)
            .map(|&(c, r)| (c as usize, r as usize))
            .collect();
        self.gather(&picks)
    }

    /// Removes the groups whose rows `is_final` selects (closed windows), returning their rows.
    pub fn evict(
        &mut self,
        mut is_final: impl FnMut(&RecordBatch) -> Result<BooleanArray>,
    ) -> Result<RecordBatch> {
        self.index_pending()?;
        let live: Vec<usize> = (0..self.locations.len())
            .filter(|&id| self.locations[id] != EVICTED)
            .collect();
        let picks: Vec<(usize, usize)> = live
            .iter()
            .map(|&id| (self.locations[id].0 as usize, self.locations[id].1 as usize))
            .collect();
        let rows = self.gather(&picks)?;
        let mask = is_final(&rows)?;
        let finals = filter_record_batch(&rows, &mask)?;
        if finals.num_rows() > 0 {
            for (i, &id) in live.iter().enumerate() {
                if mask.is_valid(i) && mask.value(i) {
                    self.locations[id] = EVICTED;
                    self.evicted += 1;
                }
            }
            self.compact_if_sparse()?;
        }
        Ok(finals)
    }

    /// Removes the groups whose keys are the first columns of `keys`; they must exist.
    pub fn remove(&mut self, keys: &RecordBatch) -> Result<()> {
        self.index_pending()?;
        let known = self.locations.len();
        self.intern(keys)?;
        if let Some(&unknown) = self.ids.iter().find(|&&id| id >= known) {
            // Interning added keys the state never held: keep the index consistent (they
            // count as removed), then report the caller's mistake.
            let added = self.group_count() - known;
            self.locations.resize(self.group_count(), EVICTED);
            self.evicted += added;
            return internal_err!("removing group {unknown}, which the state does not hold");
        }
        for &id in &self.ids {
            if self.locations[id] != EVICTED {
                self.locations[id] = EVICTED;
                self.evicted += 1;
            }
        }
        self.compact_if_sparse()
    }

    /// Rewrites the log as one chunk of live rows when dead rows outnumber live ones, and
    /// forgets evicted keys when they outnumber live groups.
    fn compact_if_sparse(&mut self) -> Result<()> {
        let live = self.len();
        let sparse = self.chunks.len() >= 2 && self.rows_in_chunks > 2 * live.max(1024);
        let evicted_many = self.evicted > live.max(1024);
        if !sparse && !evicted_many {
            return Ok(());
        }
        let compacted = self.live_rows_by_id()?;
        if self.evicted > 0 {
            // A fresh index of the live keys only: ids 0..live in row order.
            let mut fresh = GroupState::new(Arc::clone(&self.schema), self.num_keys)?;
            fresh.intern(&compacted)?;
            self.index = fresh.index.take();
            self.evicted = 0;
            self.locations = vec![NOWHERE; live];
        }
        self.chunks = vec![compacted];
        self.rows_in_chunks = live;
        for (id, location) in self.locations.iter_mut().enumerate() {
            *location = (0, id as u32);
        }
        Ok(())
    }

    /// Interns the rows appended to the empty state, if that has not happened yet.
    fn index_pending(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.unindexed) {
            return Ok(());
        }
        let chunk = self.chunks[0].clone();
        self.intern(&chunk)?;
        self.locations = vec![NOWHERE; self.group_count()];
        for (row, &id) in self.ids.iter().enumerate() {
            self.locations[id] = (0, row as u32);
        }
        self.compact_if_sparse()
    }

    fn gather(&self, picks: &[(usize, usize)]) -> Result<RecordBatch> {
        if picks.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let chunks: Vec<&RecordBatch> = self.chunks.iter().collect();
        Ok(interleave_record_batch(&chunks, picks)?)
    }

    fn group_count(&self) -> usize {
        match &self.index {
            Some(index) => index.len(),
            None => 1,
        }
    }

    /// Sets `self.ids` to the group id of each row of `rows`, adding unknown keys.
    fn intern(&mut self, rows: &RecordBatch) -> Result<()> {
        self.ids.clear();
        match &mut self.index {
            Some(index) => {
                let keys: Vec<ArrayRef> = rows.columns()[..self.num_keys].to_vec();
                index.intern(&keys, &mut self.ids)
            }
            None => {
                self.ids.resize(rows.num_rows(), 0);
                Ok(())
            }
        }
    }

    /// Gives `batch` this state's schema (same columns; field names or metadata may differ).
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.schema() == self.schema {
            return Ok(batch);
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            batch.columns().to_vec(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn rows(keys: &[&str], values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    fn live(state: &GroupState) -> Vec<(String, i64)> {
        let batch = state.live_rows().unwrap();
        let k = batch.column(0).as_string::<i32>();
        let v = batch.column(1).as_primitive::<Int64Type>();
        let mut out: Vec<_> = (0..batch.num_rows())
            .map(|i| (k.value(i).to_string(), v.value(i)))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn latest_row_per_group_wins_and_old_rows_are_gathered_once() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        assert!(
            state
                .existing_rows(&[rows(&["a", "b"], &[1, 2])])
                .unwrap()
                .is_none()
        );
        state.append(rows(&["a", "b"], &[1, 2])).unwrap();
        let old = state
            .existing_rows(&[rows(&["b", "c", "b"], &[0, 0, 0])])
            .unwrap()
            .unwrap();
        assert_eq!(old.num_rows(), 1, "b is gathered once although named twice");
        state.append(rows(&["c", "b"], &[5, 7])).unwrap();
        assert_eq!(
            live(&state),
            [("a".into(), 1), ("b".into(), 7), ("c".into(), 5)]
        );
        assert_eq!(state.len(), 3);
    }

    #[test]
    fn compaction_keeps_only_live_rows() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        for i in 0..3000 {
            state.existing_rows(&[rows(&["x"], &[i])]).unwrap();
            state.append(rows(&["x"], &[i])).unwrap();
        }
        assert!(state.stored_rows() <= 2 * 1024 + 1);
        assert_eq!(live(&state), [("x".into(), 2999)]);
    }

    #[test]
    fn evicted_groups_leave_and_can_start_again() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        state.append(rows(&["a", "b", "c"], &[1, 2, 3])).unwrap();
        let gone = state
            .evict(|rows| {
                let v = rows.column(1).as_primitive::<Int64Type>();
                Ok(v.iter().map(|x| x.map(|x| x <= 2)).collect())
            })
            .unwrap();
        assert_eq!(gone.num_rows(), 2);
        assert_eq!(live(&state), [("c".into(), 3)]);
        assert_eq!(state.len(), 1);
        assert!(
            state
                .existing_rows(&[rows(&["a"], &[0])])
                .unwrap()
                .is_none()
        );
        state.append(rows(&["a"], &[9])).unwrap();
        assert_eq!(live(&state), [("a".into(), 9), ("c".into(), 3)]);
    }

    #[test]
    fn many_evictions_rebuild_the_index() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        for round in 0..5i64 {
            let keys: Vec<String> = (0..1000).map(|i| format!("r{round}-{i}")).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            state
                .existing_rows(&[rows(&refs, &vec![round; 1000])])
                .unwrap();
            state.append(rows(&refs, &vec![round; 1000])).unwrap();
            state
                .evict(|rows| Ok(BooleanArray::from(vec![true; rows.num_rows()])))
                .unwrap();
        }
        state.append(rows(&["last"], &[7])).unwrap();
        assert_eq!(live(&state), [("last".into(), 7)]);
        assert!(
            state.locations.len() < 2100,
            "{} ids kept",
            state.locations.len()
        );
    }

    #[test]
    fn removing_an_unknown_group_is_an_error_that_leaves_the_state_usable() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        state.append(rows(&["a", "b"], &[1, 2])).unwrap();
        state.remove(&rows(&["a"], &[0])).unwrap();
        assert!(state.remove(&rows(&["zz"], &[0])).is_err());
        state.append(rows(&["c"], &[3])).unwrap();
        assert_eq!(live(&state), [("b".into(), 2), ("c".into(), 3)]);
        state.append(rows(&["zz"], &[4])).unwrap();
        assert_eq!(state.len(), 3);
    }

    #[test]
    fn a_first_chunk_is_indexed_only_when_a_lookup_needs_it() {
        let mut state = GroupState::new(schema(), 1).unwrap();
        state.append(rows(&["a", "b", "c"], &[1, 2, 3])).unwrap();
        assert!(state.unindexed);
        assert_eq!(state.len(), 3);
        assert_eq!(
            live(&state),
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]
        );
        let old = state
            .existing_rows(&[rows(&["c", "d"], &[0, 0])])
            .unwrap()
            .unwrap();
        assert!(!state.unindexed);
        assert_eq!(
            old.column(1).as_primitive::<Int64Type>().values().to_vec(),
            [3]
        );
        state.append(rows(&["c", "d"], &[30, 4])).unwrap();
        assert_eq!(state.len(), 4);
        assert_eq!(
            live(&state),
            [
                ("a".into(), 1),
                ("b".into(), 2),
                ("c".into(), 30),
                ("d".into(), 4)
            ]
        );
        // Eviction and removal index a fresh first chunk too.
        let mut state = GroupState::new(schema(), 1).unwrap();
        state.append(rows(&["x", "y"], &[1, 2])).unwrap();
        state.remove(&rows(&["x"], &[0])).unwrap();
        assert_eq!(live(&state), [("y".into(), 2)]);
        let mut state = GroupState::new(schema(), 1).unwrap();
        state.append(rows(&["x", "y"], &[1, 2])).unwrap();
        let gone = state
            .evict(|rows| Ok(BooleanArray::from(vec![true; rows.num_rows()])))
            .unwrap();
        assert_eq!(gone.num_rows(), 2);
        assert!(state.is_empty());
    }

    #[test]
    fn no_keys_means_one_group() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut state = GroupState::new(Arc::clone(&schema), 0).unwrap();
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![4]))]).unwrap();
        assert!(
            state
                .existing_rows(std::slice::from_ref(&batch))
                .unwrap()
                .is_none()
        );
        state.append(batch.clone()).unwrap();
        assert_eq!(
            state
                .existing_rows(std::slice::from_ref(&batch))
                .unwrap()
                .unwrap()
                .num_rows(),
            1
        );
        assert_eq!(state.len(), 1);
    }
}
