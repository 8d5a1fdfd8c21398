-- 005: a merge can show that a drop-off fired on one of the merged profiles should not have
-- (the other one bought, or resolved the contact, in time). Its last version says `retracted`,
-- and its follow-up's last version is `cancelled` with reason `retracted`; the analysts' views
-- leave both out, so they show what one profile from the start would have given.

ALTER TABLE {db}.dropoffs
    ADD COLUMN IF NOT EXISTS retracted UInt8;

CREATE OR REPLACE VIEW {db}.dropoffs_current AS
SELECT * FROM {db}.dropoffs FINAL WHERE retracted = 0;

CREATE OR REPLACE VIEW {db}.followups_current AS
SELECT * FROM {db}.followups FINAL WHERE reason != 'retracted';
