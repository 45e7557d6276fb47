-- DataFusion plans IN (subquery) only as a filter, not as a value in the SELECT list:
-- refused with a hint (a LEFT JOIN with the table, tested for NULL).
-- refused
-- args: --table stop=sql/stopwords.csv
-- | the
SELECT value, value IN (SELECT word FROM stop) AS listed FROM lines
