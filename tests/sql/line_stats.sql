-- A global aggregate (no GROUP BY): one row, updated by every trigger; empty lines count.
-- | one
-- |
-- | three words here
-- trigger
-- | one
SELECT count(*) AS lines, count(DISTINCT value) AS distinct_lines,
       sum(character_length(value)) AS chars, max(value) AS last_alphabetically
FROM lines
