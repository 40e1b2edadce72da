-- Sessions per bidder with a 10-second gap: a bid 10 s or more after the bidder's previous one
-- starts a new session; sessions are numbered by a running sum of those starts.
WITH marked AS (
  SELECT bidder, date_time,
         CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time) < INTERVAL 10 SECOND
              THEN 0 ELSE 1 END AS starts
  FROM bid WHERE date_time IS NOT NULL
), numbered AS (
  SELECT bidder, date_time,
         sum(starts) OVER (PARTITION BY bidder ORDER BY date_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
  FROM marked
)
SELECT bidder, count(*) AS bid_count, min(date_time) AS window_start, max(date_time) + INTERVAL 10 SECOND AS window_end
FROM numbered GROUP BY bidder, session
