-- refused
-- args: --mode update --event-time to_timestamp(substr(value,1,19))
-- | 2024-01-01T00:00:00 a
SELECT session, word, count(*) AS n
FROM (SELECT session(ts, INTERVAL '1 minute') AS session, split_part(value, ' ', 2) AS word FROM lines)
GROUP BY session, word HAVING count(*) > 1
