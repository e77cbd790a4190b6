"""Schemathesis hooks for Pulse's fuzzing test: the two rules of Pulse's APIs that JSON
Schema cannot state, kept by the requests schemathesis generates.

Ingest accepts an event's timestamp only within a window that moves with the clock: not
older than the pipeline's retention, not further ahead than its allowed skew. JSON Schema
cannot state a bound relative to now, so the OpenAPI document describes the window in
words, and this hook moves every well-formed timestamp that schemathesis generates into it.
Timestamps of a wrong type or format are left as generated, so negative tests still send
them; refusals of timestamps outside the window are tested in services/ingest/tests.

The query API's ranges are `[from, to)` with `from` before `to`, a funnel's exclusions name
steps it has, its (or a paths query's) window is at most 366 days and a trend's session
timeout at most a day: rules between fields or on a duration's
value; generated requests that break them are mended. Their
refusals are tested in services/query/tests and the funnel definition's unit tests.
"""

import datetime
import re

import schemathesis

INT64 = 2**63
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _now_ms():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


def _in_window(value):
    whole = isinstance(value, float) and value.is_integer() and abs(value) <= 2**53
    if (isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64) or whole:
        return _now_ms() - 60_000
    if isinstance(value, str) and RFC3339.match(value):
        now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
        return now.isoformat()
    return value


def _events(body):
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        return [e for e in body["batch"] if isinstance(e, dict)]
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    if isinstance(body, dict):
        return [body]
    return []


def _is_time(value):
    # JSON Schema's integers include whole floats (`-279.0`), and the APIs read them so.
    whole = isinstance(value, float) and value.is_integer()
    return (isinstance(value, int) and not isinstance(value, bool)) or whole


def _ordered_ranges(value):
    """Every object holding integer `from` and `to` gets from < to, recursively."""
    if isinstance(value, dict):
        if _is_time(value.get("from")) and _is_time(value.get("to")):
            low, high = sorted((value["from"], value["to"]))
            if low == high:
                # The schema bounds both ends; widen inward from whichever end has room.
                if low > -(2**62):
                    low -= 1
                else:
                    high += 1
            value["from"], value["to"] = low, high
        for item in value.values():
            _ordered_ranges(item)
    elif isinstance(value, list):
        for item in value:
            _ordered_ranges(item)


def _exclusions_within_steps(body):
    """An exclusion names steps of its funnel: fromStep before toStep, both within the steps."""
    definition = body.get("definition") if isinstance(body, dict) else None
    if not isinstance(definition, dict) or not isinstance(definition.get("steps"), list):
        return
    steps = len(definition["steps"])
    for exclusion in definition.get("exclusions") or []:
        if isinstance(exclusion, dict) and _is_time(exclusion.get("fromStep")) and _is_time(exclusion.get("toStep")):
            exclusion["toStep"] = max(2, min(int(exclusion["toStep"]), steps))
            exclusion["fromStep"] = max(1, min(int(exclusion["fromStep"]), exclusion["toStep"] - 1))


UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^([0-9]+)([smhdw])$")


def _durations_within_limits(body):
    """A funnel's or a paths query's window is at most 366 days, a trend's session timeout
    at most a day: bounds on a duration's value, not its text."""
    definition = body.get("definition") if isinstance(body, dict) else None
    for holder, field, limit, bound in ((definition, "window", 366 * 86400, "366d"),
                                        (body, "window", 366 * 86400, "366d"),
                                        (body, "sessionTimeout", 86400, "1d")):
        value = holder.get(field) if isinstance(holder, dict) else None
        match = DURATION.match(value) if isinstance(value, str) else None
        if match and int(match.group(1)) * UNIT_SECONDS[match.group(2)] > limit:
            holder[field] = bound


def _objects(value):
    """Every object in `value`, itself included (a people request nests a report's query)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


@schemathesis.hook
def before_call(context, case, kwargs):
    for holder in list(_objects(case.body)):
        _durations_within_limits(holder)
        _exclusions_within_steps(holder)
    _ordered_ranges(case.body)
    if isinstance(case.query, dict):
        # Query parameters may come as text: order them as numbers, send them as generated.
        as_text = {k: isinstance(case.query.get(k), str) for k in ("from", "to")}
        numbers = {}
        for key in ("from", "to"):
            value = case.query.get(key)
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            numbers[key] = value
        _ordered_ranges(numbers)
        for key in ("from", "to"):
            if key in case.query and _is_time(numbers[key]):
                case.query[key] = str(numbers[key]) if as_text[key] else numbers[key]
    # Right before each request, whatever phase generated it; schemathesis then re-checks
    # whether the request still violates the schema.
    # A Segment batch's sentAt corrects its messages' clocks: it belongs to the window too.
    if isinstance(case.body, dict) and "sentAt" in case.body:
        case.body["sentAt"] = _in_window(case.body["sentAt"])
    for event in _events(case.body):
        for field in ("timestamp", "sentAt", "originalTimestamp"):
            if field in event:
                event[field] = _in_window(event[field])
