-- The top 10 bids per auction by price; ties broken by the whole row, ascending.
SELECT auction, bidder, price, channel, url, date_time, extra, rank_number FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction
                               ORDER BY price DESC, date_time, auction, bidder, price, channel COLLATE "binary",
                                        url COLLATE "binary", date_time, extra COLLATE "binary") AS rank_number
  FROM bid
) WHERE rank_number <= 10
