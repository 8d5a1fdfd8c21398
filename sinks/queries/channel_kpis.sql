-- question: Per channel: how many customers come and buy, for how much a basket, how satisfied are they (CSAT, NPS), and how many of the orders bought there come back?
-- param: from Date = 2000-01-01   first day (UTC) of the touchpoints, scores and returns counted
-- param: to Date = 2099-12-31     last day (UTC)
-- conversion_rate: customers who bought on the channel / customers with a touchpoint on it.
-- average_basket: revenue / purchases on the channel (currency: the purchases' currencies).
-- csat: mean CSAT score (1-5); nps: % promoters (9-10) - % detractors (0-6). A score counts for
-- the channel it rates (view ratings: the order's purchase, the case's last contact, else its own).
-- returns: orders bought on the channel that came back on any channel (view returns);
-- return_rate: returns / purchases on the channel.
WITH
    touched AS
    (
        SELECT
            toString(channel) AS channel,
            count() AS touchpoints,
            uniqExact(profile_id) AS customers,
            countIf(action = 'purchase') AS conversions,
            uniqExactIf(profile_id, action = 'purchase') AS buyers,
            sumIf(coalesce(order_value, 0), action = 'purchase') AS revenue,
            arrayStringConcat(arraySort(groupUniqArrayIf(toString(currency), action = 'purchase' AND currency != '')), ',') AS currency
        FROM {db}.touchpoints
        WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
        GROUP BY channel
    ),
    rated AS
    (
        SELECT
            channel,
            countIf(scale = 'csat') AS csat_scores,
            avgIf(score, scale = 'csat') AS csat,
            countIf(scale = 'nps') AS nps_scores,
            countIf(scale = 'nps' AND score >= 9) - countIf(scale = 'nps' AND score <= 6) AS net_promoters
        FROM {db}.ratings
        WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
        GROUP BY channel
    ),
    returned AS
    (
        SELECT purchase_channel AS channel, uniqExact(order_id) AS returns
        FROM {db}.returns
        WHERE purchase_channel != '' AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
        GROUP BY channel
    )
SELECT
    t.channel AS channel,
    t.touchpoints AS touchpoints,
    t.customers AS customers,
    t.conversions AS conversions,
    round(t.buyers / greatest(t.customers, 1), 3) AS conversion_rate,
    round(t.revenue, 2) AS revenue,
    t.currency AS currency,
    if(t.conversions = 0, NULL, round(t.revenue / t.conversions, 2)) AS average_basket,
    if(r.csat_scores = 0, NULL, round(r.csat, 2)) AS csat,
    if(r.nps_scores = 0, NULL, round(100 * r.net_promoters / r.nps_scores, 1)) AS nps,
    x.returns AS returns,
    if(t.conversions = 0, NULL, round(x.returns / t.conversions, 3)) AS return_rate
FROM touched AS t
LEFT JOIN rated AS r ON r.channel = t.channel
LEFT JOIN returned AS x ON x.channel = t.channel
ORDER BY touchpoints DESC, channel
