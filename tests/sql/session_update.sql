-- Session windows in update mode: a word's session lasts while it recurs less than 10 s
-- apart. A trigger prints the sessions it changed; a session that grows (or bridges two
-- earlier ones) is printed with its new bounds and replaces the rows it overlaps.
-- args: --mode update --param gap=10s --event-time to_timestamp(substr(value,1,20))
-- | 2026-01-01T00:00:00Z a b
-- | 2026-01-01T00:00:04Z a
-- | 2026-01-01T00:00:30Z a
-- trigger
-- | 2026-01-01T00:00:12Z a c
-- | 2026-01-01T00:00:09Z b
-- trigger
-- | 2026-01-01T00:00:21Z a
-- trigger
-- | 2026-01-01T00:00:19Z b
SELECT session['start'] AS window_start, session['end'] AS window_end, word, count(*) AS count
FROM (
  SELECT session(ts, $gap) AS session, word
  FROM (SELECT ts, unnest(words(lower(substr(value, 21)))) AS word FROM lines)
)
GROUP BY session, word
