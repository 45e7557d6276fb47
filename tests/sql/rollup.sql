-- ROLLUP, CUBE and GROUPING SETS: each grouping set's rows are groups of the state (NULL
-- where a column is rolled up).
-- | x a
-- | x b
-- trigger
-- | y a
-- | x a
SELECT k, v, count(*) AS n, grouping(k) AS gk, grouping(v) AS gv
FROM (SELECT split_part(value, ' ', 1) AS k, split_part(value, ' ', 2) AS v FROM lines)
GROUP BY ROLLUP(k, v)
