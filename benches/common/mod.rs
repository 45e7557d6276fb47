//! What the benches share: the building blocks of their hand-written yardsticks (a word
//! splitter that sees ASCII text as `words(lower(value))` does, a fast hash map of word
//! counts) and the check of a dfstream result against a yardstick's answer, row for row.
//!
//! A benchmark whose result goes unchecked could look good while wrong (issue #18): every
//! bench reads back what dfstream wrote and compares it with an answer computed without
//! dfstream, outside the timed part. Each bench compiles this module on its own and uses a
//! part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Display;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Unwrapping with context: a failure panics with what was being done, then the error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> T;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    #[track_caller]
    fn context(self, what: impl FnOnce() -> String) -> T {
        match self {
            Ok(value) => value,
            Err(e) => panic!("{}: {e}", what()),
        }
    }
}

/// FxHash-style hasher for the yardsticks' maps.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut v = [0u8; 8];
            v[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(v))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<Fx>;

/// Word (lower-cased bytes) -> count: the answer of a word count.
pub type Counts = HashMap<Vec<u8>, u64, FxBuild>;

/// Whether `b` belongs to a word: ASCII letters, digits and `_` (what `\w` matches in ASCII
/// text), and every byte of a multi-byte character (kept whole, never split on).
/// `--size-mb N` from the bench's arguments, or `default` (cargo bench passes others too).
pub fn size_mb_arg(default: u64) -> u64 {
    let mut size_mb = default;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--size-mb" {
            size_mb = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--size-mb N");
        }
    }
    size_mb
}

pub fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Calls `on_word` with each word of `text` (maximal runs of word bytes), lower-cased, as
/// `words(lower(value))` splits ASCII text. `word` is scratch space reused from call to call
/// (it saves an allocation a call); it is left empty.
#[inline]
pub fn for_each_word(text: &[u8], word: &mut Vec<u8>, mut on_word: impl FnMut(&[u8])) {
    for &b in text {
        if is_word_byte(b) {
            word.push(b.to_ascii_lowercase());
        } else if !word.is_empty() {
            on_word(word.as_slice());
            word.clear();
        }
    }
    if !word.is_empty() {
        on_word(word.as_slice());
        word.clear();
    }
}

/// Adds the words of `text` to `counts`.
pub fn count_words(text: &[u8], word: &mut Vec<u8>, counts: &mut Counts) {
    for_each_word(text, word, |w| *counts.entry(w.to_vec()).or_insert(0) += 1);
}

/// The reference word count: the same job as sql/wordcount.sql for ASCII text, by hand, over
/// `files` on `threads` threads (every `threads`-th file on each), merged into one map. Lines
/// need no splitting: a line end is not a word byte.
pub fn count_words_in_files(files: &[PathBuf], threads: usize) -> Counts {
    let maps: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&PathBuf> = files.iter().skip(t).step_by(threads).collect();
                s.spawn(move || {
                    let mut counts = Counts::default();
                    let mut word = Vec::with_capacity(64);
                    for path in mine {
                        count_words(&read_file(path), &mut word, &mut counts);
                    }
                    counts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a yardstick thread panicked"))
            .collect()
    });
    let mut merged = Counts::default();
    for map in maps {
        for (k, v) in map {
            *merged.entry(k).or_insert(0) += v;
        }
    }
    merged
}

/// A word-count answer from `(word, count)` pairs.
pub fn counts_of<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Counts {
    pairs
        .into_iter()
        .map(|(word, count)| (word.as_bytes().to_vec(), count))
        .collect()
}

/// The bytes of an input file.
pub fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).context(|| format!("reading {}", path.display()))
}

/// Every record batch of the Parquet files `paths`, file after file.
pub fn read_parquet(paths: &[PathBuf]) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for path in paths {
        let file = std::fs::File::open(path).context(|| format!("opening {}", path.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .context(|| format!("reading the Parquet metadata of {}", path.display()))
            .build()
            .context(|| format!("reading {}", path.display()));
        for batch in reader {
            batches.push(batch.context(|| format!("reading a batch of {}", path.display())));
        }
    }
    batches
}

/// The Parquet files directly in `dir`, sorted: what update and append modes write (one file
/// per batch). Hidden files (a write in progress) are left out.
pub fn parquet_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .context(|| format!("listing {}", dir.display()))
        .map(|entry| {
            entry
                .context(|| format!("listing {}", dir.display()))
                .path()
        })
        .filter(|path| {
            path.extension().is_some_and(|e| e == "parquet")
                && !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Column `name` of `batch`, cast to `to` (e.g. Utf8View to Utf8); panics when the column is
/// missing, cannot be cast, or holds a NULL (no checked column may).
pub fn column_as(batch: &RecordBatch, name: &str, to: &DataType) -> ArrayRef {
    let column = batch.column_by_name(name).unwrap_or_else(|| {
        panic!(
            "dfstream's output has no column {name:?} (its columns: {:?})",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        )
    });
    let column = cast(column, to).context(|| {
        format!(
            "casting the output column {name} from {} to {to}",
            column.data_type()
        )
    });
    assert_eq!(
        column.null_count(),
        0,
        "the output column {name} holds NULLs"
    );
    column
}

/// A `count` value of dfstream's output as a count.
pub fn as_count(value: i64) -> u64 {
    u64::try_from(value).context(|| format!("a negative count in dfstream's output: {value}"))
}

/// A query result read back from dfstream's output: each key's count, and the keys met in
/// more than one row (a key must be one row: a second one is an error, kept for the report).
pub struct ResultRows<K> {
    pub counts: HashMap<K, u64, FxBuild>,
    pub repeated: Vec<K>,
}

impl<K> Default for ResultRows<K> {
    fn default() -> Self {
        Self {
            counts: HashMap::default(),
            repeated: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> ResultRows<K> {
    /// Adds a row; a key seen before is noted as repeated (the first row's count stays).
    pub fn add(&mut self, key: K, count: u64) {
        match self.counts.entry(key) {
            Entry::Occupied(seen) => self.repeated.push(seen.key().clone()),
            Entry::Vacant(new) => {
                new.insert(count);
            }
        }
    }
}

impl<K> ResultRows<K> {
    /// Rows read.
    pub fn rows(&self) -> usize {
        self.counts.len() + self.repeated.len()
    }
}

/// The `(word, count)` rows of dfstream's word counts in `batches` (other columns, such as
/// update mode's `batch_id`, are ignored).
pub fn word_count_rows(batches: &[RecordBatch]) -> ResultRows<Vec<u8>> {
    let mut rows = ResultRows::default();
    for batch in batches {
        let words = column_as(batch, "word", &DataType::Utf8);
        let counts = column_as(batch, "count", &DataType::Int64);
        let (words, counts) = (words.as_string::<i32>(), counts.as_primitive::<Int64Type>());
        for i in 0..batch.num_rows() {
            rows.add(
                words.value(i).as_bytes().to_vec(),
                as_count(counts.value(i)),
            );
        }
    }
    rows
}

/// Panics unless `result` holds exactly the yardstick's answer: the same keys, each in one
/// row, with the same counts. The message gives how many keys differ and a few examples,
/// each described by `describe`.
pub fn assert_matches_yardstick<K: Hash + Eq>(
    what: &str,
    yardstick: &HashMap<K, u64, FxBuild>,
    result: &ResultRows<K>,
    describe: impl Fn(&K) -> String,
) {
    const EXAMPLES: usize = 5;
    let mut differing = 0usize;
    let mut examples = Vec::new();
    let mut note = |difference: String| {
        differing += 1;
        if examples.len() < EXAMPLES {
            examples.push(difference);
        }
    };
    for (key, &expected) in yardstick {
        match result.counts.get(key) {
            Some(&got) if got == expected => {}
            Some(&got) => note(format!(
                "{}: dfstream {got}, yardstick {expected}",
                describe(key)
            )),
            None => note(format!(
                "{}: missing from dfstream's output (yardstick {expected})",
                describe(key)
            )),
        }
    }
    for (key, &got) in &result.counts {
        if !yardstick.contains_key(key) {
            note(format!(
                "{}: dfstream {got}, not in the yardstick's answer",
                describe(key)
            ));
        }
    }
    for key in &result.repeated {
        note(format!(
            "{}: more than one row in dfstream's output",
            describe(key)
        ));
    }
    if differing > 0 {
        panic!(
            "{what}: dfstream's result differs from the yardstick's for {differing} keys \
             ({} rows from dfstream, {} in the yardstick's answer); for example:\n  {}",
            result.rows(),
            yardstick.len(),
            examples.join("\n  ")
        );
    }
}

/// Panics unless the word counts in `batches` are exactly `yardstick`'s.
pub fn check_word_counts(what: &str, yardstick: &Counts, batches: &[RecordBatch]) {
    check_word_rows(what, yardstick, &word_count_rows(batches));
}

/// Panics unless the word counts `rows` are exactly `yardstick`'s.
pub fn check_word_rows(what: &str, yardstick: &Counts, rows: &ResultRows<Vec<u8>>) {
    assert_matches_yardstick(what, yardstick, rows, |word| {
        format!("word {:?}", String::from_utf8_lossy(word))
    });
}
