-- 006: the profile API's read model (README: Profile API). The analysts' tables are keyed by
-- day, channel, journey or kind; an agent asks for one customer, so these tables keep what the
-- API reads keyed by identity and by profile, with small granules for point lookups.
-- Materialized views fill them on every insert into touchpoints, journeys and followups, so they
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
FROM {db}.touchpoints
ARRAY JOIN mapKeys(identities) AS kind, mapValues(identities) AS value
WHERE profile_id != '';

CREATE TABLE IF NOT EXISTS {db}.profile_touchpoints
(
    profile_id      String,
    event_id        String,
    journey_id      String,
    channel         LowCardinality(String),
    action          LowCardinality(String),
    occurred_at     DateTime64(3, 'UTC'),
    identities      Map(String, String),
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
    version         UInt64
)
-- One customer's rows sit together: a lookup reads a granule or two, whatever the table's size.
-- A touchpoint a merge moved keeps a stale row under the loser, which no lookup reaches (the
-- loser's identities resolve to the survivor).
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, event_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_touchpoints_mv TO {db}.profile_touchpoints AS
SELECT profile_id, event_id, journey_id, channel, action, occurred_at, identities, source,
       cart_id, cart_items, cart_value, order_id, order_value, currency, case_id, contact_topic,
       contact_outcome, version
FROM {db}.touchpoints
WHERE profile_id != '';

-- A customer's journeys and follow-ups, the same way: keyed by profile, every version kept; the
-- readers apply the *_current views' rules (highest version; no superseded journey, no retracted
-- follow-up). A journey or follow-up a merge moved keeps a stale row under the loser.
CREATE TABLE IF NOT EXISTS {db}.profile_journeys
(
    profile_id  String,
    journey_id  String,
    status      LowCardinality(String),
    channels    Array(LowCardinality(String)),
    touchpoints UInt32,
    pivots      UInt32,
    started_at  DateTime64(3, 'UTC'),
    last_at     DateTime64(3, 'UTC'),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, journey_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_journeys_mv TO {db}.profile_journeys AS
SELECT profile_id, journey_id, status, channels, touchpoints, pivots, started_at, last_at, version
FROM {db}.journeys;

CREATE TABLE IF NOT EXISTS {db}.profile_followups
(
    profile_id  String,
    followup_id String,
    kind        LowCardinality(String),
    channel     LowCardinality(String),
    status      LowCardinality(String),
    reason      String,
    send_at     Nullable(DateTime64(3, 'UTC')),
    expires_at  Nullable(DateTime64(3, 'UTC')),
    deadline    Nullable(DateTime64(3, 'UTC')),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, followup_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_followups_mv TO {db}.profile_followups AS
SELECT profile_id, followup_id, kind, channel, status, reason, send_at, expires_at, deadline,
       version
FROM {db}.followups;

-- Rows written before this migration.
INSERT INTO {db}.profile_identities
SELECT concat(kind, ':', value), profile_id, version
FROM {db}.touchpoints
ARRAY JOIN mapKeys(identities) AS kind, mapValues(identities) AS value
WHERE profile_id != '';

INSERT INTO {db}.profile_touchpoints
SELECT profile_id, event_id, journey_id, channel, action, occurred_at, identities, source,
       cart_id, cart_items, cart_value, order_id, order_value, currency, case_id, contact_topic,
       contact_outcome, version
FROM {db}.touchpoints
WHERE profile_id != '';

INSERT INTO {db}.profile_journeys
SELECT profile_id, journey_id, status, channels, touchpoints, pivots, started_at, last_at, version
FROM {db}.journeys;

INSERT INTO {db}.profile_followups
SELECT profile_id, followup_id, kind, channel, status, reason, send_at, expires_at, deadline,
       version
FROM {db}.followups;
