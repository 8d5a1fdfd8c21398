-- 003: pivots, drop-offs, follow-ups and hand-offs, written by the journey stage.
-- Each row of these tables can be written again with a higher `version` (a re-stitch moves a
-- pivot, a purchase recovers a drop-off, a follow-up is cancelled): the highest version wins, so
-- the engines change (a rebuild: ClickHouse cannot change a table's engine in place) and each
-- table's key becomes what identifies the row, since ReplacingMergeTree only collapses equal keys.

ALTER TABLE {db}.pivots
    ADD COLUMN IF NOT EXISTS failure_action String,
    ADD COLUMN IF NOT EXISTS version UInt64,
    -- 1 = a re-stitch (late event, merge) removed this pivot; FINAL drops such rows.
    ADD COLUMN IF NOT EXISTS retracted UInt8;

-- One row per landing touchpoint; its time never changes, so it can lead the key and choose the
-- monthly partition (analysts filter pivots by date range, then group by channel pair).
CREATE TABLE IF NOT EXISTS {db}.pivots_next AS {db}.pivots
ENGINE = ReplacingMergeTree(version, retracted)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {db}.pivots_next SELECT * FROM {db}.pivots;

EXCHANGE TABLES {db}.pivots AND {db}.pivots_next;

DROP TABLE IF EXISTS {db}.pivots_next;

ALTER TABLE {db}.dropoffs
    ADD COLUMN IF NOT EXISTS anchor_channel LowCardinality(String),
    ADD COLUMN IF NOT EXISTS anchor_at DateTime64(3, 'UTC'),
    ADD COLUMN IF NOT EXISTS cart_id String,
    ADD COLUMN IF NOT EXISTS case_id String,
    ADD COLUMN IF NOT EXISTS followup_id String,
    -- Closed loop: a purchase within the recovery window after the follow-up's send_at.
    ADD COLUMN IF NOT EXISTS recovered Bool,
    ADD COLUMN IF NOT EXISTS recovered_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS recovered_value Nullable(Float64),
    ADD COLUMN IF NOT EXISTS recovery_event_id String,
    ADD COLUMN IF NOT EXISTS version UInt64;

-- One row per drop-off (kind, anchor touchpoint); the deadline never changes, so it picks the
-- monthly partition that abandonment-over-time queries prune on.
CREATE TABLE IF NOT EXISTS {db}.dropoffs_next AS {db}.dropoffs
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(deadline)
ORDER BY (kind, anchor_event_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {db}.dropoffs_next SELECT * FROM {db}.dropoffs;

EXCHANGE TABLES {db}.dropoffs AND {db}.dropoffs_next;

DROP TABLE IF EXISTS {db}.dropoffs_next;

ALTER TABLE {db}.followups
    ADD COLUMN IF NOT EXISTS journey_id String,
    ADD COLUMN IF NOT EXISTS anchor_event_id String,
    ADD COLUMN IF NOT EXISTS deadline Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS timezone String,
    ADD COLUMN IF NOT EXISTS version UInt64;

-- One row per follow-up; send_at can move (a merge re-plans it), so no time partition: the
-- table stays small (one row per drop-off).
CREATE TABLE IF NOT EXISTS {db}.followups_next AS {db}.followups
ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, followup_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {db}.followups_next SELECT * FROM {db}.followups;

EXCHANGE TABLES {db}.followups AND {db}.followups_next;

DROP TABLE IF EXISTS {db}.followups_next;

-- What the agent was shown when a customer reached an assisted channel; written once per
-- landing touchpoint (a redelivery collapses on handoff_id).
CREATE TABLE IF NOT EXISTS {db}.handoffs
(
    handoff_id       String,
    profile_id       String,
    journey_id       String,
    event_id         String,
    occurred_at      DateTime64(3, 'UTC'),
    channel          LowCardinality(String),
    from_channel     LowCardinality(String),
    failure_driven   Bool,
    failure_event_id String,
    failure_action   LowCardinality(String),
    case_id          String,
    case_topic       String,
    cart_id          String,
    cart_value       Nullable(Float64),
    repeat_contacts  UInt16,
    repeat_channels  Array(LowCardinality(String)),
    recent           Array(String),
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), handoff_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- What analysts query: the latest version of each row, retracted pivots left out.
CREATE VIEW IF NOT EXISTS {db}.pivots_current AS
SELECT * FROM {db}.pivots FINAL WHERE retracted = 0;

CREATE VIEW IF NOT EXISTS {db}.dropoffs_current AS
SELECT * FROM {db}.dropoffs FINAL;

CREATE VIEW IF NOT EXISTS {db}.followups_current AS
SELECT * FROM {db}.followups FINAL;
