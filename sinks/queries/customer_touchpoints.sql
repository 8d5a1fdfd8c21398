-- question: What did one customer do, on every channel, in order (each touchpoint in its current placement)?
-- param: profile String = none   the profile_id (after a merge, the survivor's)
-- A point look-up for a profile page: the bloom filter on profile_id finds the events ever placed
-- with this profile, and their latest version decides (argMax on version), so a few granules
-- are read instead of the whole table FINAL merges. A stale id (a merge's loser) gets no rows.
SELECT
    event_id,
    argMax(occurred_at, version) AS at,
    toString(argMax(channel, version)) AS on_channel,
    toString(argMax(action, version)) AS did,
    argMax(journey_id, version) AS journey,
    argMax(session_key, version) AS session,
    argMax(order_id, version) AS order_id,
    argMax(order_value, version) AS order_value,
    toString(argMax(currency, version)) AS currency,
    argMax(case_id, version) AS case_id,
    argMax(feedback_score, version) AS score
FROM {db}.touchpoint_versions
WHERE event_id IN (SELECT event_id FROM {db}.touchpoint_versions WHERE profile_id = {profile:String})
GROUP BY event_id
HAVING argMax(profile_id, version) = {profile:String}
ORDER BY at, event_id
