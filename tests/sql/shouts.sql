-- Without aggregation the query is stateless: each trigger appends its own rows.
-- | hello!
-- | quiet
-- trigger
-- | STOP!
SELECT upper(value) AS shout, length(value) AS len
FROM lines
WHERE value LIKE '%!'
