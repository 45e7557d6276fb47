-- A scalar subquery over a static table below the GROUP BY: DataFusion fills its value above
-- the whole plan, and dfstream keeps that above the per-trigger aggregation, so each trigger
-- reads the table's current version.
-- args: --table stop=sql/stopwords.csv
-- | a bb
-- | cccccc
-- trigger
-- | dddddddd bb a
SELECT word, count(*) AS n
FROM (SELECT unnest(words(value)) AS word FROM lines)
WHERE length(word) > (SELECT min(length(word)) FROM stop)
GROUP BY word
