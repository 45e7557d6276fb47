-- Without GROUP BY, update mode with a HAVING deletes the one row when it stops passing.
-- args: --mode update
-- | a
-- | b
-- trigger
-- | c
-- trigger
-- | d
SELECT count(*) AS lines FROM lines HAVING count(*) < 4
