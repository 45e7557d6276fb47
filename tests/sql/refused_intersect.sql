-- INTERSECT and EXCEPT compare the stream with itself.
-- refused
-- | a
SELECT value FROM lines INTERSECT SELECT upper(value) FROM lines
