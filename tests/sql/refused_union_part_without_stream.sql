-- refused
-- | a
SELECT value FROM lines UNION ALL SELECT 'fixed'
