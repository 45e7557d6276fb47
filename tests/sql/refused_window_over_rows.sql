-- refused
-- | a
SELECT value, row_number() OVER (ORDER BY value) AS n FROM lines
