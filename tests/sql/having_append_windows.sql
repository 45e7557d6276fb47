-- HAVING in append mode: each closed window's final row, once, when it passes (the one-minute
-- window of 00:00 has 3 rows, 00:01's 1, 00:02's 2; the watermark closes each once a later
-- row arrives).
-- args: --mode append --watermark 0s --event-time to_timestamp(substr(value,1,19))
-- | 2024-01-01T00:00:05 a
-- | 2024-01-01T00:00:10 b
-- trigger
-- | 2024-01-01T00:00:50 c
-- | 2024-01-01T00:01:10 d
-- trigger
-- | 2024-01-01T00:02:30 e
-- | 2024-01-01T00:02:40 f
-- trigger
-- | 2024-01-01T00:03:05 g
SELECT tumble(ts, INTERVAL '1 minute') AS window_start, count(*) AS n
FROM lines
GROUP BY tumble(ts, INTERVAL '1 minute')
HAVING count(*) > 1
