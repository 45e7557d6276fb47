-- A scalar subquery over a static table in a stateless query is the same in every trigger:
-- it runs (with a GROUP BY too: scalar_subquery_in_aggregation.sql).
-- args: --table stop=sql/stopwords.csv
-- | a
-- | cccccc
-- trigger
-- | dddddddd
-- | bb
SELECT value FROM lines WHERE length(value) > (SELECT min(length(word)) FROM stop)
