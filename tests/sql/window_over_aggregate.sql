-- A window function over the GROUP BY ranks the whole result table: complete mode.
-- | a a b
-- trigger
-- | b b c
SELECT word, n, rank() OVER (ORDER BY n DESC) AS r
FROM (SELECT word, count(*) AS n FROM (SELECT unnest(words(value)) AS word FROM lines) GROUP BY word)
