-- refused
-- | a
SELECT count(*) AS words FROM (SELECT word FROM (SELECT unnest(words(value)) AS word FROM lines) GROUP BY word)
