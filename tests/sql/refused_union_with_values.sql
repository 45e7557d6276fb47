-- The issue's example: a UNION ALL with an aggregation in one part.
-- refused
-- | a
SELECT word, count(*) AS n FROM (SELECT unnest(words(value)) AS word FROM lines) GROUP BY word
UNION ALL SELECT 'total', 0
