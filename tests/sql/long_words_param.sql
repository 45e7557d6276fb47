-- A WHERE clause with a parameter, and several aggregates per word.
-- args: --param min_len=4
-- | Streams of data, streams of words
-- trigger
-- | Words WORDS words and more data
SELECT word, count(*) AS count, min(length(word)) AS len, count(DISTINCT value) AS lines
FROM (SELECT value, unnest(words(lower(value))) AS word FROM lines)
WHERE length(word) >= $min_len
GROUP BY word
