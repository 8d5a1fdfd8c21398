-- question: a profile's touchpoints, most recent first, each a JSON document with the identities, case, cart and order it carries
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 1000   how many at most
SELECT doc
FROM {db}.profile_touchpoints FINAL
WHERE profile_id = {profile_id:String}
ORDER BY occurred_at DESC, event_id DESC
LIMIT {limit:UInt32}
