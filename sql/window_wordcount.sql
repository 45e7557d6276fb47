-- Sliding-window word count: each word counts in every window of length $size (one window
-- starting every $slide) that holds its line's time `ts`. Run with
--   --param size='2 minutes' --param slide='1 minute'
-- The word split and the window expansion are on different query levels: two unnest calls in
-- one SELECT list would be zipped, not crossed.
SELECT window_start, window_start + CAST($size AS INTERVAL) AS window_end, word, count(*) AS count
FROM (
  SELECT unnest(hop(ts, $size, $slide)) AS window_start, word
  FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines)
)
GROUP BY window_start, word
