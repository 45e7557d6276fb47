-- Session-window word count: a word's session lasts while the word keeps appearing less than
-- $gap apart; it ends $gap after its last occurrence. Run with --param gap='30 seconds'.
-- session(ts, $gap) must be a GROUP BY key: that is where rows join into sessions. With a
-- --watermark, a session closes once the watermark passes its end (append mode emits it once).
SELECT session['start'] AS window_start, session['end'] AS window_end, word, count(*) AS count
FROM (
  SELECT session(ts, $gap) AS session, word
  FROM (SELECT ts, unnest(words(lower(value))) AS word FROM lines)
)
GROUP BY session, word
