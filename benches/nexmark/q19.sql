-- The ten highest bids of each auction (ties broken by time, so the result is well defined).
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time) AS rank_number FROM bid
) q WHERE rank_number <= 10
