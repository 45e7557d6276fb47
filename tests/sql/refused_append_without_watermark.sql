-- refused
-- args: --mode append
-- | a
SELECT value, count(*) AS n FROM lines GROUP BY value
