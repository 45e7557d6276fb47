-- Update mode prints only the words whose counts changed in each trigger.
-- args: --mode update
-- | a b c
-- trigger
-- | b c c
-- trigger
-- | d
SELECT word, count(*) AS count
FROM (SELECT unnest(words(lower(value))) AS word FROM lines)
GROUP BY word
