-- Running word count: lower-case each line, split it into words (maximal runs of
-- letters, digits or '_', like the regex \w+), and count each word.
SELECT word, count(*) AS count
FROM (SELECT unnest(words(lower(value))) AS word FROM lines)
GROUP BY word
