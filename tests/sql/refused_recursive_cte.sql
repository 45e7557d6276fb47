-- refused
-- | a
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3)
SELECT value, n FROM lines CROSS JOIN r
