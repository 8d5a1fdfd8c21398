-- question: a profile's journeys, most recent first, each a JSON document (id, status, channels, touchpoints, pivots, start and last time)
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 20   how many at most
SELECT doc
FROM {db}.profile_journeys FINAL
-- the journeys view's rule, on the profile's rows
WHERE profile_id = {profile_id:String} AND status != 'superseded'
ORDER BY last_at DESC, journey_id
LIMIT {limit:UInt32}
