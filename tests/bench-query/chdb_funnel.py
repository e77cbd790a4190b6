"""The query benchmark's chDB side: times ClickHouse's windowFunnel(window, 'strict_once')
over the same events Pulse answers from (signup -> activated -> purchase).

Usage: chdb_funnel.py EVENTS_JSONL FROM_MS TO_MS WINDOW_MS
Prints {"load_s": s, "query_s": [s, s, s], "at_least": [users at step 1, 2, 3]}.
"""
import json
import sys
import time

from chdb import session

path, start, end, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = session.Session()
s.query("CREATE DATABASE IF NOT EXISTS b")
s.query("CREATE TABLE b.ev (user String, event String, ts UInt64) ENGINE = MergeTree ORDER BY (user, ts)")
t = time.perf_counter()
s.query(f"INSERT INTO b.ev SELECT user, event, ts FROM file('{path}', 'JSONEachRow', 'user String, event String, ts UInt64')")
load = time.perf_counter() - t
sql = f"""
    SELECT level, count() AS n FROM (
        SELECT user, windowFunnel({window}, 'strict_once')(ts,
            event = 'signup' AND ts >= {start} AND ts < {end},
            event = 'activated', event = 'purchase') AS level
        FROM b.ev WHERE ts >= {start} AND ts <= {end} + {window}
        GROUP BY user)
    GROUP BY level"""
times = []
for _ in range(3):
    t = time.perf_counter()
    out = s.query(sql, "JSONEachRow").bytes().decode()
    times.append(time.perf_counter() - t)
levels = {}
for line in out.splitlines():
    if line.strip():
        row = json.loads(line)
        levels[int(row["level"])] = int(row["n"])
at_least = [sum(n for lvl, n in levels.items() if lvl >= k) for k in (1, 2, 3)]
print(json.dumps({"load_s": load, "query_s": times, "at_least": at_least}))
