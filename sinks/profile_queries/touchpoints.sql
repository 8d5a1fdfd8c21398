-- question: a profile's touchpoints, most recent first, with the identities, case, cart and order they carry
-- param: profile_id String = none   the profile
-- param: limit UInt32 = 1000   how many at most
SELECT event_id, journey_id, channel, action, occurred_at, identities, source, case_id,
       contact_topic AS topic, contact_outcome AS outcome, cart_id, cart_items, cart_value,
       order_id, order_value, currency
FROM {db}.profile_touchpoints FINAL
WHERE profile_id = {profile_id:String}
ORDER BY occurred_at DESC, event_id DESC
LIMIT {limit:UInt32}
