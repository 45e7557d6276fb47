-- refused
-- args: --table stop=sql/stopwords.csv
-- | a
SELECT c.word, c.n FROM (SELECT value AS word, count(*) AS n FROM lines GROUP BY value) AS c
JOIN stop AS s ON c.word = s.word
