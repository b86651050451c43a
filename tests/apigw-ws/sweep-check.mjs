// The scheduled function removes a timed-out visitor and the removal reaches a connected
// dashboard — with nothing else sweeping (the periodic invoker is stopped first):
//   1. track a visitor, connect a dashboard through the stand-in, see it listed;
//   2. wait past the visible grace: no VISITOR_REMOVED may arrive (no sweep ran), and
//      /api/visitors already hides the visitor (lazy expiry on read);
//   3. invoke tippen-sweep once through cargo lambda watch's Invoke API: VISITOR_REMOVED
//      (reason inactive) must reach the dashboard within 3 s;
//   4. a windowed run (`{"windowMs": grace + 2000}`, what the EventBridge rule sends on AWS),
//      invoked right after a second visitor's page view, stays for that visitor's deadline:
//      its VISITOR_REMOVED must arrive within [grace - 300 ms, grace + 1500 ms] of the page
//      view's answer (the conformance suite's bounds), while the invocation is still running;
//   5. an exit beacon through the HTTP function, with no scheduled run: the HTTP function asks
//      the sweep function (TIPPEN_SWEEP_FUNCTION, asynchronous Invoke) to sweep when the
//      leave linger ends, so VISITOR_REMOVED (reason left) arrives within
//      [linger - 300 ms, linger + 1500 ms] of the beacon's answer.
// Env: FN_URL, WS_URL, INVOKE_URL, PUBLIC_KEY, SECRET_KEY, VISIBLE_GRACE_MS, LEAVE_LINGER_MS.
import WebSocket from 'ws';

const { FN_URL, WS_URL, INVOKE_URL, PUBLIC_KEY, SECRET_KEY } = process.env;
const grace = Number(process.env.VISIBLE_GRACE_MS);
const linger = Number(process.env.LEAVE_LINGER_MS ?? 2000);
const id = `sweepcheck_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
const fail = (msg) => { console.error(`sweep check FAILED: ${msg}`); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const tracked = await fetch(`${FN_URL}/track/visitor`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY },
  body: JSON.stringify({ event: 'pageview', visitor: { visitorId: id, url: 'https://sweep.test/' }, website: 'sweep.test' }),
});
if (tracked.status !== 200) fail(`track answered ${tracked.status}`);

const messages = [];
const ws = new WebSocket(`${WS_URL}${WS_URL.includes('?') ? '&' : '?'}apiKey=${encodeURIComponent(SECRET_KEY)}`);
ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
for (let i = 0; i < 50 && messages.length === 0; i++) await sleep(100);
const first = messages[0];
if (first?.type !== 'INITIAL_VISITORS') fail(`first message ${JSON.stringify(first)}`);
if (!first.visitors.some((v) => v.visitorId === id)) fail('the visitor is not in INITIAL_VISITORS');

const removed = () => messages.find((m) => m.type === 'VISITOR_REMOVED' && m.visitorId === id);
await sleep(grace + 1000);
if (removed()) fail('VISITOR_REMOVED arrived although no sweep ran');
const listed = await (await fetch(`${FN_URL}/api/visitors`, { headers: { 'x-tippen-api-key': SECRET_KEY } })).json();
if (listed.visitors.some((v) => v.visitorId === id)) fail('/api/visitors lists a visitor whose grace has passed');

const t0 = Date.now();
const swept = await fetch(`${INVOKE_URL}/2015-03-31/functions/tippen-sweep/invocations`, { method: 'POST', body: '{}' });
const answer = await swept.text();
if (swept.status !== 200) fail(`sweep invocation answered ${swept.status} ${answer}`);
for (let i = 0; i < 30 && !removed(); i++) await sleep(100);
const m = removed();
if (!m) fail(`no VISITOR_REMOVED within 3 s of the sweep (sweep answered ${answer})`);
if (m.reason !== 'inactive') fail(`reason ${m.reason}`);
const oneShotMs = Date.now() - t0;

const id2 = `${id}_windowed`;
const tracked2 = await fetch(`${FN_URL}/track/visitor`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY },
  body: JSON.stringify({ event: 'pageview', visitor: { visitorId: id2, url: 'https://sweep.test/' }, website: 'sweep.test' }),
});
const answered2 = Date.now();
if (tracked2.status !== 200) fail(`second track answered ${tracked2.status}`);
const windowMs = grace + 2000;
let invocationDone = null;
const windowed = fetch(`${INVOKE_URL}/2015-03-31/functions/tippen-sweep/invocations`, {
  method: 'POST', body: JSON.stringify({ windowMs }),
}).then(async (res) => { invocationDone = Date.now(); return { status: res.status, text: await res.text() }; });
const removed2 = () => messages.find((m) => m.type === 'VISITOR_REMOVED' && m.visitorId === id2);
for (let i = 0; i < (windowMs + 3000) / 20 && !removed2(); i++) await sleep(20);
const seenAt = Date.now();
if (!removed2()) {
  const done = await Promise.race([windowed, sleep(5000).then(() => ({ status: 'still running', text: '' }))]);
  fail(`the windowed sweep (${windowMs} ms) did not remove ${id2}; the invocation: ${done.status} ${done.text}${invocationDone ? `, returned ${invocationDone - answered2} ms after the page view` : ''}`);
}
const after = seenAt - answered2;
if (after < grace - 300 || after > grace + 1500) fail(`VISITOR_REMOVED ${after} ms after the page view's answer (grace ${grace} ms; bounds ${grace - 300}..${grace + 1500})`);
// The removal must come from the windowed run itself (no other sweep runs here).
if (invocationDone !== null && invocationDone < answered2 + grace - 300) fail(`the windowed invocation returned ${invocationDone - answered2} ms after the page view, before the visitor's grace ended`);
const done = await windowed;
if (done.status !== 200) fail(`windowed sweep answered ${done.status} ${done.text}`);

const id3 = `${id}_closed`;
const tracked3 = await fetch(`${FN_URL}/track/visitor`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY },
  body: JSON.stringify({ event: 'pageview', visitor: { visitorId: id3, tabId: 't', url: 'https://sweep.test/' }, website: 'sweep.test' }),
});
if (tracked3.status !== 200) fail(`third track answered ${tracked3.status}`);
const left = await fetch(`${FN_URL}/track/leave?apiKey=${encodeURIComponent(PUBLIC_KEY)}`, {
  method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify({ visitorId: id3, tabId: 't' }),
});
const leftAt = Date.now();
if (left.status !== 200) fail(`the exit beacon answered ${left.status}`);
const removed3 = () => messages.find((m) => m.type === 'VISITOR_REMOVED' && m.visitorId === id3);
for (let i = 0; i < (linger + 3000) / 20 && !removed3(); i++) await sleep(20);
const closeMs = Date.now() - leftAt;
if (!removed3()) fail(`no VISITOR_REMOVED for ${id3} within ${linger + 3000} ms of its exit beacon (no scheduled run: the HTTP function must ask for a sweep)`);
if (removed3().reason !== 'left') fail(`${id3} removed with reason ${removed3().reason}`);
if (closeMs < linger - 300 || closeMs > linger + 1500) fail(`VISITOR_REMOVED ${closeMs} ms after the exit beacon (linger ${linger} ms; bounds ${linger - 300}..${linger + 1500})`);
console.log(`sweep check ok: the sweep invocation (${answer}) removed ${id}; VISITOR_REMOVED reached the dashboard ${oneShotMs} ms after the invoke; a windowed run (${windowMs} ms) removed ${id2} ${after} ms after its page view (grace ${grace} ms) and returned ${invocationDone - answered2} ms after it (${done.text}); an exit beacon's removal (linger ${linger} ms) reached the dashboard ${closeMs} ms after it`);
ws.close();
process.exit(0);
