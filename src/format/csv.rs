//! CSV as a [`RecordFormat`]: arrow's CSV decoder (the one DataFusion's CSV reader uses)
//! with the user's options, and `csv_core` to find where a record ends when the decoder
//! rejected something and records must be taken one by one.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::reader::{Decoder, Format, ReaderBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;

use super::CsvOptions;
use super::records::{FastDecoder, RecordFormat, RecordScanner};

/// The CSV format of a scan: the parsed columns, the options, and the columns it reads.
#[derive(Debug)]
pub struct Csv {
    schema: SchemaRef,
    options: CsvOptions,
    /// The parsed columns the scan reads, in its order.
    projection: Vec<usize>,
    /// `--null-value`, as arrow's decoder matches it (an empty field stays NULL).
    null_regex: Option<regex::Regex>,
}

impl Csv {
    pub fn new(schema: SchemaRef, options: CsvOptions, projection: Vec<usize>) -> Self {
        let null_regex = options.null_value.as_ref().map(|null| {
            regex::Regex::new(&format!("^(?:|{})$", regex::escape(null)))
                .expect("an escaped literal is a valid regex")
        });
        Self {
            schema,
            options,
            projection,
            null_regex,
        }
    }

    fn format(&self) -> Format {
        let mut format = Format::default()
            .with_header(false)
            .with_delimiter(self.options.delimiter)
            .with_quote(self.options.quote);
        if let Some(escape) = self.options.escape {
            format = format.with_escape(escape);
        }
        if let Some(null) = &self.null_regex {
            format = format.with_null_regex(null.clone());
        }
        format
    }
}

struct CsvDecoder {
    decoder: Decoder,
    schema: SchemaRef,
}

impl FastDecoder for CsvDecoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.decoder.decode(buf)
    }

    fn is_full(&self) -> bool {
        self.decoder.capacity() == 0
    }

    fn end(&mut self) -> Result<(), ArrowError> {
        // An empty buffer tells the decoder the input has ended.
        self.decoder.decode(&[]).map(|_| ())
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.decoder.flush()
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

impl RecordFormat for Csv {
    fn decoder(&self, batch_size: usize) -> Box<dyn FastDecoder> {
        let schema = Arc::new(
            self.schema
                .project(&self.projection)
                .expect("the projection is of the parsed columns"),
        );
        let decoder = ReaderBuilder::new(Arc::clone(&self.schema))
            .with_format(self.format())
            .with_projection(self.projection.clone())
            .with_batch_size(batch_size)
            .build_decoder();
        Box::new(CsvDecoder { decoder, schema })
    }

    fn record_len(&self, bytes: &[u8], at_end: bool) -> Option<usize> {
        let mut reader = self.core_reader();
        let (mut out, mut ends) = ([0u8; 4096], [0usize; 64]);
        let mut pos = 0;
        loop {
            let input = &bytes[pos..];
            let (result, read, _, _) = reader.read_record(input, &mut out, &mut ends);
            pos += read;
            match result {
                csv_core::ReadRecordResult::Record => {
                    // Take the rest of a `\r\n` with the record.
                    if bytes.get(pos.wrapping_sub(1)) == Some(&b'\r')
                        && bytes.get(pos) == Some(&b'\n')
                    {
                        pos += 1;
                    }
                    return Some(pos);
                }
                csv_core::ReadRecordResult::End => return None,
                // At the end of the file, the next call (with no input) ends the record.
                csv_core::ReadRecordResult::InputEmpty if !at_end || input.is_empty() => {
                    return None;
                }
                _ => {}
            }
        }
    }

    fn has_header(&self) -> bool {
        self.options.header
    }

    fn scanner(&self) -> Box<dyn RecordScanner> {
        Box::new(CsvScanner {
            reader: self.core_reader(),
            out: Box::new([0; 4096]),
            ends: [0; 64],
        })
    }
}

impl Csv {
    /// `csv_core`'s reader with the user's delimiter, quote and escape.
    fn core_reader(&self) -> csv_core::Reader {
        let mut builder = csv_core::ReaderBuilder::new();
        builder
            .delimiter(self.options.delimiter)
            .quote(self.options.quote)
            .escape(self.options.escape);
        builder.build()
    }
}

/// Record ends by `csv_core`'s reader, whose state carries over from piece to piece (a quoted
/// field may hold line ends); the fields it reads are dropped.
struct CsvScanner {
    reader: csv_core::Reader,
    /// Where csv_core puts the fields (dropped), made once.
    out: Box<[u8; 4096]>,
    ends: [usize; 64],
}

impl RecordScanner for CsvScanner {
    fn end_in(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut pos = 0;
        loop {
            if pos == bytes.len() {
                return None; // (no input would tell csv_core the file has ended)
            }
            let (result, read, _, _) =
                self.reader
                    .read_record(&bytes[pos..], &mut self.out[..], &mut self.ends);
            pos += read;
            match result {
                csv_core::ReadRecordResult::Record => return Some(pos),
                csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => {
                    return None;
                }
                // Room for more fields: the same buffers again.
                _ => {}
            }
        }
    }
}
