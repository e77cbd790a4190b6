"""Sends the calls of a plan (JSON on stdin) with the official Segment Python SDK, configured
with the ingest URL and the write key only (plus the plan's `settings`, e.g. a batch size),
then flushes. Prints {"sent": [...], "errors": [...]}: each call's message as the SDK built
it (messageId, timestamp) and every error the SDK gave up on, with its HTTP status.
Driven by services/ingest/tests/compat_sdks.rs."""

import json
import sys
from datetime import datetime

from segment.analytics.client import Client

plan = json.load(sys.stdin)
errors = []
client = Client(
    write_key=plan["key"],
    host=plan["host"],
    on_error=lambda error, batch: errors.append(
        {"status": getattr(error, "status", None), "message": f"{error} ({len(batch)} messages)"}
    ),
    **plan.get("settings", {}),
)

sent = []
for call in plan["calls"]:
    common = {
        "user_id": call.get("user"),
        "anonymous_id": call.get("anonymous"),
        "timestamp": datetime.fromisoformat(call["timestamp"]) if call.get("timestamp") else None,
    }
    kind = call["call"]
    if kind == "track":
        ok, msg = client.track(event=call["event"], properties=call.get("properties"), **common)
    elif kind == "identify":
        ok, msg = client.identify(traits=call.get("traits"), **common)
    elif kind == "page":
        ok, msg = client.page(category=call.get("category"), name=call.get("name"), properties=call.get("properties"), **common)
    elif kind == "screen":
        ok, msg = client.screen(category=call.get("category"), name=call.get("name"), properties=call.get("properties"), **common)
    elif kind == "group":
        ok, msg = client.group(group_id=call["group"], traits=call.get("traits"), **common)
    elif kind == "alias":
        ok, msg = client.alias(previous_id=call["previous"], user_id=call["user"], timestamp=common["timestamp"])
    else:
        raise SystemExit(f"unknown call {kind}")
    if not ok:
        raise SystemExit(f"the SDK refused to queue {call}")
    sent.append({"messageId": msg["messageId"], "timestamp": msg["timestamp"]})

client.flush()
client.shutdown()
print(json.dumps({"sent": sent, "errors": errors}))
