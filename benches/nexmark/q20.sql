-- Bids joined with their auction, for category 10.
SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, a.item_name, a.description,
       a.initial_bid, a.reserve, a.date_time AS auction_time, a.expires, a.seller, a.category
FROM bid b JOIN auction a ON b.auction = a.id
WHERE a.category = 10
