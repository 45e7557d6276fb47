-- UNION ALL of plain rows runs in append mode: both parts over each trigger's rows.
-- | one
-- trigger
-- | two
SELECT value AS v FROM lines
UNION ALL
SELECT upper(value) AS v FROM lines
