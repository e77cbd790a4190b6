"""Funnels and retention computed by ClickHouse (chDB), for services/core/tests/chdb.rs.

Reads one JSON document on stdin:
  {"events": "<path of a JSONEachRow file: row, id, event, user, ts, v, d>",
   "funnels": [{"name", "steps": [{"event", "min_v"}], "window_ms", "from", "to"}],
   "retention": [{"name", "start", "return", "kind", "period", "periods", "from", "to", "tz"}]}
and prints one JSON document:
  {"funnels": {name: {user: level}},
   "retention": {name: {"sizes": {date: users}, "cells": [[date, offset, users]]}}}

A repeated event id of a user counts once: the first row given. Funnels use
windowFunnel(window, 'strict_once'); retention is plain SQL over calendar dates in the zone.
"""
import json
import sys

from chdb import session


def q(s, sql):
    out = s.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def lit(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def funnel(s, f):
    conds = []
    for i, step in enumerate(f["steps"]):
        c = f"(event = {lit(step['event'])}"
        if step.get("min_v") is not None:
            c += f" AND v >= {int(step['min_v'])}"
        if i == 0:
            c += f" AND ts >= {f['from']} AND ts < {f['to']}"
        conds.append(c + ")")
    sql = f"""
        SELECT user, windowFunnel({f['window_ms']}, 'strict_once')(toUInt64(ts), {', '.join(conds)}) AS level
        FROM ev WHERE ts >= {f['from']} AND ts <= {f['to']} + {f['window_ms']}
        GROUP BY user"""
    return {r["user"]: int(r["level"]) for r in q(s, sql)}


def retention(s, r):
    tz = lit(r["tz"])
    day = lambda col: f"toDate32(fromUnixTimestamp64Milli({col}, {tz}))"
    period = (lambda col: day(col)) if r["period"] == "day" else (lambda col: f"toMonday({day(col)})")
    step = 1 if r["period"] == "day" else 7
    starts = f"SELECT user, ts FROM ev WHERE event = {lit(r['start'])}"
    if r["kind"] == "firstTime":
        starts = f"SELECT user, min(ts) AS ts FROM ({starts}) GROUP BY user"
    cohorts = (
        f"SELECT DISTINCT user, {period('ts')} AS c FROM ({starts}) "
        f"WHERE ts >= {r['from']} AND ts < {r['to']}"
    )
    returns = f"SELECT DISTINCT user, {period('ts')} AS p FROM ev WHERE event = {lit(r['return'])}"
    sizes = q(s, f"SELECT toString(c) AS cohort, count() AS n FROM ({cohorts}) GROUP BY c")
    cells = q(
        s,
        f"""SELECT toString(c) AS cohort, intDiv(dateDiff('day', c, p), {step}) AS k, count() AS n
            FROM ({cohorts}) AS co INNER JOIN ({returns}) AS re ON co.user = re.user
            WHERE p >= c AND dateDiff('day', c, p) < {step} * {r['periods']}
            GROUP BY c, k""",
    )
    return {
        "sizes": {x["cohort"]: int(x["n"]) for x in sizes},
        "cells": [[x["cohort"], int(x["k"]), int(x["n"])] for x in cells],
    }


def main():
    spec = json.load(sys.stdin)
    s = session.Session()
    schema = "row UInt64, id String, event String, user String, ts Int64, v Int64, d Nullable(String)"
    s.query(f"CREATE TABLE raw ({schema}) ENGINE = Memory")
    s.query(f"INSERT INTO raw SELECT * FROM file({lit(spec['events'])}, 'JSONEachRow', {lit(schema)})")
    s.query("CREATE TABLE ev ENGINE = Memory AS SELECT * FROM raw ORDER BY row LIMIT 1 BY user, id")
    out = {
        "funnels": {f["name"]: funnel(s, f) for f in spec.get("funnels", [])},
        "retention": {r["name"]: retention(s, r) for r in spec.get("retention", [])},
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
