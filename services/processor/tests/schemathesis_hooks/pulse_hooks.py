"""Schemathesis hooks for Pulse's fuzzing test.

Ingest accepts an event's timestamp only within a window that moves with the clock: not
older than the pipeline's retention, not further ahead than its allowed skew. JSON Schema
cannot state a bound relative to now, so the OpenAPI document describes the window in
words, and this hook moves every well-formed timestamp that schemathesis generates into it.
Timestamps of a wrong type or format are left as generated, so negative tests still send
them; refusals of timestamps outside the window are tested in services/ingest/tests.
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


@schemathesis.hook
def before_call(context, case, kwargs):
    # Right before each request, whatever phase generated it; schemathesis then re-checks
    # whether the request still violates the schema.
    # A Segment batch's sentAt corrects its messages' clocks: it belongs to the window too.
    if isinstance(case.body, dict) and "sentAt" in case.body:
        case.body["sentAt"] = _in_window(case.body["sentAt"])
    for event in _events(case.body):
        for field in ("timestamp", "sentAt", "originalTimestamp"):
            if field in event:
                event[field] = _in_window(event[field])
