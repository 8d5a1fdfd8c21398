-- 006: data-quality rules ClickHouse itself enforces. A row that breaks one is refused; the sink
-- isolates it (README: Poison rows) and keeps it in dead_letters with ClickHouse's error.

-- event_id is the touchpoints' dedup key (ReplacingMergeTree): rows with an empty one would
-- collapse into each other. The SDK refuses such events; this holds for every other producer.
ALTER TABLE {db}.touchpoints
    ADD CONSTRAINT IF NOT EXISTS event_id_present CHECK event_id != '';
