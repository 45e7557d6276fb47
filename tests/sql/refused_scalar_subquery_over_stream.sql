-- refused
-- | a
SELECT value FROM lines WHERE length(value) > (SELECT avg(length(value)) FROM lines)
