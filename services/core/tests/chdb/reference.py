"""Funnels, retention, lifecycle and stickiness computed by ClickHouse (chDB), for
services/core/tests/chdb.rs.

Reads one JSON document on stdin:
  {"events": "<path of a JSONEachRow file: row, id, event, user, ts, v, d, sid>",
   "funnels": [{"name", "steps": [{"event", "min_v"}], "window_ms", "from", "to",
                "session_timeout_ms", "tz"}],
   "retention": [{"name", "start", "return", "kind", "period", "periods", "from", "to", "tz"}],
   "lifecycle": [{"name", "event", "min_v", "period", "tz"}],
   "stickiness": [{"name", "event", "min_v", "period", "tz"}],
   "paths": [{"name", "start", "min_v", "direction", "steps", "window_ms", "from", "to",
              "collapse", "exclude", "include", "end_at"}],
   "sessions": [{"name", "event", "timeout_ms", "tz"}]}
and prints one JSON document:
  {"funnels": {name: {user: level}},
   "retention": {name: {"sizes": {date: users}, "cells": [[date, offset, users]]}},
   "lifecycle": {name: [[date, kind, users]]},
   "stickiness": {name: [[date, active days, users]]},
   "paths": {name: [[[event, ...], users]]},
   "sessions": {name: [[date, sessions, [duration ms, ...] sorted, matching events]]}}

A repeated event id of a user counts once: the first row given. Funnels use
windowFunnel(window, 'strict_once'); retention is plain SQL over calendar dates in the zone;
lifecycle classifies each user's sorted array of active periods; stickiness counts distinct
local dates per user and period. Lifecycle and stickiness cover every period of the data
(the test compares the periods it asked for). Paths are array functions over each user's
events sorted by (ts, id): every whole path with its users. Sessions group a user's events
of one local date by `sid` when it is set, and otherwise by gaps of at most the timeout
(arrayDifference, arrayCumSum); per date of their start, those with a matching event.
"""
import json
import sys

from chdb import session


def q(s, sql):
    out = s.query(sql, "JSONEachRow").bytes().decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def lit(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def session_keys(s, timeout_ms, tz):
    """A table `sk_<timeout>_<zone>` of (row, sk): each event's session, as sessions() cuts them."""
    table = f"sk_{timeout_ms}_{abs(hash(tz))}"
    day = f"toDate32(fromUnixTimestamp64Milli(ts, {lit(tz)}))"
    s.query(f"""
        CREATE TABLE IF NOT EXISTS {table} ENGINE = Memory AS
        SELECT row, concat('n|', toString({day}), '|', sid) AS sk FROM ev WHERE sid != ''
        UNION ALL
        SELECT t.1 AS row, concat('g|', toString(d), '|', toString(t.2)) AS sk FROM (
            SELECT d, arrayJoin(arrayZip(arrayMap(e -> e.3, evs),
                arrayCumSum(arrayMap((g, k) -> toUInt32(k = 1 OR g > {timeout_ms}),
                                     arrayDifference(arrayMap(e -> e.1, evs)), arrayEnumerate(evs))))) AS t
            FROM (SELECT user, {day} AS d, arraySort(e -> (e.1, e.2), groupArray((ts, id, row))) AS evs
                  FROM ev WHERE sid = '' GROUP BY user, d))""")
    return table


def funnel(s, f):
    conds = []
    for i, step in enumerate(f["steps"]):
        c = f"(event = {lit(step['event'])}"
        if step.get("min_v") is not None:
            c += f" AND v >= {int(step['min_v'])}"
        if i == 0:
            c += f" AND ts >= {f['from']} AND ts < {f['to']}"
        conds.append(c + ")")
    level = f"windowFunnel({f['window_ms']}, 'strict_once')(toUInt64(ts), {', '.join(conds)})"
    span = f"ts >= {f['from']} AND ts <= {f['to']} + {f['window_ms']}"
    if f.get("session_timeout_ms") is not None:
        # Same session: each session's level, the best per user.
        keys = session_keys(s, f["session_timeout_ms"], f["tz"])
        sql = f"""
            SELECT user, max(level) AS level FROM (
                SELECT user, sk, {level} AS level FROM ev INNER JOIN {keys} USING row WHERE {span}
                GROUP BY user, sk)
            GROUP BY user"""
    else:
        sql = f"SELECT user, {level} AS level FROM ev WHERE {span} GROUP BY user"
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


def period_sql(period, tz):
    """(period of a ts column, the period before, the period after) as Date32 expressions."""
    day = lambda col: f"toDate32(fromUnixTimestamp64Milli({col}, {lit(tz)}))"
    if period == "day":
        return day, lambda d: f"subtractDays({d}, 1)", lambda d: f"addDays({d}, 1)"
    if period == "week":
        return (lambda col: f"toMonday({day(col)})"), lambda d: f"subtractDays({d}, 7)", lambda d: f"addDays({d}, 7)"
    return (
        (lambda col: f"toStartOfMonth({day(col)})"),
        lambda d: f"subtractMonths({d}, 1)",
        lambda d: f"addMonths({d}, 1)",
    )


def matching(x):
    where = f"event = {lit(x['event'])}"
    if x.get("min_v") is not None:
        where += f" AND v >= {int(x['min_v'])}"
    return where


def lifecycle(s, x):
    period, before, after = period_sql(x["period"], x["tz"])
    users = f"SELECT user, arraySort(groupUniqArray({period('ts')})) AS ps FROM ev WHERE {matching(x)} GROUP BY user"
    kinds = f"""
        SELECT arrayJoin(arrayMap(i -> (ps[i], multiIf(i = 1, 'new', ps[i - 1] = {before('ps[i]')}, 'returning',
                                                        'resurrecting')), arrayEnumerate(ps))) AS t
        FROM ({users})"""
    gone = f"""
        SELECT arrayJoin(arrayMap(i -> ({after('ps[i]')}, 'dormant'),
                                  arrayFilter(i -> i = length(ps) OR ps[i + 1] != {after('ps[i]')}, arrayEnumerate(ps)))) AS t
        FROM ({users})"""
    rows = q(s, f"SELECT toString(t.1) AS p, t.2 AS kind, count() AS n FROM ({kinds} UNION ALL {gone}) GROUP BY p, kind")
    return [[r["p"], r["kind"], int(r["n"])] for r in rows]


def stickiness(s, x):
    period, _, _ = period_sql(x["period"], x["tz"])
    day, _, _ = period_sql("day", x["tz"])
    per_user = f"SELECT user, {period('ts')} AS p, uniqExact({day('ts')}) AS days FROM ev WHERE {matching(x)} GROUP BY user, p"
    rows = q(s, f"SELECT toString(p) AS p, days, count() AS n FROM ({per_user}) GROUP BY p, days")
    return [[r["p"], int(r["days"]), int(r["n"])] for r in rows]


def strings(names):
    return "[" + ", ".join(lit(n) for n in names) + "]::Array(String)"


def paths(s, x):
    anchor = f"x.3 = {lit(x['start'])} AND x.1 >= {x['from']} AND x.1 < {x['to']}"
    if x.get("min_v") is not None:
        anchor += f" AND x.4 >= {int(x['min_v'])}"
    end_at = lit(x.get("end_at") or "")
    keep = f"abs(x.1 - a.1) <= {x['window_ms']} AND NOT has({strings(x['exclude'])}, x.3)"
    if x["include"]:
        keep += f" AND (has({strings(x['include'])}, x.3) OR x.3 = {end_at})"
    if x["direction"] == "after":
        side = "arraySlice(evs, i + 1)"
    else:
        side = "arrayReverse(arraySlice(evs, 1, i - 1))"
    # f0: the anchor's name, then the names kept walking away from it; f1: repeats collapsed;
    # e: where the path ends at `end_at`.
    f0 = f"arrayConcat([a.3], arrayMap(x -> x.3, arrayFilter(x -> {keep}, {side})))"
    f1 = "arrayFilter((n, k) -> k = 1 OR n != f0[k - 1], f0, arrayEnumerate(f0))" if x["collapse"] else "f0"
    e = f"arrayFirstIndex((n, k) -> k > 1 AND n = {end_at}, f1, arrayEnumerate(f1))" if x.get("end_at") else "0"
    path = f"arraySlice(if(e > 0, arraySlice(f1, 1, e), f1), 1, {int(x['steps']) + 1})"
    if x["direction"] == "before":
        path = f"arrayReverse({path})"
    sql = f"""
        SELECT {path} AS path, count() AS n FROM (
            SELECT f1, {e} AS e FROM (
                SELECT f0, {f1} AS f1 FROM (
                    SELECT {f0} AS f0 FROM (
                        SELECT evs, i, evs[i] AS a FROM (
                            SELECT evs, arrayFirstIndex(x -> {anchor}, evs) AS i FROM (
                                SELECT user, arraySort(x -> (x.1, x.2), groupArray((ts, id, event, v))) AS evs
                                FROM ev GROUP BY user))
                        WHERE i > 0))))
        GROUP BY path"""
    return [[r["path"], int(r["n"])] for r in q(s, sql)]


def sessions(s, x):
    tz = lit(x["tz"])
    day = f"toDate32(fromUnixTimestamp64Milli(ts, {tz}))"
    named = f"""
        SELECT user, min(ts) AS start, max(ts) - min(ts) AS dur, countIf(event = {lit(x['event'])}) AS m
        FROM ev WHERE sid != '' GROUP BY user, {day}, sid"""
    by_gap = f"""
        SELECT user, min(t.1) AS start, max(t.1) - min(t.1) AS dur, countIf(t.2 = {lit(x['event'])}) AS m FROM (
            SELECT user, d, arrayJoin(arrayZip(
                arrayMap(e -> e.1, evs), arrayMap(e -> e.3, evs),
                arrayCumSum(arrayMap((g, k) -> toUInt32(k = 1 OR g > {x['timeout_ms']}),
                                     arrayDifference(arrayMap(e -> e.1, evs)), arrayEnumerate(evs))))) AS t
            FROM (SELECT user, {day} AS d, arraySort(e -> (e.1, e.2), groupArray((ts, id, event))) AS evs
                  FROM ev WHERE sid = '' GROUP BY user, d))
        GROUP BY user, d, t.3"""
    rows = q(s, f"""
        SELECT toString(toDate32(fromUnixTimestamp64Milli(start, {tz}))) AS date, count() AS n,
               arraySort(groupArray(dur)) AS durs, sum(m) AS events
        FROM ({named} UNION ALL {by_gap}) WHERE m > 0 GROUP BY date""")
    return [[r["date"], int(r["n"]), [int(d) for d in r["durs"]], int(r["events"])] for r in rows]


def main():
    spec = json.load(sys.stdin)
    s = session.Session()
    schema = "row UInt64, id String, event String, user String, ts Int64, v Int64, d Nullable(String), sid String"
    s.query(f"CREATE TABLE raw ({schema}) ENGINE = Memory")
    s.query(f"INSERT INTO raw SELECT * FROM file({lit(spec['events'])}, 'JSONEachRow', {lit(schema)})")
    s.query("CREATE TABLE ev ENGINE = Memory AS SELECT * FROM raw ORDER BY row LIMIT 1 BY user, id")
    out = {
        "funnels": {f["name"]: funnel(s, f) for f in spec.get("funnels", [])},
        "retention": {r["name"]: retention(s, r) for r in spec.get("retention", [])},
        "lifecycle": {x["name"]: lifecycle(s, x) for x in spec.get("lifecycle", [])},
        "stickiness": {x["name"]: stickiness(s, x) for x in spec.get("stickiness", [])},
        "paths": {x["name"]: paths(s, x) for x in spec.get("paths", [])},
        "sessions": {x["name"]: sessions(s, x) for x in spec.get("sessions", [])},
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
