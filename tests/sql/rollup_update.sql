-- ROLLUP in update mode: the grouping-set rows the trigger touched (the grand total always).
-- args: --mode update
-- | x a
-- | x b
-- trigger
-- | y a
SELECT k, v, count(*) AS n
FROM (SELECT split_part(value, ' ', 1) AS k, split_part(value, ' ', 2) AS v FROM lines)
GROUP BY ROLLUP(k, v)
