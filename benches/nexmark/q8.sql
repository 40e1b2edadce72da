-- New users who created auctions in the same 10-second window.
SELECT p.id, p.name, p.starttime
FROM (SELECT id, name, window_start AS starttime FROM TUMBLE(person, date_time, INTERVAL '10 seconds')
      GROUP BY id, name, window_start) p
JOIN (SELECT seller, window_start AS starttime FROM TUMBLE(auction, date_time, INTERVAL '10 seconds')
      GROUP BY seller, window_start) a
ON p.id = a.seller AND p.starttime = a.starttime
