-- question: which profile an identity (type:value) was last placed in (follow profile_merges from there)
-- param: identity String = none   type:value, e.g. crm_id:C-1 or email_sha256:<hex>
SELECT argMax(profile_id, version) AS profile_id
FROM {db}.profile_identities
WHERE identity = {identity:String}
HAVING count() > 0
