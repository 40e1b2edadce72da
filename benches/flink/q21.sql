-- Channel id from the channel name or the URL.
SELECT auction, bidder, price, channel,
       CASE
         WHEN LOWER(channel) = 'apple' THEN '0'
         WHEN LOWER(channel) = 'google' THEN '1'
         WHEN LOWER(channel) = 'facebook' THEN '2'
         WHEN LOWER(channel) = 'baidu' THEN '3'
         ELSE SPLIT_INDEX(SPLIT_INDEX(url, 'channel_id=', 1), '&', 0)
       END AS channel_id
FROM bid
WHERE SPLIT_INDEX(SPLIT_INDEX(url, 'channel_id=', 1), '&', 0) <> '' OR LOWER(channel) IN ('apple', 'google', 'facebook', 'baidu')
