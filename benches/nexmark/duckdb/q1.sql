-- Currency conversion (as a double, like the view's float literal).
SELECT auction, bidder, 0.908::DOUBLE * price AS price, date_time FROM bid
