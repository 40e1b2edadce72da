-- The last bid per bidder and auction; ties on date_time are broken the way StreamHouse breaks
-- them: by the whole row, ascending (strings compare by bytes).
SELECT auction, bidder, price, channel, url, date_time, extra FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction
                               ORDER BY date_time DESC, auction, bidder, price, channel COLLATE "binary",
                                        url COLLATE "binary", date_time, extra COLLATE "binary") AS rank_number
  FROM bid
) WHERE rank_number <= 1
