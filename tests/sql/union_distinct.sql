-- UNION (distinct) is a GROUP BY over the UNION ALL: it runs as an aggregation.
-- | a
-- | b
-- trigger
-- | a
-- | c
SELECT value AS v FROM lines
UNION
SELECT lower(value) AS v FROM lines
