-- refused
-- args: --mode complete
-- | a
SELECT value FROM lines
