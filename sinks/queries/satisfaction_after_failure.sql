-- question: What does a failing channel cost in satisfaction: the CSAT of journeys in which a channel failed the customer (a failure-driven pivot out of it), against journeys without a failure?
-- param: from Date = 2000-01-01   first day (UTC) of the pivots and scores counted
-- param: to Date = 2099-12-31     last day (UTC)
-- A score belongs to the journey it rates (view ratings: the order's purchase, the case's last
-- contact, else its own); a journey with several scores counts once, with their mean.
WITH
    failed AS
    (
        SELECT DISTINCT journey_id, toString(from_channel) AS failed_channel
        FROM {db}.pivots
        WHERE failure_driven AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
    ),
    scored AS
    (
        SELECT journey_id, avg(score) AS score
        FROM {db}.ratings
        WHERE scale = 'csat' AND toDate(occurred_at) BETWEEN {from:Date} AND {to:Date}
        GROUP BY journey_id
    ),
    unfailed AS
    (
        SELECT count() AS journeys, avg(score) AS csat
        FROM scored
        WHERE journey_id NOT IN (SELECT journey_id FROM failed)
    )
SELECT
    f.failed_channel AS failed_channel,
    count() AS failed_journeys,
    countIf(s.journey_id != '') AS rated_journeys,
    if(rated_journeys = 0, NULL, round(avgIf(s.score, s.journey_id != ''), 2)) AS csat_after_failure,
    any(u.journeys) AS rated_journeys_without_failure,
    if(rated_journeys_without_failure = 0, NULL, round(any(u.csat), 2)) AS csat_without_failure,
    round(csat_after_failure - csat_without_failure, 2) AS csat_gap
FROM failed AS f
LEFT JOIN scored AS s ON s.journey_id = f.journey_id
CROSS JOIN unfailed AS u
GROUP BY failed_channel
ORDER BY failed_journeys DESC, failed_channel
