-- Bids joined with a bounded side input.
SELECT b.auction, b.bidder, b.price, b.date_time, s.name
FROM bid b JOIN person s ON b.auction % 1000 = s.id % 1000
