-- 001: the analysts' tables (README: Querying) and the sink's bookkeeping.
-- Every statement is idempotent; the migration runner records the version once it has applied.
-- non_replicated_deduplication_window: a batch the sink retries after a failed insert is
-- recognised by its block hash and not written twice.

CREATE TABLE IF NOT EXISTS {db}.touchpoints
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
    kafka_offset    Int64
)
-- Replacing on event_id (part of the key): a redelivered event collapses to one row.
-- Monthly partitions and a day-first key serve the analysts' time-range queries.
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), channel, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    stage       LowCardinality(String),
    reason      String,
    payload_b64 String EPHEMERAL,
    -- The original bytes, untouched (JSON cannot carry arbitrary bytes, so they travel as base64).
    payload     String DEFAULT base64Decode(payload_b64),
    topic       String,
    partition   Nullable(Int32),
    offset      Nullable(Int64),
    line        Nullable(Int64),
    received_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
-- Append-only (each rejection is its own fact); read by stage and recency, dropped by month.
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (stage, received_at)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.journeys
(
    journey_id  String,
    profile_id  String,
    started_at  DateTime64(3, 'UTC'),
    last_at     DateTime64(3, 'UTC'),
    status      LowCardinality(String),
    channels    Array(LowCardinality(String)),
    touchpoints UInt32,
    pivots      UInt32,
    version     UInt64
)
-- One row per journey after merges: the highest version wins (query with FINAL for exactness).
-- Keyed by journey_id alone because that is what a new version replaces; no partition key, since
-- a journey's start can move (a late earlier event) and replacing only works within a partition.
ENGINE = ReplacingMergeTree(version)
ORDER BY journey_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.pivots
(
    journey_id       String,
    profile_id       String,
    occurred_at      DateTime64(3, 'UTC'),
    from_channel     LowCardinality(String),
    to_channel       LowCardinality(String),
    gap_seconds      Float64,
    failure_driven   Bool,
    failure_event_id String,
    event_id         String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (from_channel, to_channel, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dropoffs
(
    journey_id      String,
    profile_id      String,
    kind            LowCardinality(String),
    anchor_event_id String,
    deadline        DateTime64(3, 'UTC'),
    value           Nullable(Float64),
    currency        LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(deadline)
ORDER BY (kind, anchor_event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.followups
(
    followup_id String,
    profile_id  String,
    kind        LowCardinality(String),
    channel     LowCardinality(String),
    status      LowCardinality(String),
    reason      String,
    send_at     Nullable(DateTime64(3, 'UTC')),
    expires_at  Nullable(DateTime64(3, 'UTC')),
    payload     Map(String, String),
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (kind, followup_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- End-of-run markers the sink has passed: a replay is complete when every upstream partition's
-- marker has reached every sink partition (the sink writes them after the data they follow).
CREATE TABLE IF NOT EXISTS {db}.markers
(
    run_id            String,
    topic             String,
    partition         Int32,
    source_partition  Int32,
    source_partitions Int32,
    watermark         Nullable(DateTime64(3, 'UTC')),
    received_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
-- Tiny bookkeeping; a redelivered marker collapses on its key.
ENGINE = ReplacingMergeTree
ORDER BY (run_id, topic, partition, source_partition);
