-- Tumbling-window word count: words counted per window of length $size (windows do not
-- overlap). Run with --param size='30 seconds'. The GROUP BY column window_start, made by
-- tumble(), lets a --watermark close windows (append mode emits each once).
SELECT window_start, window_start + CAST($size AS INTERVAL) AS window_end, word, count(*) AS count
FROM (
  SELECT tumble(ts, $size) AS window_start, word
  FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines)
)
GROUP BY window_start, word
