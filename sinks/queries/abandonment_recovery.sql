-- question: How many carts, checkouts and contacts are abandoned, how many follow-ups recover them, and what revenue do they bring back?
-- param: from Date = 2000-01-01   first day (UTC) of the drop-off deadlines counted
-- param: to Date = 2099-12-31     last day (UTC)
SELECT
    d.kind AS kind,
    count() AS dropoffs,
    countIf(f.status = 'scheduled') AS followups_sent,
    countIf(d.recovered) AS recovered,
    round(countIf(d.recovered) / greatest(countIf(f.status = 'scheduled'), 1), 3) AS recovery_rate,
    round(sum(coalesce(d.value, 0)), 2) AS value_abandoned,
    round(sum(coalesce(d.recovered_value, 0)), 2) AS revenue_recovered
FROM {db}.dropoffs AS d
LEFT JOIN {db}.followups AS f ON f.followup_id = d.followup_id
WHERE toDate(d.deadline) BETWEEN {from:Date} AND {to:Date}
GROUP BY kind
ORDER BY kind
