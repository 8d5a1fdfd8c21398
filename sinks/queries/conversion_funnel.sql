-- question: How far do customers get on each channel: viewed a product, added to cart, started checkout, bought (windowFunnel)?
-- param: window_hours UInt32 = 24   longest time from the first step to the last
-- param: from Date = 2000-01-01     first day (UTC) of the touchpoints counted
-- param: to Date = 2099-12-31       last day (UTC)
-- windowFunnel orders a customer's events by timestamp; equal times get a sequence number by
-- event id (the microsecond part), so ties never depend on row order.
SELECT
    channel,
    countIf(level >= 1) AS viewed,
    countIf(level >= 2) AS added_to_cart,
    countIf(level >= 3) AS started_checkout,
    countIf(level >= 4) AS purchased,
    round(countIf(level >= 4) / greatest(countIf(level >= 1), 1), 3) AS view_to_purchase
FROM
(
    SELECT
        channel,
        profile_id,
        windowFunnel({window_hours:UInt32} * 3600000000)(
            sequenced,
            action = 'product_view',
            action = 'add_to_cart',
            action = 'checkout_started',
            action = 'purchase'
        ) AS level
    FROM
    (
        SELECT
            channel,
            profile_id,
            action,
            toUInt64(toUnixTimestamp64Milli(occurred_at)) * 1000
                + row_number() OVER (PARTITION BY profile_id, channel, occurred_at ORDER BY event_id) AS sequenced
        FROM {db}.touchpoints
        WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    )
    GROUP BY channel, profile_id
)
GROUP BY channel
HAVING viewed > 0
ORDER BY viewed DESC, channel
