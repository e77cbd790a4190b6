// Sends the calls of a plan (JSON on stdin) with Segment's Node SDK (@segment/analytics-node),
// configured with the ingest URL and the write key only (plus the plan's `settings`, e.g. a
// batch size), then flushes. Prints {"sent": [...], "errors": [...]}: each call's messageId and
// timestamp as the SDK built them, and every delivery the SDK gave up on, with its HTTP status.
// Driven by services/ingest/tests/compat_sdks.rs; the SDK comes from tests/env/node-sdks.sh.
'use strict';
const { Analytics } = require('@segment/analytics-node');

const plan = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const analytics = new Analytics({ writeKey: plan.key, host: plan.host, ...(plan.settings || {}) });
const errors = [];
analytics.on('error', (err) => {
  const message = String(err?.reason?.message ?? err?.message ?? err);
  const status = /\[(\d{3})\]/.exec(message);
  errors.push({ status: status ? Number(status[1]) : null, message });
});

const sent = new Array(plan.calls.length);
const delivered = plan.calls.map((call, index) => new Promise((resolve) => {
  const common = { userId: call.user ?? undefined, anonymousId: call.anonymous ?? undefined };
  if (call.timestamp) common.timestamp = new Date(call.timestamp);
  const done = (_err, ctx) => {
    sent[index] = { messageId: ctx.event.messageId, timestamp: new Date(ctx.event.timestamp).toISOString() };
    resolve();
  };
  switch (call.call) {
    case 'track': analytics.track({ ...common, event: call.event, properties: call.properties }, done); break;
    case 'identify': analytics.identify({ ...common, traits: call.traits }, done); break;
    case 'page': analytics.page({ ...common, category: call.category, name: call.name, properties: call.properties }, done); break;
    case 'screen': analytics.screen({ ...common, category: call.category, name: call.name, properties: call.properties }, done); break;
    case 'group': analytics.group({ ...common, groupId: call.group, traits: call.traits }, done); break;
    case 'alias': analytics.alias({ userId: call.user, previousId: call.previous, timestamp: common.timestamp }, done); break;
    default: throw new Error(`unknown call ${call.call}`);
  }
}));

(async () => {
  await analytics.closeAndFlush({ timeout: 240000 });
  await Promise.all(delivered);
  process.stdout.write(JSON.stringify({ sent, errors }) + '\n');
})().catch((e) => { console.error(e); process.exit(1); });
