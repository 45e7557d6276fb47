-- Tumbling-window word count: words counted per window of length $size (windows do not
-- overlap). Run with --param size='30 seconds'.
SELECT tumble(ts, $size) AS window_start, tumble(ts, $size) + CAST($size AS INTERVAL) AS window_end,
       word, count(*) AS count
FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines)
GROUP BY tumble(ts, $size), word
