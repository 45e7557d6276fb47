-- DISTINCT ON keeps the first row of each key in its ORDER BY: a first_value per group, which
-- merges across triggers.
-- | b 2
-- | a 9
-- trigger
-- | a 1
-- | b 3
SELECT DISTINCT ON (k) k, n
FROM (SELECT split_part(value, ' ', 1) AS k, CAST(split_part(value, ' ', 2) AS INT) AS n FROM lines)
ORDER BY k, n
