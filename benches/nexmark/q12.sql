-- Bids per bidder in processing-time windows of 10 seconds.
SELECT bidder, count(*) AS bid_count, date_bin(INTERVAL '10 seconds', now()) AS window_start
FROM bid
GROUP BY bidder, date_bin(INTERVAL '10 seconds', now())
