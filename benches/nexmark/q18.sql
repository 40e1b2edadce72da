-- Each bidder's last bid on each auction (event times are unique in the generator).
SELECT auction, bidder, price, channel, url, date_time, extra FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number FROM bid
) q WHERE rank_number <= 1
