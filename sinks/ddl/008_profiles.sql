-- 008: the profile API's read model (README: Profile API). The analysts' tables are keyed by
-- day, channel, journey or kind; an agent asks for one customer, so these tables keep what the
-- API reads keyed by identity and by profile, with small granules for point lookups.
-- Materialized views fill them on every insert into touchpoint_versions, journey_versions and followup_versions (the sink's
-- versioned tables), so they
-- hold every version like those; readers take the highest version (FINAL, argMax).

CREATE TABLE IF NOT EXISTS {db}.profile_identities
(
    identity   String,
    profile_id String,
    version    UInt64
)
-- identity is `type:value` (hashed identities stay hashed). A merge re-writes the loser's
-- touchpoints under the survivor with a higher version, so an identity's current profile is the
-- one of its highest version; profile_merges covers a row the sink has not written yet.
ENGINE = ReplacingMergeTree(version)
ORDER BY (identity, profile_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_identities_mv TO {db}.profile_identities AS
SELECT concat(kind, ':', value) AS identity, profile_id, version
FROM {db}.touchpoint_versions
ARRAY JOIN mapKeys(identities) AS kind, mapValues(identities) AS value
WHERE profile_id != '';

CREATE TABLE IF NOT EXISTS {db}.profile_touchpoints
(
    profile_id  String,
    event_id    String,
    occurred_at DateTime64(3, 'UTC'),
    version     UInt64,
    -- What the API shows of the touchpoint, rendered as JSON once, when it is written: a lookup
    -- then reads one column instead of sixteen (half the time of a point read).
    doc         String
)
-- One customer's rows sit together: a lookup reads a granule or two, whatever the table's size.
-- A touchpoint a merge moved keeps a stale row under the loser, which no lookup reaches (the
-- loser's identities resolve to the survivor).
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, event_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_touchpoints_mv TO {db}.profile_touchpoints AS
SELECT profile_id, event_id, occurred_at, version,
       formatRowNoNewline('JSONEachRow', event_id, journey_id, channel, action, occurred_at,
                          identities, source, case_id, contact_topic AS topic,
                          contact_outcome AS outcome, cart_id, cart_items, cart_value, order_id,
                          order_value, currency) AS doc
FROM {db}.touchpoint_versions
WHERE profile_id != '';

-- A customer's journeys and follow-ups, the same way: keyed by profile, every version kept; the
-- readers apply the contract views' rules (highest version; no superseded journey, no retracted
-- follow-up). A journey or follow-up a merge moved keeps a stale row under the loser.
CREATE TABLE IF NOT EXISTS {db}.profile_journeys
(
    profile_id String,
    journey_id String,
    status     LowCardinality(String),
    last_at    DateTime64(3, 'UTC'),
    version    UInt64,
    doc        String  -- id, status, channels, touchpoints, pivots, start and last time (JSON)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, journey_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_journeys_mv TO {db}.profile_journeys AS
SELECT profile_id, journey_id, status, last_at, version,
       formatRowNoNewline('JSONEachRow', journey_id, status, channels, touchpoints, pivots,
                          started_at, last_at) AS doc
FROM {db}.journey_versions;

CREATE TABLE IF NOT EXISTS {db}.profile_followups
(
    profile_id  String,
    followup_id String,
    reason      String,
    sort_at     Nullable(DateTime64(3, 'UTC')),
    version     UInt64,
    doc         String  -- id, kind, channel, status, reason, send_at, expires_at, deadline (JSON)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, followup_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_followups_mv TO {db}.profile_followups AS
SELECT profile_id, followup_id, reason, coalesce(send_at, deadline) AS sort_at, version,
       formatRowNoNewline('JSONEachRow', followup_id, kind, channel, status, reason, send_at,
                          expires_at, deadline) AS doc
FROM {db}.followup_versions;

-- Rows written before this migration.
INSERT INTO {db}.profile_identities
SELECT concat(kind, ':', value), profile_id, version
FROM {db}.touchpoint_versions
ARRAY JOIN mapKeys(identities) AS kind, mapValues(identities) AS value
WHERE profile_id != '';

INSERT INTO {db}.profile_touchpoints
SELECT profile_id, event_id, occurred_at, version,
       formatRowNoNewline('JSONEachRow', event_id, journey_id, channel, action, occurred_at,
                          identities, source, case_id, contact_topic AS topic,
                          contact_outcome AS outcome, cart_id, cart_items, cart_value, order_id,
                          order_value, currency)
FROM {db}.touchpoint_versions
WHERE profile_id != '';

INSERT INTO {db}.profile_journeys
SELECT profile_id, journey_id, status, last_at, version,
       formatRowNoNewline('JSONEachRow', journey_id, status, channels, touchpoints, pivots,
                          started_at, last_at)
FROM {db}.journey_versions;

INSERT INTO {db}.profile_followups
SELECT profile_id, followup_id, reason, coalesce(send_at, deadline), version,
       formatRowNoNewline('JSONEachRow', followup_id, kind, channel, status, reason, send_at,
                          expires_at, deadline)
FROM {db}.followup_versions;
