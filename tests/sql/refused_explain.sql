-- refused
-- | a
EXPLAIN SELECT value FROM lines
