-- IN / NOT EXISTS against a static table (semi and anti joins), stateless in append mode.
-- args: --table stop=sql/stopwords.csv
-- | the
-- | cat
-- | THE
-- trigger
-- | and
-- | hat
SELECT value FROM lines
WHERE lower(value) IN (SELECT word FROM stop)
  AND NOT EXISTS (SELECT 1 FROM stop WHERE stop.word = lines.value)
