-- refused
-- args: --table stop=sql/stopwords.csv
-- | a
SELECT word, count(*) AS n
FROM (SELECT unnest(words(value)) AS word FROM lines)
WHERE length(word) > (SELECT min(length(word)) FROM stop)
GROUP BY word
