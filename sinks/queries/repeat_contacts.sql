-- question: For each case topic, how often do customers have to raise the same case again on another channel?
-- param: from Date = 2000-01-01   first day (UTC) of the contacts counted
-- param: to Date = 2099-12-31     last day (UTC)
SELECT
    topic,
    count() AS cases,
    countIf(channels >= 2) AS raised_on_several_channels,
    round(countIf(channels >= 2) / count(), 3) AS repeat_share,
    round(avg(contacts), 2) AS contacts_per_case
FROM
(
    SELECT
        case_id,
        -- The topic the case was opened with: first contact, ties broken by event id.
        argMin(contact_topic, (occurred_at, event_id)) AS topic,
        uniqExact(channel) AS channels,
        countIf(action = 'contact_started') AS contacts
    FROM {db}.touchpoints
    WHERE case_id != '' AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    GROUP BY case_id
)
GROUP BY topic
ORDER BY cases DESC, topic
