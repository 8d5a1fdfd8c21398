-- question: a profile's journeys, most recent first
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 20   how many journeys
SELECT journey_id, status, channels, touchpoints, pivots, started_at, last_at
FROM {db}.journeys_current
-- journeys are keyed by journey_id: the profile's own rows name them.
WHERE journey_id IN (
        SELECT journey_id FROM {db}.profile_touchpoints
        WHERE profile_id = {profile_id:String} AND journey_id != ''
    )
  AND profile_id = {profile_id:String}
ORDER BY last_at DESC, journey_id
LIMIT {limit:UInt32}
