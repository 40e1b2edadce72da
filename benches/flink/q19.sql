-- The ten highest bids of each auction.
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time) AS rank_number FROM bid
) WHERE rank_number <= 10
