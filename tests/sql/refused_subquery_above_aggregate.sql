-- A scalar subquery over a static table in HAVING.
-- refused
-- args: --table stop=sql/stopwords.csv
-- | a
SELECT value, count(*) AS n FROM lines GROUP BY value HAVING count(*) > (SELECT count(*) FROM stop)
