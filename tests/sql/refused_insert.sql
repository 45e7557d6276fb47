-- refused
-- | a
INSERT INTO lines VALUES ('x')
