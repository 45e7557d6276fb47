-- A rank over the GROUP BY in append mode would rank only the windows one trigger closes.
-- refused
-- args: --mode append --watermark 1m --event-time to_timestamp(substr(value,1,19))
-- | 2024-01-01T00:00:00 a
SELECT w, n, rank() OVER (ORDER BY n DESC) AS r
FROM (SELECT tumble(ts, INTERVAL '1 minute') AS w, count(*) AS n FROM lines GROUP BY tumble(ts, INTERVAL '1 minute'))
