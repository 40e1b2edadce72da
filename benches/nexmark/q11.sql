-- User sessions: bids per bidder per session (10-second gap), sessions per bidder.
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM SESSION(bid, date_time, INTERVAL '10 seconds', bidder)
GROUP BY bidder, window_start, window_end
