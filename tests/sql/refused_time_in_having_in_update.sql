-- A HAVING that compares with now(): a row's place in the result changes with time, which a
-- changelog built from each trigger's groups cannot follow.
-- refused
-- args: --mode update
-- | a
SELECT value, max(ts) AS last FROM lines GROUP BY value HAVING max(ts) > now() - INTERVAL '5 minutes'
