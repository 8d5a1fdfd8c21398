-- 002: identity resolution and journey stitching.
-- touchpoints rows are now written by the journey stage and re-written when a merge or a late
-- event moves a touchpoint to another profile or journey: the highest `version` wins, so the
-- engine's version column changes from ingested_at to version (a rebuild: ClickHouse cannot
-- change a table's engine in place).

ALTER TABLE {db}.touchpoints
    -- journey_id/n: the journey's n-th session (30 minutes without a touchpoint start the next).
    -- session_id is the channel's own session, when it sends one.
    ADD COLUMN IF NOT EXISTS session_key String,
    -- Grows each time the journey stage places the touchpoint again (merge, late event).
    ADD COLUMN IF NOT EXISTS version UInt64,
    -- Arrived more than the allowed lateness behind the watermark: stored and counted, no re-fire.
    ADD COLUMN IF NOT EXISTS late Bool;

-- Same columns (001's plus the three above), new engine version column.
CREATE TABLE IF NOT EXISTS {db}.touchpoints_next AS {db}.touchpoints
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), channel, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO {db}.touchpoints_next SELECT * FROM {db}.touchpoints;

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
-- Looked up by loser (which profile did this id become?); a repeated merge record collapses.
ENGINE = ReplacingMergeTree
ORDER BY (loser, survivor);

-- What analysts mean by "the journeys": the latest version of each, without the ones a merge
-- or a late event re-stitched into others.
CREATE VIEW IF NOT EXISTS {db}.journeys_current AS
SELECT * FROM {db}.journeys FINAL WHERE status != 'superseded';

CREATE VIEW IF NOT EXISTS {db}.touchpoints_current AS
SELECT * FROM {db}.touchpoints FINAL;
