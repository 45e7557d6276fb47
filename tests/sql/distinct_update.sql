-- SELECT DISTINCT is a GROUP BY without aggregates: update mode emits each word the trigger
-- touched.
-- args: --mode update
-- | b a
-- trigger
-- | a c
SELECT DISTINCT word FROM (SELECT unnest(words(value)) AS word FROM lines)
