-- question: the profile a merged profile now lives in (empty when it was never merged)
-- param: profile_id String = none   the profile that may have been absorbed
SELECT any(survivor) AS survivor FROM {db}.profile_merges WHERE loser = {profile_id:String}
