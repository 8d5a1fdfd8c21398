-- question: Which channels do customers switch between, and how often because the first one failed them?
-- param: from Date = 2000-01-01   first day (UTC) of the pivots counted
-- param: to Date = 2099-12-31     last day (UTC) of the pivots counted
SELECT
    from_channel,
    to_channel,
    count() AS pivots,
    countIf(failure_driven) AS failure_driven_pivots,
    round(countIf(failure_driven) / count(), 3) AS failure_driven_share
FROM {db}.pivots
WHERE toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
GROUP BY from_channel, to_channel
ORDER BY pivots DESC, from_channel, to_channel
