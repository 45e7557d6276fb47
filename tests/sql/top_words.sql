-- HAVING, ORDER BY and LIMIT apply to the whole running result in complete mode.
-- ordered
-- | to be or not to be
-- trigger
-- | that is the question to ask
-- trigger
-- | be quick or be dead
SELECT word, count(*) AS count
FROM (SELECT unnest(words(lower(value))) AS word FROM lines)
GROUP BY word
HAVING count(*) > 1
ORDER BY count DESC, word
LIMIT 3
