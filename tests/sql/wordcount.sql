-- The shipped word count, three triggers: counts accumulate, complete mode prints all words.
-- | The quick brown fox
-- | jumps over the lazy dog.
-- trigger
-- | THE DOG sleeps; the fox doesn't.
-- trigger
-- |
-- | Don't STOP—café 42
SELECT word, count(*) AS count
FROM (SELECT unnest(words(lower(value))) AS word FROM lines)
GROUP BY word
