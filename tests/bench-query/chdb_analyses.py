"""The query benchmark's chDB side for paths and lifecycle: times ClickHouse on the same
events Pulse answers from, and prints its answers to compare.

Usage: chdb_analyses.py EVENTS_JSONL FROM_MS TO_MS
  paths: each user's first signup in [FROM, TO), then the next 3 events within a day,
  repeats collapsed (arrays over the user's events sorted by time, then id);
  lifecycle: page_viewed per UTC day of [FROM, TO): new, returning, resurrecting, dormant.
Prints {"load_s": s, "paths_s": [s, s, s], "paths": [[[event, ...], users], ...] (top 5),
        "path_users": n, "lifecycle_s": [s, s, s], "lifecycle": {date: [new, returning,
        resurrecting, dormant]}}.
"""
import json
import sys
import time

from chdb import session

path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
DAY = 86_400_000
s = session.Session()
s.query("CREATE DATABASE IF NOT EXISTS b")
s.query("CREATE TABLE b.ev (id String, user String, event String, ts Int64) ENGINE = MergeTree ORDER BY (user, ts)")
t = time.perf_counter()
s.query(f"INSERT INTO b.ev SELECT id, user, event, ts FROM file('{path}', 'JSONEachRow', 'id String, user String, event String, ts Int64')")
load = time.perf_counter() - t


def timed(sql):
    times, out = [], ""
    for _ in range(3):
        t = time.perf_counter()
        out = s.query(sql, "JSONEachRow").bytes().decode()
        times.append(time.perf_counter() - t)
    return times, [json.loads(line) for line in out.splitlines() if line.strip()]


paths_sql = f"""
    SELECT path, count() AS n FROM (
        SELECT arraySlice(arrayFilter((x, k) -> k = 1 OR x != f0[k - 1], f0, arrayEnumerate(f0)), 1, 4) AS path FROM (
            SELECT arrayConcat([a.3], arrayMap(x -> x.3,
                       arrayFilter(x -> x.1 - a.1 <= {DAY}, arraySlice(evs, i + 1)))) AS f0 FROM (
                SELECT evs, i, evs[i] AS a FROM (
                    SELECT evs, arrayFirstIndex(x -> x.3 = 'signup' AND x.1 >= {start} AND x.1 < {end}, evs) AS i FROM (
                        SELECT user, arraySort(x -> (x.1, x.2), groupArray((ts, id, event))) AS evs
                        FROM b.ev WHERE ts >= {start} AND ts <= {end} + {DAY} GROUP BY user))
                WHERE i > 0)))
    GROUP BY path ORDER BY n DESC, path"""
paths_s, rows = timed(paths_sql)
path_users = sum(int(r["n"]) for r in rows)

day = "toDate32(fromUnixTimestamp64Milli(ts, 'UTC'))"
users = f"SELECT user, arraySort(groupUniqArray({day})) AS ps FROM b.ev WHERE event = 'page_viewed' AND ts < {end} GROUP BY user"
lifecycle_sql = f"""
    SELECT toString(t.1) AS d, t.2 AS kind, count() AS n FROM (
        SELECT arrayJoin(arrayMap(i -> (ps[i], multiIf(i = 1, 'new', ps[i - 1] = subtractDays(ps[i], 1), 'returning',
                                                        'resurrecting')), arrayEnumerate(ps))) AS t FROM ({users})
        UNION ALL
        SELECT arrayJoin(arrayMap(i -> (addDays(ps[i], 1), 'dormant'),
                                  arrayFilter(i -> i = length(ps) OR ps[i + 1] != addDays(ps[i], 1), arrayEnumerate(ps)))) AS t
        FROM ({users}))
    GROUP BY d, kind"""
lifecycle_s, lrows = timed(lifecycle_sql)
kinds = ["new", "returning", "resurrecting", "dormant"]
lifecycle = {}
for r in lrows:
    counts = lifecycle.setdefault(r["d"], [0, 0, 0, 0])
    counts[kinds.index(r["kind"])] = int(r["n"]) * (-1 if r["kind"] == "dormant" else 1)
print(json.dumps({
    "load_s": load, "paths_s": paths_s, "paths": [[r["path"], int(r["n"])] for r in rows[:5]],
    "path_users": path_users, "lifecycle_s": lifecycle_s, "lifecycle": lifecycle,
}))
