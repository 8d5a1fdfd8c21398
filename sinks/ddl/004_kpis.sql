-- 004: daily KPIs per channel, for dashboards and the report.
-- A refreshable materialized view recomputes the day × channel figures from the *_current views
-- every minute and swaps the result in: rows are re-written with higher versions (merges, late
-- events, recoveries), which an insert-triggered view would count twice, and a merge changes
-- how many customers there were. The figures lag the tables by at most a minute;
-- `SYSTEM REFRESH VIEW parcours.kpi_daily_channel_mv` brings them up to date at once.
CREATE TABLE IF NOT EXISTS {db}.kpi_daily_channel
(
    day                Date,
    channel            LowCardinality(String),
    touchpoints        UInt64,   -- customer and brand touchpoints on the channel that day
    customers          UInt64,   -- distinct profiles (after merges) with a touchpoint there
    conversions        UInt64,   -- purchases made on the channel
    revenue            Float64,  -- their order value
    pivots_out         UInt64,   -- customers leaving the channel for another in a journey
    pivots_in          UInt64,   -- customers arriving from another channel
    failure_driven_out UInt64,   -- pivots out because the channel failed them
    dropoffs           UInt64,   -- carts, checkouts, contacts left on the channel (deadline day)
    followups_sent     UInt64,   -- scheduled follow-ups on the channel (send_at day)
    recovered          UInt64,   -- drop-offs left on the channel that a follow-up recovered
    recovered_revenue  Float64
)
-- Small (days × channels) and always read by day range: a plain MergeTree sorted by day.
ENGINE = MergeTree
ORDER BY (day, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kpi_daily_channel_mv
REFRESH EVERY 1 MINUTE TO {db}.kpi_daily_channel AS
SELECT
    day,
    channel,
    sum(touchpoints) AS touchpoints,
    sum(customers) AS customers,
    sum(conversions) AS conversions,
    sum(revenue) AS revenue,
    sum(pivots_out) AS pivots_out,
    sum(pivots_in) AS pivots_in,
    sum(failure_driven_out) AS failure_driven_out,
    sum(dropoffs) AS dropoffs,
    sum(followups_sent) AS followups_sent,
    sum(recovered) AS recovered,
    sum(recovered_revenue) AS recovered_revenue
FROM
(
    SELECT
        toDate(occurred_at) AS day, toString(channel) AS channel,
        toUInt64(count()) AS touchpoints,
        toUInt64(uniqExact(profile_id)) AS customers,
        toUInt64(countIf(action = 'purchase')) AS conversions,
        toFloat64(sumIf(coalesce(order_value, 0), action = 'purchase')) AS revenue,
        toUInt64(0) AS pivots_out, toUInt64(0) AS pivots_in, toUInt64(0) AS failure_driven_out,
        toUInt64(0) AS dropoffs, toUInt64(0) AS followups_sent, toUInt64(0) AS recovered,
        toFloat64(0) AS recovered_revenue
    FROM {db}.touchpoints_current
    GROUP BY day, channel
    UNION ALL
    SELECT
        toDate(occurred_at), toString(from_channel), 0, 0, 0, 0,
        toUInt64(count()), 0, toUInt64(countIf(failure_driven)), 0, 0, 0, 0
    FROM {db}.pivots_current
    GROUP BY toDate(occurred_at), from_channel
    UNION ALL
    SELECT toDate(occurred_at), toString(to_channel), 0, 0, 0, 0, 0, toUInt64(count()), 0, 0, 0, 0, 0
    FROM {db}.pivots_current
    GROUP BY toDate(occurred_at), to_channel
    UNION ALL
    SELECT
        toDate(deadline), toString(anchor_channel), 0, 0, 0, 0, 0, 0, 0,
        toUInt64(count()), 0, toUInt64(countIf(recovered)),
        toFloat64(sum(coalesce(recovered_value, 0)))
    FROM {db}.dropoffs_current
    GROUP BY toDate(deadline), anchor_channel
    UNION ALL
    SELECT toDate(assumeNotNull(send_at)), toString(channel), 0, 0, 0, 0, 0, 0, 0, 0, toUInt64(count()), 0, 0
    FROM {db}.followups_current
    WHERE status = 'scheduled' AND send_at IS NOT NULL
    GROUP BY toDate(assumeNotNull(send_at)), channel
)
GROUP BY day, channel;
