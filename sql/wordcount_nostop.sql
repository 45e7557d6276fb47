-- Word count without stopwords: the words of sql/wordcount.sql, less those listed in a
-- static table (run with --table stopwords=sql/stopwords.csv; the file may change while
-- the job runs: each batch uses the version that was there when it began).
SELECT w.word, count(*) AS count
FROM (SELECT unnest(words(lower(value))) AS word FROM lines) AS w
WHERE w.word NOT IN (SELECT s.word FROM stopwords AS s)
GROUP BY w.word
