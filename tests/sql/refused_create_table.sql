-- refused
-- | a
CREATE TABLE t AS SELECT value FROM lines
