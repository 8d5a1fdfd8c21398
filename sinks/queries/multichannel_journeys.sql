-- question: Which journeys used at least N channels, and how do they convert?
-- param: min_channels UInt8 = 3   fewest distinct customer channels in the journey
-- param: from Date = 2000-01-01   first day (UTC) of the journeys' start
-- param: to Date = 2099-12-31     last day (UTC)
SELECT
    arrayStringConcat(arraySort(channels), ' + ') AS channel_mix,
    count() AS journeys,
    countIf(status = 'converted') AS converted,
    round(countIf(status = 'converted') / count(), 3) AS conversion_rate,
    round(avg(pivots), 2) AS avg_pivots
FROM {db}.journeys
WHERE length(channels) >= {min_channels:UInt8}
  AND toDate(started_at) BETWEEN {from:Date} AND {to:Date}
GROUP BY channel_mix
ORDER BY journeys DESC, channel_mix
