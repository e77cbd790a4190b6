"""Sends the calls of a plan (JSON on stdin) with the official PostHog Python SDK, configured
with the ingest URL and the project key only (plus the plan's `settings`, e.g. a batch size),
then flushes. Prints {"sent": [...], "errors": [...]}: each call's uuid and timestamp as the
SDK sent them and every error the SDK gave up on, with its HTTP status.
Driven by services/ingest/tests/compat_sdks.rs."""

import json
import sys
from datetime import datetime, timezone

from posthog import Posthog

plan = json.load(sys.stdin)
errors = []
client = Posthog(
    plan["key"],
    host=plan["host"],
    on_error=lambda error, batch: errors.append(
        {"status": getattr(error, "status", None), "message": f"{error} ({len(batch)} events)"}
    ),
    **plan.get("settings", {}),
)

sent = []
for call in plan["calls"]:
    # The SDK fills the time when given none; take it here so the test knows it.
    at = datetime.fromisoformat(call["timestamp"]) if call.get("timestamp") else datetime.now(tz=timezone.utc)
    kind = call["call"]
    if kind == "capture":
        uuid = client.capture(call["event"], distinct_id=call["user"], properties=call.get("properties"), timestamp=at)
    elif kind == "set":
        uuid = client.set(distinct_id=call["user"], properties=call["properties"], timestamp=at)
    elif kind == "set_once":
        uuid = client.set_once(distinct_id=call["user"], properties=call["properties"], timestamp=at)
    else:
        raise SystemExit(f"unknown call {kind}")
    if uuid is None:
        raise SystemExit(f"the SDK refused to queue {call}")
    sent.append({"uuid": str(uuid), "timestamp": at.isoformat()})

client.flush()
client.shutdown()
print(json.dumps({"sent": sent, "errors": errors}))
