-- refused
-- | a
SELECT value FROM lines ORDER BY value
