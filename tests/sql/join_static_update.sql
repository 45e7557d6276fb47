-- A static-table join below the GROUP BY in update mode: the touched groups' rows.
-- args: --mode update --table stop=sql/stopwords.csv
-- | the cat
-- trigger
-- | the dog
SELECT w.word, s.word IS NOT NULL AS stopword, count(*) AS n
FROM (SELECT unnest(words(lower(value))) AS word FROM lines) AS w
LEFT JOIN stop AS s ON w.word = s.word
GROUP BY w.word, s.word
