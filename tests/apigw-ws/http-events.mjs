// Checks of the HTTP function with API Gateway HTTP API (payload 2.0) events sent to cargo
// lambda watch's Invoke API — what the local function URL cannot produce:
//   1. the client address is requestContext.http.sourceIp, not X-Forwarded-For: a new
//      visitor from 192.0.2.7 (documentation range) with `X-Forwarded-For: 8.8.8.8` is
//      skipped as `documentation` in /api/stats, and no lookup is asked for (cacheMisses);
//   2. a body that is not UTF-8 arrives base64-encoded (isBase64Encoded) and is a 400 with
//      {"error":…} naming the problem (cargo lambda watch's function URL answers such a
//      JSON-typed body with its own 500 before the function is invoked).
// Env: FN_URL, INVOKE_URL, PUBLIC_KEY, SECRET_KEY.
import { httpEvent, invoke as invokeFn } from './events.mjs';

const { FN_URL, INVOKE_URL, PUBLIC_KEY, SECRET_KEY } = process.env;
const fail = (msg) => { console.error(`HTTP event check FAILED: ${msg}`); process.exit(1); };

const event = httpEvent;
const invoke = (ev) => invokeFn(INVOKE_URL, 'tippen-http', ev).catch((e) => fail(e.message));

const stats = async () => (await fetch(`${FN_URL}/api/stats?apiKey=${encodeURIComponent(SECRET_KEY)}`)).json();

const before = await stats();
const id = `srcip_${Date.now()}`;
const tracked = await invoke(event('/track/visitor',
  { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY, 'x-forwarded-for': '8.8.8.8' },
  JSON.stringify({ event: 'pageview', visitor: { visitorId: id, url: 'https://ip.test/' }, website: 'ip.test' })));
if (tracked.statusCode !== 200) fail(`track answered ${JSON.stringify(tracked)}`);
const after = await stats();
const doc = (s) => s.skipsByReason?.documentation ?? 0;
if (doc(after) !== doc(before) + 1) fail(`skipsByReason.documentation ${doc(before)} -> ${doc(after)} (expected +1: sourceIp 192.0.2.7)`);
if (after.cacheMisses !== before.cacheMisses) fail(`cacheMisses ${before.cacheMisses} -> ${after.cacheMisses}: X-Forwarded-For 8.8.8.8 was believed`);

const garbage = Buffer.concat([Buffer.from('{"event":"pageview","visitor":{"visitorId":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","url":"https://x.test/"}}')]);
const bad = await invoke(event('/track/visitor', { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY }, garbage, { base64: true }));
if (bad.statusCode !== 400 || !JSON.parse(bad.body).error) fail(`non-UTF-8 body answered ${JSON.stringify(bad)}`);

console.log(`HTTP event checks ok: sourceIp decides the client address (documentation skip counted, X-Forwarded-For ignored); a non-UTF-8 body is 400 ${bad.body}`);
