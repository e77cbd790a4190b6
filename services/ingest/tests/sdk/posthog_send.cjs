// Sends the calls of a plan (JSON on stdin) with PostHog's Node SDK (posthog-node), configured
// with the ingest URL and the project key only (plus the plan's `settings`, e.g. a batch size),
// then shuts it down, which flushes. Prints {"sent": [...], "errors": [...]}: each event's uuid
// and timestamp as the SDK queued them, and every error the SDK reported, with its HTTP status.
// Driven by services/ingest/tests/compat_sdks.rs; the SDK comes from tests/env/node-sdks.sh.
'use strict';
const { PostHog } = require('posthog-node');

const plan = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const client = new PostHog(plan.key, { host: plan.host, ...(plan.settings || {}) });
const errors = [];
client.on('error', (err) => {
  errors.push({ status: err?.status ?? err?.response?.status ?? null, message: String(err?.message ?? err) });
});
const sent = [];
client.on('capture', (message) => {
  sent.push({ uuid: message.uuid, timestamp: new Date(message.timestamp).toISOString() });
});

for (const call of plan.calls) {
  // The SDK fills the time when given none; take it here so the test knows it.
  const timestamp = call.timestamp ? new Date(call.timestamp) : new Date();
  switch (call.call) {
    case 'capture':
      client.capture({ distinctId: call.user, event: call.event, properties: call.properties, timestamp });
      break;
    case 'set':
      client.capture({ distinctId: call.user, event: '$set', properties: { $set: call.properties }, timestamp });
      break;
    case 'set_once':
      client.capture({ distinctId: call.user, event: '$set_once', properties: { $set_once: call.properties }, timestamp });
      break;
    default: throw new Error(`unknown call ${call.call}`);
  }
}

(async () => {
  await client.shutdown(240000);
  process.stdout.write(JSON.stringify({ sent, errors }) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
