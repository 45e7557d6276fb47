-- refused
-- | a
SELECT * FROM (VALUES (1), (2)) AS t(x)
