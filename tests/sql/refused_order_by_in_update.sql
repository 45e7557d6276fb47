-- refused
-- args: --mode update
-- | a
SELECT value, count(*) AS n FROM lines GROUP BY value ORDER BY n DESC LIMIT 3
