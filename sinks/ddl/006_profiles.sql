-- 006: the profile API's read model (README: Profile API). The analysts' touchpoints are keyed
-- by day and channel; an agent asks for one customer, so two tables keep what the API reads keyed
-- by identity and by profile. Materialized views fill them on every insert into touchpoints (the
-- sink's only write), so they hold every version exactly like touchpoints; readers take the
-- highest version (FINAL or argMax) as the current truth.

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
ORDER BY (identity, profile_id);

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
ORDER BY (profile_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.profile_touchpoints_mv TO {db}.profile_touchpoints AS
SELECT profile_id, event_id, journey_id, channel, action, occurred_at, identities, source,
       cart_id, cart_items, cart_value, order_id, order_value, currency, case_id, contact_topic,
       contact_outcome, version
FROM {db}.touchpoints
WHERE profile_id != '';

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
