-- refused
-- args: --mode update
-- | a
SELECT value, n, rank() OVER (ORDER BY n) AS r FROM (SELECT value, count(*) AS n FROM lines GROUP BY value)
