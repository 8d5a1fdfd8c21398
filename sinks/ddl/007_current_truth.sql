-- 007: the contract's names are the current truth.
-- Until 005 `touchpoints`, `journeys`, `pivots`, `dropoffs`, `followups` and `handoffs` held every
-- version of a row (a merge, a late event, a recovery or a crash re-sends one with a higher
-- `version`), and `*_current` views gave the current state: an analyst who typed the contract's
-- names counted old versions, retracted pivots and stale profile ids, and the count changed with
-- the partitioning. The versioned storage now lives under `*_versions` (RENAME keeps its parts:
-- nothing is copied), the contract's names are views of one row per entity in its current
-- version, and the `*_current` views are gone. The sink writes to the `*_versions` tables.
--
-- Why FINAL and not argMax: FINAL collapses versions part by part along the sorting key, which
-- keeps every column of the latest version without naming them, and a condition on a key column
-- (journey_id, event_id, day) still prunes granules through the view. A view's columns are fixed
-- when it is created: a later migration that adds a column to a `*_versions` table must
-- CREATE OR REPLACE the view.

DROP VIEW IF EXISTS {db}.kpi_daily_channel_mv;

DROP VIEW IF EXISTS {db}.touchpoints_current;

DROP VIEW IF EXISTS {db}.journeys_current;

DROP VIEW IF EXISTS {db}.pivots_current;

DROP VIEW IF EXISTS {db}.dropoffs_current;

DROP VIEW IF EXISTS {db}.followups_current;

RENAME TABLE {db}.touchpoints TO {db}.touchpoint_versions,
    {db}.journeys TO {db}.journey_versions,
    {db}.pivots TO {db}.pivot_versions,
    {db}.dropoffs TO {db}.dropoff_versions,
    {db}.followups TO {db}.followup_versions,
    {db}.handoffs TO {db}.handoff_versions;

-- Satisfaction (README: the event contract): a `feedback` touchpoint's score and what it rates.
ALTER TABLE {db}.touchpoint_versions
    ADD COLUMN IF NOT EXISTS feedback_scale LowCardinality(String),   -- csat (1-5) or nps (0-10)
    ADD COLUMN IF NOT EXISTS feedback_score Nullable(Int16),
    ADD COLUMN IF NOT EXISTS feedback_order_id String,                -- the order it rates, or ''
    ADD COLUMN IF NOT EXISTS feedback_case_id String,                 -- the case it rates, or ''
    ADD COLUMN IF NOT EXISTS feedback_comment String;

-- Point look-ups through the view: `WHERE profile_id = …` (a profile page) and `WHERE event_id =
-- …` cannot use the day-first sorting key, and profile_id cannot join the key (a merge changes it,
-- and versions only collapse on equal keys). Bloom filters skip the granules without the value;
-- under FINAL ClickHouse then widens the selection to every granule whose key range intersects
-- (use_skip_indexes_if_final with its exact mode, on by default in recent releases; where it is
-- off the answer is the same, read by a full scan). 1 million touchpoints: README, Querying.
ALTER TABLE {db}.touchpoint_versions
    ADD INDEX IF NOT EXISTS profile_bloom profile_id TYPE bloom_filter(0.01) GRANULARITY 1,
    ADD INDEX IF NOT EXISTS event_bloom event_id TYPE bloom_filter(0.01) GRANULARITY 1;

ALTER TABLE {db}.touchpoint_versions MATERIALIZE INDEX profile_bloom;

ALTER TABLE {db}.touchpoint_versions MATERIALIZE INDEX event_bloom;

-- One row per event: its latest placement (profile after every merge, journey, session).
CREATE VIEW IF NOT EXISTS {db}.touchpoints AS
SELECT * FROM {db}.touchpoint_versions FINAL;

-- One row per journey in its latest version; journeys a merge or a late event re-stitched into
-- others (status superseded) are left out.
CREATE VIEW IF NOT EXISTS {db}.journeys AS
SELECT * FROM {db}.journey_versions FINAL WHERE status != 'superseded';

-- One row per pivot (landing touchpoint); retracted ones are left out.
CREATE VIEW IF NOT EXISTS {db}.pivots AS
SELECT * FROM {db}.pivot_versions FINAL WHERE retracted = 0;

CREATE VIEW IF NOT EXISTS {db}.dropoffs AS
SELECT * FROM {db}.dropoff_versions FINAL WHERE retracted = 0;

-- A retracted drop-off's follow-up ends `cancelled` with reason `retracted`: left out as well.
CREATE VIEW IF NOT EXISTS {db}.followups AS
SELECT * FROM {db}.followup_versions FINAL WHERE reason != 'retracted';

CREATE VIEW IF NOT EXISTS {db}.handoffs AS
SELECT * FROM {db}.handoff_versions FINAL;

-- Every score with the channel and journey it counts for: a score rating an order counts for the
-- channel (and journey) of that purchase, one rating a case for those of the case's last contact
-- at or before the score, otherwise for the feedback touchpoint's own. Equal times are broken by
-- event id. Read by channel_kpis and satisfaction_after_failure.
CREATE VIEW IF NOT EXISTS {db}.ratings AS
SELECT
    f.event_id AS event_id,
    f.profile_id AS profile_id,
    f.occurred_at AS occurred_at,
    f.feedback_scale AS scale,
    assumeNotNull(f.feedback_score) AS score,
    multiIf(o.channel != '', 'order', c.channel != '', 'case', 'own') AS rates,
    f.feedback_order_id AS order_id,
    f.feedback_case_id AS case_id,
    multiIf(o.channel != '', o.channel, c.channel != '', c.channel, toString(f.channel)) AS channel,
    multiIf(o.channel != '', o.journey_id, c.channel != '', c.journey_id, f.journey_id) AS journey_id,
    toString(f.channel) AS feedback_channel,
    f.feedback_comment AS comment
FROM
(
    SELECT * FROM {db}.touchpoints
    WHERE action = 'feedback' AND feedback_scale IN ('csat', 'nps') AND feedback_score IS NOT NULL
) AS f
LEFT JOIN
(
    SELECT
        order_id,
        toString(argMin(channel, (occurred_at, event_id))) AS channel,
        argMin(journey_id, (occurred_at, event_id)) AS journey_id
    FROM {db}.touchpoints
    WHERE action = 'purchase' AND order_id != ''
    GROUP BY order_id
) AS o ON o.order_id = f.feedback_order_id
LEFT JOIN
(
    SELECT
        f2.event_id AS event_id,
        arrayLast(x -> tupleElement(x, 1) <= f2.occurred_at, k.contacts) AS last,
        tupleElement(last, 3) AS channel,
        tupleElement(last, 4) AS journey_id
    FROM
    (
        SELECT event_id, occurred_at, feedback_case_id FROM {db}.touchpoints
        WHERE action = 'feedback' AND feedback_case_id != ''
    ) AS f2
    INNER JOIN
    (
        SELECT
            case_id,
            arraySort(groupArray((occurred_at, event_id, toString(channel), journey_id))) AS contacts
        FROM {db}.touchpoints
        WHERE case_id != '' AND action != 'feedback'
        GROUP BY case_id
    ) AS k ON k.case_id = f2.feedback_case_id
) AS c ON c.event_id = f.event_id;

-- Every return matched to the purchase of the order it returns (by order_id): where it was bought,
-- where it came back, and its value (the return's own, else the purchase's). A return whose order
-- was never seen bought keeps purchase_channel ''.
CREATE VIEW IF NOT EXISTS {db}.returns AS
SELECT
    r.event_id AS event_id,
    r.profile_id AS profile_id,
    r.occurred_at AS occurred_at,
    r.order_id AS order_id,
    p.channel AS purchase_channel,
    toString(r.channel) AS return_channel,
    p.value AS purchase_value,
    coalesce(r.order_value, p.value) AS returned_value,
    if(r.currency != '', toString(r.currency), p.currency) AS currency
FROM
(
    SELECT * FROM {db}.touchpoints WHERE action = 'return_requested' AND order_id != ''
) AS r
LEFT JOIN
(
    SELECT
        order_id,
        toString(argMin(channel, (occurred_at, event_id))) AS channel,
        argMin(order_value, (occurred_at, event_id)) AS value,
        toString(argMin(currency, (occurred_at, event_id))) AS currency
    FROM {db}.touchpoints
    WHERE action = 'purchase' AND order_id != ''
    GROUP BY order_id
) AS p ON p.order_id = r.order_id;

-- The daily KPIs, recomputed from the contract's names (same figures as 004).
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
    FROM {db}.touchpoints
    GROUP BY day, channel
    UNION ALL
    SELECT
        toDate(occurred_at), toString(from_channel), 0, 0, 0, 0,
        toUInt64(count()), 0, toUInt64(countIf(failure_driven)), 0, 0, 0, 0
    FROM {db}.pivots
    GROUP BY toDate(occurred_at), from_channel
    UNION ALL
    SELECT toDate(occurred_at), toString(to_channel), 0, 0, 0, 0, 0, toUInt64(count()), 0, 0, 0, 0, 0
    FROM {db}.pivots
    GROUP BY toDate(occurred_at), to_channel
    UNION ALL
    SELECT
        toDate(deadline), toString(anchor_channel), 0, 0, 0, 0, 0, 0, 0,
        toUInt64(count()), 0, toUInt64(countIf(recovered)),
        toFloat64(sum(coalesce(recovered_value, 0)))
    FROM {db}.dropoffs
    GROUP BY toDate(deadline), anchor_channel
    UNION ALL
    SELECT toDate(assumeNotNull(send_at)), toString(channel), 0, 0, 0, 0, 0, 0, 0, 0, toUInt64(count()), 0, 0
    FROM {db}.followups
    WHERE status = 'scheduled' AND send_at IS NOT NULL
    GROUP BY toDate(assumeNotNull(send_at)), channel
)
GROUP BY day, channel;
