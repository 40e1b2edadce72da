-- Hot items: the auctions with the most bids in each 10-second sliding window (every 2 seconds).
SELECT auction_id, num FROM (
  SELECT auction AS auction_id, count(*) AS num, window_start AS starttime
  FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
  GROUP BY window_start, auction
) counts
JOIN (
  SELECT max(num) AS maxn, starttime FROM (
    SELECT count(*) AS num, window_start AS starttime
    FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
    GROUP BY auction, window_start
  ) inner_counts GROUP BY starttime
) max_counts ON counts.starttime = max_counts.starttime AND counts.num >= max_counts.maxn
