//! The socket source's write-ahead log: a thread reads lines from the server and appends
//! whole lines to numbered segment files, synced before they can be taken; batches take
//! ranges of it, and segments go once no recovery can need them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{WalPosition, WalRange};
use crate::batch::TextCounters;
use crate::error::{Error, Result};

/// A segment is closed and a new one begun past this size.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Counts the socket source keeps (its skipped long lines go to the run's counters).
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub connections: AtomicU64,
    pub bytes: AtomicU64,
}

/// See the module docs.
pub struct SocketLog {
    wal_dir: PathBuf,
    /// The end of what is synced to the log (what may be taken).
    durable: Arc<Mutex<WalPosition>>,
    /// The end of what batches have taken.
    taken: WalPosition,
    stop: Arc<AtomicBool>,
    pub counters: Arc<SocketCounters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocketLog {
    /// Starts reading from `address` (HOST:PORT) into the log in `wal_dir`. `taken` is where
    /// committed (or replayed) batches end; anything logged after it is input still to take.
    /// `needed` is where the lines that batches took or will replay end: a log that ends
    /// before it was deleted or cut short, and starting would read new lines in their place.
    pub fn start(
        address: &str,
        wal_dir: &Path,
        taken: WalPosition,
        needed: WalPosition,
        max_line_bytes: usize,
        wake: Arc<Notify>,
        run_counters: Arc<TextCounters>,
    ) -> Result<Self> {
        // Test aid: small segments, so that tests see many (`DFSTREAM_WAL_SEGMENT_BYTES`).
        let segment_bytes = std::env::var("DFSTREAM_WAL_SEGMENT_BYTES")
            .ok()
            .and_then(|b| b.parse().ok())
            .filter(|&b| b >= 64)
            .unwrap_or(SEGMENT_BYTES);
        Self::start_with_segments(
            address,
            wal_dir,
            (taken, needed),
            max_line_bytes,
            (wake, run_counters),
            segment_bytes,
        )
    }

    /// [`Self::start`] with log segments of `segment_bytes` (small in tests).
    fn start_with_segments(
        address: &str,
        wal_dir: &Path,
        (taken, needed): (WalPosition, WalPosition),
        max_line_bytes: usize,
        (wake, run_counters): (Arc<Notify>, Arc<TextCounters>),
        segment_bytes: u64,
    ) -> Result<Self> {
        if address.to_socket_addrs().is_err() && !address.contains(':') {
            return Err(Error::Usage(format!(
                "--socket {address}: expected HOST:PORT"
            )));
        }
        std::fs::create_dir_all(wal_dir)
            .map_err(|e| Error::io(format!("creating {}", wal_dir.display()), e))?;
        let end = recover_log(wal_dir)?;
        if end < needed.max(taken) {
            return Err(Error::Checkpoint(format!(
                "the socket log in {} ends at segment {} byte {}, before the lines the \
                 checkpoint's batches took or will re-run (up to segment {} byte {}): it was \
                 deleted or cut short. Restore it, or start over with `dfstream reset`",
                wal_dir.display(),
                end.segment,
                end.offset,
                needed.max(taken).segment,
                needed.max(taken).offset
            )));
        }
        let durable = Arc::new(Mutex::new(end));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SocketCounters::default());
        let writer = Writer {
            address: address.to_string(),
            wal_dir: wal_dir.to_path_buf(),
            durable: Arc::clone(&durable),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&counters),
            run_counters,
            max_line_bytes,
            segment_bytes,
            wake,
        };
        let thread = std::thread::Builder::new()
            .name("dfstream-socket".into())
            .spawn(move || writer.run(end))
            .map_err(|e| Error::io("starting the socket reader", e))?;
        Ok(Self {
            wal_dir: wal_dir.to_path_buf(),
            durable,
            taken,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The path of a log segment, for the scan.
    pub fn segment_path(&self, segment: u64) -> PathBuf {
        segment_path(&self.wal_dir, segment)
    }

    /// Marks everything up to `position` as taken (after a replay).
    pub fn mark_taken(&mut self, position: WalPosition) {
        self.taken = self.taken.max(position);
    }

    pub fn taken(&self) -> WalPosition {
        self.taken
    }

    /// The end of the lines logged so far.
    pub fn durable(&self) -> WalPosition {
        *self.durable.lock().expect("wal position poisoned")
    }

    /// Takes the logged lines not yet taken (at most `max_rows` lines, and none past `bound`),
    /// as ranges.
    pub fn take(
        &mut self,
        max_rows: Option<u64>,
        bound: Option<WalPosition>,
        ts_micros: i64,
    ) -> Result<Vec<WalRange>> {
        let durable = bound.map_or(self.durable(), |b| b.min(self.durable()));
        let mut ranges = Vec::new();
        let mut rows_left = max_rows.unwrap_or(u64::MAX);
        while self.taken < durable && rows_left > 0 {
            let segment = self.taken.segment;
            let segment_end = if segment == durable.segment {
                durable.offset
            } else {
                std::fs::metadata(self.segment_path(segment))
                    .map(|m| m.len())
                    .unwrap_or(0)
            };
            let mut end = segment_end;
            if max_rows.is_some() {
                let (cut, rows) = cut_after_lines(
                    &self.segment_path(segment),
                    self.taken.offset,
                    end,
                    rows_left,
                )?;
                end = cut;
                rows_left -= rows;
            }
            if end > self.taken.offset {
                ranges.push(WalRange {
                    segment,
                    start: self.taken.offset,
                    end,
                    ts_micros,
                });
            }
            if end < segment_end {
                self.taken.offset = end;
                break;
            }
            self.taken = if segment < durable.segment {
                WalPosition {
                    segment: segment + 1,
                    offset: 0,
                }
            } else {
                WalPosition {
                    segment,
                    offset: end,
                }
            };
        }
        Ok(ranges)
    }

    /// Deletes log segments whose lines are all committed (before `committed`'s segment).
    pub fn committed(&self, committed: WalPosition) {
        let Ok(entries) = std::fs::read_dir(&self.wal_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(segment) = segment_number(&entry.path())
                && segment < committed.segment
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                log::warn!(
                    "could not remove committed log segment {}: {e}",
                    entry.path().display()
                );
            }
        }
    }
}

impl Drop for SocketLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// The file in the log directory that names the checkpoint (query id) its lines belong to.
pub const OWNER: &str = ".dfstream-owner";

/// Makes sure the log in `dir` belongs to the checkpoint of `query_id`, marking it so if it
/// is not marked yet. Lines logged for another checkpoint would be counted again: a log
/// marked for another query id is refused, and so is an unmarked one holding lines when the
/// checkpoint records no batch (an unmarked log beside a checkpoint with history was written
/// by a dfstream before the mark, and is taken as its own).
pub fn claim(dir: &Path, query_id: &str, has_history: bool) -> Result<()> {
    let marker = dir.join(OWNER);
    let refuse = |whose: String| {
        Err(Error::Usage(format!(
            "the socket log in {} holds lines logged for {whose}, which would be counted \
             again: empty it (`dfstream reset --checkpoint OLD --wal-dir {}` does), or pass \
             another --wal-dir",
            dir.display(),
            dir.display()
        )))
    };
    match std::fs::read_to_string(&marker) {
        Ok(owner) if owner.trim() == query_id => Ok(()),
        Ok(owner) => refuse(format!("another checkpoint (query id {})", owner.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let logged = logged_bytes(dir);
            if logged > 0 && !has_history {
                return refuse(format!(
                    "another checkpoint ({logged} bytes; this one is new)"
                ));
            }
            std::fs::create_dir_all(dir)
                .and_then(|_| crate::state::store::write_atomic(&marker, query_id.as_bytes()))
                .map_err(|e| Error::io(format!("marking {}", marker.display()), e))
        }
        Err(e) => Err(Error::io(format!("reading {}", marker.display()), e)),
    }
}

/// The bytes in the log segments in `dir` (0 if there are none, or no `dir`).
pub fn logged_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| segment_number(&e.path()).is_some())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Finds the end of the log, cutting a torn last line (a crash during an append).
fn recover_log(dir: &Path) -> Result<WalPosition> {
    let mut segments: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .flatten()
        .filter_map(|e| segment_number(&e.path()))
        .collect();
    segments.sort_unstable();
    let Some(&last) = segments.last() else {
        return Ok(WalPosition::default());
    };
    let path = segment_path(dir, last);
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        log::warn!(
            "{}: cutting {} bytes of a line torn by a crash",
            path.display(),
            bytes.len() - whole
        );
        let file = File::options()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        file.set_len(whole as u64)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
    }
    Ok(WalPosition {
        segment: last,
        offset: whole as u64,
    })
}

/// The offset just after the `max_rows`-th line from `start` (or `end`), and the lines counted.
fn cut_after_lines(path: &Path, start: u64, end: u64, max_rows: u64) -> Result<(u64, u64)> {
    let fail = |e| Error::io(format!("reading {}", path.display()), e);
    let mut file = File::open(path).map_err(fail)?;
    file.seek(SeekFrom::Start(start)).map_err(fail)?;
    let mut reader = file.take(end - start);
    let mut buf = vec![0u8; 1 << 16];
    let (mut pos, mut rows) = (start, 0u64);
    loop {
        let n = reader.read(&mut buf).map_err(fail)?;
        if n == 0 {
            return Ok((end, rows));
        }
        for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
            rows += 1;
            if rows == max_rows {
                return Ok((pos + nl as u64 + 1, rows));
            }
        }
        pos += n as u64;
    }
}

/// The thread that owns the connection and the log's tail.
struct Writer {
    address: String,
    wal_dir: PathBuf,
    durable: Arc<Mutex<WalPosition>>,
    stop: Arc<AtomicBool>,
    counters: Arc<SocketCounters>,
    /// The run's counters, for lines skipped as too long.
    run_counters: Arc<TextCounters>,
    max_line_bytes: usize,
    segment_bytes: u64,
    wake: Arc<Notify>,
}

impl Writer {
    fn run(self, mut end: WalPosition) {
        let mut backoff = Duration::from_millis(100);
        while !self.stop.load(Ordering::SeqCst) {
            match self.connect() {
                Ok(stream) => {
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    log::info!("connected to {}", self.address);
                    let connected = std::time::Instant::now();
                    match self.read_lines(stream, &mut end) {
                        Ok(()) => log::warn!(
                            "{} closed the connection; reconnecting in {} ms",
                            self.address,
                            backoff.as_millis()
                        ),
                        Err(e) => log::warn!(
                            "connection to {} failed: {e}; reconnecting in {} ms",
                            self.address,
                            backoff.as_millis()
                        ),
                    }
                    // A server that accepts and drops at once must not make a reconnect storm.
                    if connected.elapsed() > Duration::from_secs(5) {
                        backoff = Duration::from_millis(100);
                    } else {
                        self.sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                Err(e) => {
                    log::warn!(
                        "cannot connect to {}: {e}; retrying in {} ms",
                        self.address,
                        backoff.as_millis()
                    );
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn sleep(&self, total: Duration) {
        let step = Duration::from_millis(50);
        let mut slept = Duration::ZERO;
        while slept < total && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            slept += step;
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = std::io::Error::other("no address");
        for addr in self.address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Appends whole lines from `stream` to the log until it closes.
    fn read_lines(&self, mut stream: TcpStream, end: &mut WalPosition) -> std::io::Result<()> {
        let mut segment = self.open_segment_retrying(end)?;
        let mut partial: Vec<u8> = Vec::new();
        let mut skipping = false;
        let mut buf = vec![0u8; 1 << 16];
        let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => {
                    // A last line without a newline ends at the disconnect.
                    self.end_cut_line(&mut segment, end, &mut partial, skipping)?;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // The same on a reset as on a clean close: the bytes arrived.
                    self.end_cut_line(&mut segment, end, &mut partial, skipping)?;
                    return Err(e);
                }
            };
            self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            out.clear();
            let mut rest = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', rest) {
                let (line, after) = rest.split_at(nl + 1);
                if skipping || partial.len() + line.len() - 1 > self.max_line_bytes {
                    if !skipping {
                        self.skip_long_line();
                    }
                    skipping = false;
                    partial.clear();
                } else {
                    out.extend_from_slice(&partial);
                    out.extend_from_slice(line);
                    partial.clear();
                }
                rest = after;
            }
            if !skipping {
                if partial.len() + rest.len() > self.max_line_bytes {
                    self.skip_long_line();
                    skipping = true;
                    partial.clear();
                } else {
                    partial.extend_from_slice(rest);
                }
            }
            if !out.is_empty() {
                self.append(&mut segment, end, &out)?;
                if end.offset >= self.segment_bytes {
                    *end = WalPosition {
                        segment: end.segment + 1,
                        offset: 0,
                    };
                    segment = self.open_segment_retrying(end)?;
                    // The same bytes, spelled at the new segment's start: a take then moves
                    // past the full segment, and a commit of it deletes that segment.
                    *self.durable.lock().expect("wal position poisoned") = *end;
                }
            }
        }
    }

    /// Logs a last line that the disconnect cut (not one being skipped as too long).
    fn end_cut_line(
        &self,
        segment: &mut File,
        end: &mut WalPosition,
        partial: &mut Vec<u8>,
        skipping: bool,
    ) -> std::io::Result<()> {
        if partial.is_empty() || skipping {
            return Ok(());
        }
        partial.push(b'\n');
        let line = std::mem::take(partial);
        self.append(segment, end, &line)
    }

    fn skip_long_line(&self) {
        self.run_counters.long_lines.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "{}: a line longer than --max-line-bytes {} was skipped",
            self.address,
            self.max_line_bytes
        );
    }

    fn open_segment(&self, end: &WalPosition) -> std::io::Result<File> {
        let path = segment_path(&self.wal_dir, end.segment);
        let mut file = File::options().create(true).append(true).open(&path)?;
        // The recovered end is authoritative: bytes past it are the torn tail of a failed
        // append, which must not be continued.
        if file.metadata()?.len() > end.offset {
            file.set_len(end.offset)?;
        }
        file.seek(SeekFrom::End(0))?;
        if end.offset == 0 {
            crate::state::store::sync_dir(&self.wal_dir)?;
        }
        Ok(file)
    }

    /// Appends whole lines, syncs them, then makes them available. A failed write (a full
    /// disk, a file-size limit) is cut back to the log's last whole line and retried; the
    /// lines wait in memory meanwhile, so none is lost, logged twice or logged in part.
    fn append(&self, file: &mut File, end: &mut WalPosition, bytes: &[u8]) -> std::io::Result<()> {
        let path = segment_path(&self.wal_dir, end.segment);
        let what = || {
            format!(
                "appending {} bytes of lines to the socket log {}",
                bytes.len(),
                path.display()
            )
        };
        self.retrying(what, || {
            if file.metadata()?.len() > end.offset {
                file.set_len(end.offset)?;
            }
            file.write_all(bytes)?;
            file.sync_data()
        })?;
        end.offset += bytes.len() as u64;
        *self.durable.lock().expect("wal position poisoned") = *end;
        self.wake.notify_one();
        Ok(())
    }

    /// Opens the segment `end` is in, retrying like [`Self::append`] while that fails.
    fn open_segment_retrying(&self, end: &WalPosition) -> std::io::Result<File> {
        let what = || {
            format!(
                "opening the socket log segment {}",
                segment_path(&self.wal_dir, end.segment).display()
            )
        };
        self.retrying(what, || self.open_segment(end))
    }

    /// Runs `attempt` until it succeeds, logging each failure and waiting with backoff (100 ms
    /// doubling to 5 s) in between, while reading from the server waits (TCP holds its lines
    /// back). Gives up only when the job stops.
    fn retrying<T>(
        &self,
        what: impl Fn() -> String,
        mut attempt: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match attempt() {
                Ok(value) => return Ok(value),
                Err(e) if self.stop.load(Ordering::SeqCst) => return Err(e),
                Err(e) => {
                    log::warn!(
                        "{} failed: {e}; retrying in {} ms (reading from {} waits meanwhile)",
                        what(),
                        backoff.as_millis(),
                        self.address
                    );
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A server socket, a log directory, and a source reading the one into the other.
    fn listening(
        max_line_bytes: usize,
        segment_bytes: u64,
    ) -> (TcpListener, tempfile::TempDir, SocketLog, Arc<TextCounters>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(TextCounters::default());
        let source = SocketLog::start_with_segments(
            &addr,
            dir.path(),
            Default::default(),
            max_line_bytes,
            (Arc::new(Notify::new()), Arc::clone(&counters)),
            segment_bytes,
        )
        .unwrap();
        (listener, dir, source, counters)
    }

    #[test]
    fn lines_reach_the_log_whole_and_ranges_cover_them_once() {
        let (listener, dir, mut source, counters) = listening(20, SEGMENT_BYTES);
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"one\r\ntwo\nthis line is too long\nthr")
            .unwrap();
        conn.write_all(b"ee\nlast without newline").unwrap();
        drop(conn); // disconnect: the last line ends here
        wait_until(|| {
            std::fs::read(segment_path(dir.path(), 0))
                .unwrap_or_default()
                .ends_with(b"newline\n")
        });
        let ranges = source.take(Some(2), None, 0).unwrap();
        let log = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(log, b"one\r\ntwo\nthree\nlast without newline\n");
        assert_eq!(ranges.len(), 1);
        assert_eq!(
            &log[ranges[0].start as usize..ranges[0].end as usize],
            b"one\r\ntwo\n"
        );
        let rest = source.take(None, None, 0).unwrap();
        assert_eq!(rest[0].start, ranges[0].end);
        assert_eq!(rest[0].end as usize, log.len());
        assert!(source.take(None, None, 0).unwrap().is_empty());
        assert_eq!(counters.long_lines.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cut_last_line_is_kept_on_a_reset_as_on_a_clean_close() {
        use std::os::fd::AsRawFd;
        let (listener, dir, _source, _) = listening(100, SEGMENT_BYTES);
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"one\ntwo").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SO_LINGER with a zero timeout: closing sends a reset, not a clean end.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a correctly sized option value.
        let set = unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        drop(conn);
        wait_until(|| {
            std::fs::read(segment_path(dir.path(), 0)).unwrap_or_default() == b"one\ntwo\n"
        });
    }

    #[test]
    fn segments_roll_and_committed_ones_are_deleted() {
        let (listener, dir, mut source, _) = listening(100, 8);
        let (mut conn, _) = listener.accept().unwrap();
        // One line per read (each written once the last is logged, and its segment rolled),
        // so the 7-byte lines roll the 8-byte segments after every second line: 14, 14 and
        // 7 bytes; a roll spells the log's end as the next segment's start.
        let logged = [(0, 7), (1, 0), (1, 7), (2, 0), (2, 7)];
        for (i, (segment, offset)) in logged.into_iter().enumerate() {
            conn.write_all(format!("line {i}\n").as_bytes()).unwrap();
            wait_until(|| source.durable() == WalPosition { segment, offset });
        }
        let ranges = source.take(None, None, 0).unwrap();
        let text: Vec<u8> = ranges
            .iter()
            .flat_map(|r| {
                std::fs::read(segment_path(dir.path(), r.segment)).unwrap()
                    [r.start as usize..r.end as usize]
                    .to_vec()
            })
            .collect();
        assert_eq!(text, b"line 0\nline 1\nline 2\nline 3\nline 4\n");
        assert_eq!(ranges.len(), 3, "segments rolled: {ranges:?}");
        source.committed(source.taken());
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 1, "only the open segment is left");
    }

    #[test]
    fn a_torn_tail_is_cut_on_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 3), b"a\nb\npart").unwrap();
        assert_eq!(
            recover_log(dir.path()).unwrap(),
            WalPosition {
                segment: 3,
                offset: 4
            }
        );
        assert_eq!(
            std::fs::read(segment_path(dir.path(), 3)).unwrap(),
            b"a\nb\n"
        );
    }
}
