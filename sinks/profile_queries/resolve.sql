-- question: which profile an identity (type:value) was last placed in, and the profile that absorbed it if a merge did (follow survivor from there)
-- param: identity String = none   type:value, e.g. crm_id:C-1 or email_sha256:<hex>
WITH
    (SELECT argMax(profile_id, version) FROM {db}.profile_identities
     WHERE identity = {identity:String}) AS found,
    (SELECT any(survivor) FROM {db}.profile_merges WHERE loser = found) AS survivor
SELECT found AS profile_id, survivor
