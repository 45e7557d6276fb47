-- A LEFT JOIN that keeps the table's rows answers by whether any stream row matched them.
-- refused
-- args: --table stop=sql/stopwords.csv
-- | a
SELECT s.word, l.value FROM stop AS s LEFT JOIN lines AS l ON s.word = l.value
