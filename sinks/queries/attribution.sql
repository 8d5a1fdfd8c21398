-- question: Which channels get the credit for revenue, under first-touch and last-touch attribution?
-- param: from Date = 2000-01-01   first day (UTC) of the purchases counted
-- param: to Date = 2099-12-31     last day (UTC)
-- First touch: the journey's first customer touchpoint; last touch: its last one before the
-- purchase. Equal times are broken by event id, so the answer never depends on row order.
WITH converted AS
(
    SELECT
        journey_id,
        argMinIf(channel, (occurred_at, event_id), action != 'message_sent') AS first_touch,
        argMaxIf(channel, (occurred_at, event_id), action NOT IN ('message_sent', 'purchase')) AS last_touch,
        sumIf(coalesce(order_value, 0), action = 'purchase') AS revenue
    FROM {db}.touchpoints
    WHERE journey_id IN
    (
        SELECT journey_id FROM {db}.touchpoints
        WHERE action = 'purchase' AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    )
    GROUP BY journey_id
)
SELECT
    channel,
    round(sumIf(revenue, model = 'first_touch'), 2) AS first_touch_revenue,
    round(sumIf(revenue, model = 'last_touch'), 2) AS last_touch_revenue,
    countIf(model = 'first_touch') AS first_touch_journeys,
    countIf(model = 'last_touch') AS last_touch_journeys
FROM
(
    SELECT first_touch AS channel, revenue, 'first_touch' AS model FROM converted
    UNION ALL
    SELECT if(last_touch = '', first_touch, last_touch), revenue, 'last_touch' FROM converted
)
GROUP BY channel
ORDER BY first_touch_revenue + last_touch_revenue DESC, channel
