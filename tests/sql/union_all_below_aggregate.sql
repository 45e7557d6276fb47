-- UNION ALL below the GROUP BY runs: each part reads the trigger's rows.
-- | a b
-- trigger
-- | b c
SELECT word, count(*) AS n FROM (
  SELECT unnest(words(value)) AS word FROM lines
  UNION ALL
  SELECT upper(split_part(value, ' ', 1)) AS word FROM lines
) GROUP BY word
