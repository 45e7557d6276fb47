-- Session windows in append mode: each session is printed once, when the watermark (5 s
-- behind the latest event time) passes its end, 10 s after the word's last occurrence. Rows
-- older than the watermark are dropped.
-- args: --mode append --watermark 5s --param gap=10s
-- args: --event-time to_timestamp(substr(value,1,20))
-- | 2026-01-01T00:00:00Z a b
-- | 2026-01-01T00:00:04Z a
-- trigger
-- | 2026-01-01T00:00:12Z a c
-- | 2026-01-01T00:00:01Z b
-- trigger
-- | 2026-01-01T00:00:30Z c
-- trigger
-- | 2026-01-01T00:00:21Z c
-- | 2026-01-01T00:00:50Z d
SELECT session['start'] AS window_start, session['end'] AS window_end, word, count(*) AS count
FROM (
  SELECT session(ts, $gap) AS session, word
  FROM (SELECT ts, unnest(words(lower(substr(value, 21)))) AS word FROM lines)
)
GROUP BY session, word
