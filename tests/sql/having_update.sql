-- Update mode with a HAVING: a group whose row stops passing it is deleted (the issue's case:
-- `a 2` and `b 1` leave the result when both reach 3), and one that starts passing it is
-- upserted. Rows start with the changelog's operation.
-- args: --mode update
-- | a a b
-- trigger
-- | a b b c
-- trigger
-- | c d
SELECT word, count(*) AS n
FROM (SELECT unnest(words(value)) AS word FROM lines)
GROUP BY word
HAVING count(*) < 3
