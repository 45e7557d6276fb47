//! Update mode's changelog, for queries whose rows can leave the result.
//!
//! A HAVING (or any filter above the GROUP BY) can stop holding for a group that a trigger
//! touched: `HAVING count(*) < 3` held for `a` at 2 and fails at 3. Emitting only the rows
//! that pass would leave `a 2` standing in a reader's table. So such queries get an operation
//! column, [`OP_COLUMN`], first in each update-mode row, as Flink's changelog and Debezium
//! carry one: `upsert` for a row that is in the result after the trigger, `delete` (with the
//! row's values before the trigger) for a row whose key was in the result before the trigger
//! and is not after it. A reader applies them in batch order, by the result's key.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};

/// The operation column's name.
pub const OP_COLUMN: &str = "_op";
pub const UPSERT: &str = "upsert";
pub const DELETE: &str = "delete";

/// The result schema with the operation column in front.
pub fn with_op_column(result: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
    fields.extend(result.fields().iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, result.metadata().clone()))
}

/// The changelog rows of one trigger: every row of `after` (the touched groups' result rows
/// now) as an upsert, then each row of `before` (the same groups' result rows before the
/// trigger) whose `key` no row of `after` has, as a delete. An empty `key` is a query
/// without GROUP BY (one row).
pub fn changelog(
    schema: &SchemaRef,
    key: &[usize],
    after: &[RecordBatch],
    before: &[RecordBatch],
) -> Result<Vec<RecordBatch>, ArrowError> {
    let key_fields = |batch: &RecordBatch| -> Vec<ArrayRef> {
        key.iter().map(|&i| Arc::clone(batch.column(i))).collect()
    };
    let mut out = Vec::with_capacity(after.len() + before.len());
    if key.is_empty() {
        // No GROUP BY: one row, which left the result when there is none now.
        let now: usize = after.iter().map(RecordBatch::num_rows).sum();
        for batch in after.iter().filter(|b| b.num_rows() > 0) {
            out.push(tagged(schema, UPSERT, batch)?);
        }
        for batch in before.iter().filter(|b| b.num_rows() > 0 && now == 0) {
            out.push(tagged(schema, DELETE, batch)?);
        }
        return Ok(out);
    }
    let Some(first) = after.iter().chain(before).next() else {
        return Ok(out);
    };
    let converter = RowConverter::new(
        key_fields(first)
            .iter()
            .map(|a| SortField::new(a.data_type().clone()))
            .collect(),
    )?;
    let mut kept: HashSet<Box<[u8]>> = HashSet::new();
    for batch in after.iter().filter(|b| b.num_rows() > 0) {
        let rows = converter.convert_columns(&key_fields(batch))?;
        kept.extend(rows.iter().map(|row| Box::<[u8]>::from(row.as_ref())));
        out.push(tagged(schema, UPSERT, batch)?);
    }
    for batch in before.iter().filter(|b| b.num_rows() > 0) {
        let rows = converter.convert_columns(&key_fields(batch))?;
        let left: BooleanArray = rows
            .iter()
            .map(|row| Some(!kept.contains(row.as_ref())))
            .collect();
        let gone = filter_record_batch(batch, &left)?;
        if gone.num_rows() > 0 {
            out.push(tagged(schema, DELETE, &gone)?);
        }
    }
    Ok(out)
}

/// `batch` with the operation column `op` in front.
fn tagged(schema: &SchemaRef, op: &str, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let ops: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        op,
        batch.num_rows(),
    )));
    let mut columns = vec![ops];
    columns.extend(batch.columns().iter().cloned());
    RecordBatch::try_new(Arc::clone(schema), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    fn result(words: &[Option<&str>], counts: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "word",
                Arc::new(StringArray::from(words.to_vec())) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(counts.to_vec())) as ArrayRef),
        ])
        .unwrap()
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, Option<String>, i64)> {
        batches
            .iter()
            .flat_map(|b| {
                let ops = b.column(0).as_string::<i32>();
                let words = b.column(1).as_string::<i32>();
                let counts = b.column(2).as_primitive::<Int64Type>();
                (0..b.num_rows()).map(move |i| {
                    (
                        ops.value(i).to_string(),
                        words.is_valid(i).then(|| words.value(i).to_string()),
                        counts.value(i),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn rows_whose_key_left_the_result_are_deleted_with_their_old_values() {
        let before = result(&[Some("a"), Some("b"), None], &[2, 1, 1]);
        let after = result(&[Some("b")], &[2]);
        let schema = with_op_column(&before.schema());
        let out = changelog(&schema, &[0], &[after], &[before]).unwrap();
        assert_eq!(
            rows(&out),
            vec![
                ("upsert".into(), Some("b".into()), 2),
                ("delete".into(), Some("a".into()), 2),
                ("delete".into(), None, 1),
            ]
        );
    }

    #[test]
    fn a_null_key_is_one_key_and_nothing_before_means_only_upserts() {
        let before = result(&[None], &[1]);
        let after = result(&[None, Some("c")], &[2, 1]);
        let schema = with_op_column(&after.schema());
        let out = changelog(&schema, &[0], std::slice::from_ref(&after), &[before]).unwrap();
        assert_eq!(rows(&out).len(), 2, "the NULL group stayed: no delete");
        let out = changelog(&schema, &[0], &[after], &[]).unwrap();
        assert!(rows(&out).iter().all(|r| r.0 == "upsert"));
        assert!(changelog(&schema, &[0], &[], &[]).unwrap().is_empty());
    }
}
