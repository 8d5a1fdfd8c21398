-- question: a profile's follow-ups, pending and recent, with their status
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 20   how many at most, latest send time (else deadline) first
SELECT followup_id, kind, channel, status, reason, send_at, expires_at, deadline,
       status = 'scheduled' AND send_at > now64(3) AS pending
FROM {db}.profile_followups FINAL
-- followups_current's rule, on the profile's rows
WHERE profile_id = {profile_id:String} AND reason != 'retracted'
ORDER BY coalesce(send_at, deadline) DESC, followup_id
LIMIT {limit:UInt32}
