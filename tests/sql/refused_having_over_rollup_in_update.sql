-- refused
-- args: --mode update
-- | a
SELECT value, count(*) AS n FROM lines GROUP BY ROLLUP(value) HAVING count(*) > 1
