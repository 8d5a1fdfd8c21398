-- question: Where do orders come back: bought on which channel, returned on which (bought online, returned in store, and the reverse)?
-- param: from Date = 2000-01-01   first day (UTC) of the returns counted
-- param: to Date = 2099-12-31     last day (UTC)
-- A return is matched to the purchase with its order_id (view returns); purchase_channel
-- `unknown`: no purchase of that order was seen. returned_value: the return's value, else the
-- order's. Cross-channel pairs come first, then returns on the channel of purchase.
SELECT
    if(purchase_channel = '', 'unknown', purchase_channel) AS purchase_channel,
    return_channel,
    uniqExact(order_id) AS returns,
    round(sum(coalesce(returned_value, 0)), 2) AS returned_value,
    arrayStringConcat(arraySort(groupUniqArrayIf(currency, currency != '')), ',') AS currency
FROM {db}.returns
WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
GROUP BY purchase_channel, return_channel
ORDER BY purchase_channel = return_channel, returns DESC, returned_value DESC, purchase_channel, return_channel
