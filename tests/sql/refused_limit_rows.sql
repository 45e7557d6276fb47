-- refused
-- | a
SELECT value FROM lines LIMIT 5
