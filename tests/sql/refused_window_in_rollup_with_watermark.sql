-- refused
-- args: --mode append --watermark 1m --event-time to_timestamp(substr(value,1,19))
-- | 2024-01-01T00:00:00 a
SELECT tumble(ts, INTERVAL '1 minute') AS w, split_part(value, ' ', 2) AS word, count(*) AS n
FROM lines GROUP BY ROLLUP(tumble(ts, INTERVAL '1 minute'), split_part(value, ' ', 2))
