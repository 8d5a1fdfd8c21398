-- 002: identity resolution and journey stitching.
-- touchpoints rows are now written by the journey stage and re-written when a merge or a late
-- event moves a touchpoint to another profile or journey: the highest `version` wins, so the
-- engine's version column changes from ingested_at to version (a rebuild: ClickHouse cannot
-- change a table's engine in place).

CREATE TABLE IF NOT EXISTS {db}.touchpoints_next
(
    event_id        String,
    profile_id      String,
    journey_id      String,
    channel         LowCardinality(String),
    action          LowCardinality(String),
    occurred_at     DateTime64(3, 'UTC'),
    sent_at         Nullable(DateTime64(3, 'UTC')),
    routing_key     String,
    identities      Map(String, String),
    session_id      String,
    source          LowCardinality(String),
    cart_id         String,
    cart_items      Array(Tuple(sku String, quantity Int32, unit_price Float64)),
    cart_value      Nullable(Float64),
    order_id        String,
    order_value     Nullable(Float64),
    currency        LowCardinality(String),
    case_id         String,
    contact_topic   String,
    contact_outcome LowCardinality(String),
    attributes      Map(String, String),
    produced_at     DateTime64(3, 'UTC'),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    kafka_partition Int32,
    kafka_offset    Int64,
    -- journey_id/n: the journey's n-th session (30 minutes without a touchpoint start the next).
    -- session_id above is the channel's own session, when it sends one.
    session_key     String,
    -- Grows each time the journey stage places the touchpoint again (merge, late event).
    version         UInt64,
    -- Arrived more than the allowed lateness behind the watermark: stored and counted, no re-fire.
    late            Bool
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), channel, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {db}.touchpoints_next
SELECT *, '' AS session_key, 0 AS version, false AS late FROM {db}.touchpoints;

EXCHANGE TABLES {db}.touchpoints AND {db}.touchpoints_next;

DROP TABLE IF EXISTS {db}.touchpoints_next;

ALTER TABLE {db}.journeys
    ADD COLUMN IF NOT EXISTS sessions UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS late_touchpoints UInt32 DEFAULT 0;

-- Identities shared by several crm ids (kiosks, family devices): the identity stage refuses the
-- links that would merge those customers. One row per (identity, crm id) with that crm id's
-- earliest event on it: the earliest claim has the highest claim_rank, so it wins the merge
-- whatever order the claims arrived in.
CREATE TABLE IF NOT EXISTS {db}.identity_warnings
(
    warning_id  String,
    identity    String,
    crm_id      String,
    event_id    String,
    occurred_at DateTime64(3, 'UTC'),
    claim_rank  UInt64 MATERIALIZED toUInt64(4102444800000 - toUnixTimestamp64Milli(occurred_at)),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(claim_rank)
ORDER BY (identity, crm_id);

-- Every profile that was merged into another (loser → survivor). Touchpoints and journeys are
-- re-written under the survivor; this table is the audit trail (and maps ids held elsewhere).
CREATE TABLE IF NOT EXISTS {db}.profile_merges
(
    loser       String,
    survivor    String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (loser, survivor);

-- What analysts mean by "the journeys": the latest version of each, without the ones a merge
-- or a late event re-stitched into others.
CREATE VIEW IF NOT EXISTS {db}.journeys_current AS
SELECT * FROM {db}.journeys FINAL WHERE status != 'superseded';

CREATE VIEW IF NOT EXISTS {db}.touchpoints_current AS
SELECT * FROM {db}.touchpoints FINAL;
