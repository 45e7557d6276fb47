//! JSON lines as a [`RecordFormat`]: arrow's JSON decoder (the one DataFusion's JSON reader
//! uses) over the parsed columns the scan reads (other fields are ignored), nested objects as
//! structs and arrays as lists; a record is a line.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};

use super::records::{FastDecoder, RecordFormat, RecordScanner};

/// The JSON format of a scan: the parsed columns it reads.
#[derive(Debug)]
pub struct Json {
    schema: SchemaRef,
}

impl Json {
    pub fn new(parsed: SchemaRef, projection: &[usize]) -> Self {
        let schema = Arc::new(
            parsed
                .project(projection)
                .expect("the projection is of the parsed columns"),
        );
        Self { schema }
    }
}

struct JsonDecoder {
    decoder: Decoder,
    batch_size: usize,
    schema: SchemaRef,
}

impl FastDecoder for JsonDecoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        self.decoder.decode(buf)
    }

    fn is_full(&self) -> bool {
        self.decoder.len() >= self.batch_size
    }

    fn end(&mut self) -> Result<(), ArrowError> {
        if self.decoder.has_partial_record() {
            return Err(ArrowError::JsonError(
                "the file ends inside a record".into(),
            ));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.decoder.flush()
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

impl RecordFormat for Json {
    fn decoder(&self, batch_size: usize) -> Box<dyn FastDecoder> {
        let decoder = ReaderBuilder::new(Arc::clone(&self.schema))
            .with_batch_size(batch_size)
            .build_decoder()
            .expect("a JSON decoder for a schema of SQL types");
        Box::new(JsonDecoder {
            decoder,
            batch_size,
            schema: Arc::clone(&self.schema),
        })
    }

    fn records_are_lines(&self) -> bool {
        true
    }

    fn record_len(&self, bytes: &[u8], at_end: bool) -> Option<usize> {
        match memchr::memchr(b'\n', bytes) {
            Some(nl) => Some(nl + 1),
            None => (at_end && !bytes.is_empty()).then_some(bytes.len()),
        }
    }

    fn scanner(&self) -> Box<dyn RecordScanner> {
        Box::new(LineEnds)
    }
}

/// A record is a line: it ends after its `\n`.
struct LineEnds;

impl RecordScanner for LineEnds {
    fn end_in(&mut self, bytes: &[u8]) -> Option<usize> {
        memchr::memchr(b'\n', bytes).map(|nl| nl + 1)
    }
}
