-- The batch oracle of q11 in plain SQL (DataFusion has no SESSION): a bid starts a session
-- when it comes 10 seconds or more after the bidder's previous bid; sessions are numbered by a
-- running sum of those starts.
WITH marked AS (
  SELECT bidder, date_time,
         CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time) < INTERVAL '10 seconds'
              THEN 0 ELSE 1 END AS starts
  FROM bid WHERE date_time IS NOT NULL
), numbered AS (
  SELECT bidder, date_time,
         sum(starts) OVER (PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS session
  FROM marked
)
SELECT bidder, count(*) AS bid_count, min(date_time) AS window_start, max(date_time) + INTERVAL '10 seconds' AS window_end
FROM numbered GROUP BY bidder, session
