-- question: a profile's follow-ups, latest send time (else deadline) first, each a JSON document with its status
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 20   how many at most
SELECT doc
FROM {db}.profile_followups FINAL
-- the followups view's rule, on the profile's rows
WHERE profile_id = {profile_id:String} AND reason != 'retracted'
ORDER BY sort_at DESC, followup_id
LIMIT {limit:UInt32}
