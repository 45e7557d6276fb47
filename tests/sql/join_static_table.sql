-- A join of the stream's rows with a static table, below the GROUP BY: each row meets the
-- table in the trigger that reads it (inner join; LEFT JOIN keeps words not in the table).
-- args: --table stop=sql/stopwords.csv
-- | the cat and the hat
-- trigger
-- | a cat
SELECT w.word, s.word IS NOT NULL AS stopword, count(*) AS n
FROM (SELECT unnest(words(lower(value))) AS word FROM lines) AS w
LEFT JOIN stop AS s ON w.word = s.word
GROUP BY w.word, s.word
