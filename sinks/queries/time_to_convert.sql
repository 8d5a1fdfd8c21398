-- question: How long does a converted journey take, by the number of channels it used?
-- param: from Date = 2000-01-01   first day (UTC) of the journeys' start
-- param: to Date = 2099-12-31     last day (UTC)
SELECT
    length(channels) AS channels,
    count() AS converted_journeys,
    round(quantileExact(0.5)(dateDiff('second', started_at, last_at)) / 60, 1) AS median_minutes,
    round(quantileExact(0.9)(dateDiff('second', started_at, last_at)) / 60, 1) AS p90_minutes,
    round(avg(touchpoints), 1) AS avg_touchpoints
FROM {db}.journeys
WHERE status = 'converted' AND toDate(started_at) BETWEEN {from:Date} AND {to:Date}
GROUP BY channels
ORDER BY channels
