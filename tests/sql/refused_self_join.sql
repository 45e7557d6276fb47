-- refused
-- | a
SELECT a.value FROM lines a JOIN lines b ON a.value = b.value
