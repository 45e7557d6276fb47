-- A HAVING in update mode deletes rows by their key, which this SELECT list leaves out.
-- refused
-- args: --mode update
-- | a
SELECT count(*) AS n FROM lines GROUP BY value HAVING count(*) > 1
