-- 009: a hand-off is sent again, same handoff_id, when what it shows changes while its landing
-- touchpoint is still live (an earlier touchpoint that arrives after it, a merge), and once more
-- `retracted` when a re-stitch removes its pivot. The re-sent one can come on another partition
-- (a merge moves the profile), so insertion order does not say which is current: the highest
-- `version` does, as for the other versioned tables.

ALTER TABLE {db}.handoff_versions
    ADD COLUMN IF NOT EXISTS version UInt64,
    ADD COLUMN IF NOT EXISTS retracted UInt8;

CREATE TABLE IF NOT EXISTS {db}.handoff_versions_next AS {db}.handoff_versions
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), handoff_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every version moves along (auditing): no collapsing of the copied block on insert. A row
-- written before this migration gets its ingestion time (ms) as version: the one the sink wrote
-- last stays current, as it was, and any version written after (µs of wall clock) is higher.
INSERT INTO {db}.handoff_versions_next
SELECT * REPLACE (toUInt64(toUnixTimestamp64Milli(ingested_at)) AS version)
FROM {db}.handoff_versions
SETTINGS optimize_on_insert = 0;

EXCHANGE TABLES {db}.handoff_versions AND {db}.handoff_versions_next;

DROP TABLE IF EXISTS {db}.handoff_versions_next;

-- A view's columns are fixed when it is created (007). A hand-off whose pivot a re-stitch removed
-- ends retracted, as its pivot does: left out.
CREATE OR REPLACE VIEW {db}.handoffs AS
SELECT * FROM {db}.handoff_versions FINAL WHERE retracted = 0;
