-- An aggregate of a static table joined below the GROUP BY: the same in every trigger, so
-- it runs (the form a scalar subquery takes in a query that aggregates the stream).
-- args: --table stop=sql/stopwords.csv
-- | a bb
-- | cccccc
-- trigger
-- | dddddddd bb
SELECT w.word, count(*) AS n
FROM (SELECT unnest(words(value)) AS word FROM lines) AS w
CROSS JOIN (SELECT min(length(word)) AS shortest FROM stop) AS s
WHERE length(w.word) > s.shortest
GROUP BY w.word
