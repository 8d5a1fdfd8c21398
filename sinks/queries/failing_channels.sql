-- question: Which channels fail customers most: failure-driven pivots out of a channel per customer touchpoint on it?
-- param: from Date = 2000-01-01   first day (UTC)
-- param: to Date = 2099-12-31     last day (UTC)
SELECT
    channel,
    contacts,
    failure_driven_out,
    round(failure_driven_out / contacts, 4) AS failures_per_contact
FROM
(
    SELECT channel, count() AS contacts
    FROM {db}.touchpoints
    WHERE action != 'message_sent' AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    GROUP BY channel
) AS touched
INNER JOIN
(
    SELECT from_channel AS channel, countIf(failure_driven) AS failure_driven_out
    FROM {db}.pivots
    WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    GROUP BY channel
) AS failed USING (channel)
WHERE failure_driven_out > 0
ORDER BY failures_per_contact DESC, channel
