//! SQL functions dfstream adds to DataFusion.
//!
//! `words(text)` returns the list of words in `text`: maximal runs of word characters, with
//! exactly the meaning of the regex class `\w` (Unicode letters, marks, digits, connector
//! punctuation). It does in one pass what `regexp_replace` + `string_to_array` +
//! `array_remove_all` do in three, so the shipped word count stays fast and readable.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringBuilder};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers every dfstream function with `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(WordsFunc::new()));
}

/// `words(text) -> list<utf8>`; see the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WordsFunc {
    signature: Signature,
}

impl WordsFunc {
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl Default for WordsFunc {
    fn default() -> Self {
        Self::new()
    }
}

fn item_field() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::Utf8, true))
}

impl ScalarUDFImpl for WordsFunc {
    fn name(&self) -> &str {
        "words"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(item_field()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let input = args.args[0].to_array(args.number_rows)?;
        let input = cast(&input, &DataType::Utf8)?;
        let result = split_words(input.as_string::<i32>());
        if scalar {
            let value = ScalarValue::try_from_array(&result, 0)?;
            return Ok(ColumnarValue::Scalar(value));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// Whether `c` belongs to the regex class `\w`.
#[inline]
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        regex_syntax::is_word_character(c)
    }
}

fn split_words(input: &datafusion::arrow::array::StringArray) -> ArrayRef {
    let mut words = StringBuilder::with_capacity(input.len() * 8, input.value_data().len());
    let mut offsets = Vec::with_capacity(input.len() + 1);
    offsets.push(0i32);
    let mut count = 0i32;
    for i in 0..input.len() {
        if input.is_valid(i) {
            let text = input.value(i);
            let mut start = None;
            for (pos, c) in text.char_indices() {
                match (is_word_char(c), start) {
                    (true, None) => start = Some(pos),
                    (false, Some(s)) => {
                        words.append_value(&text[s..pos]);
                        count += 1;
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                words.append_value(&text[s..]);
                count += 1;
            }
        }
        offsets.push(count);
    }
    let list = ListArray::new(
        item_field(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(words.finish()),
        input.nulls().cloned(),
    );
    Arc::new(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn words_of(text: &str) -> Vec<String> {
        let input = StringArray::from(vec![text]);
        let list = split_words(&input);
        let list = list.as_list::<i32>();
        let values = list.value(0);
        let values = values.as_string::<i32>();
        (0..values.len())
            .map(|i| values.value(i).to_string())
            .collect()
    }

    #[test]
    fn words_are_runs_of_word_characters() {
        assert_eq!(
            words_of("don't stop—café 42"),
            ["don", "t", "stop", "café", "42"]
        );
        assert_eq!(words_of("  snake_case, x1!"), ["snake_case", "x1"]);
        assert!(words_of("").is_empty());
        assert!(words_of(" -- ").is_empty());
        assert_eq!(words_of("日本語 テキスト"), ["日本語", "テキスト"]);
    }

    #[test]
    fn null_input_gives_null_list() {
        let input = StringArray::from(vec![None, Some("a b")]);
        let list = split_words(&input);
        assert!(list.is_null(0));
        assert_eq!(list.as_list::<i32>().value(1).len(), 2);
    }
}
