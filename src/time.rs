//! Wall-clock time as dfstream records it: microseconds since the Unix epoch.

use std::time::SystemTime;

/// `t` in microseconds since the epoch (0 for a time before it).
pub fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    micros_since_epoch(SystemTime::now())
}
