// Measures how late a closed tab's removal reaches a dashboard on the Lambda host: LEAVES
// visitors (CONCURRENCY at a time) each open one tab (a page view through the HTTP function)
// and send its exit beacon; a dashboard connected through the API Gateway stand-in waits for
// each one's VISITOR_REMOVED (reason `left`). The lag of one leave is the time from the
// beacon's answer to the removal's arrival, less the leave linger. Prints min / p50 / p95 /
// max; fails when a removal arrives before the linger could have ended (300 ms early, the
// conformance suite's bound), with another reason, never (linger + 10 s), or, with MAX_LAG_MS
// set, when the largest lag is over it.
// Env: FN_URL, WS_URL, PUBLIC_KEY, SECRET_KEY, LEAVE_LINGER_MS; LEAVES (50), CONCURRENCY (5),
// MAX_LAG_MS (none).
import WebSocket from 'ws';

const { FN_URL, WS_URL, PUBLIC_KEY, SECRET_KEY } = process.env;
const linger = Number(process.env.LEAVE_LINGER_MS ?? 2000);
const leaves = Number(process.env.LEAVES ?? 50);
const concurrency = Number(process.env.CONCURRENCY ?? 5);
const maxLag = process.env.MAX_LAG_MS ? Number(process.env.MAX_LAG_MS) : null;
const run = `lag_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
const fail = (msg) => { console.error(`linger lag FAILED: ${msg}`); process.exit(1); };

const removals = new Map(); // visitor id -> resolve(message, arrival)
const arrived = new Map(); // visitor id -> [message, arrival] (a removal before its waiter)
const ws = new WebSocket(`${WS_URL}${WS_URL.includes('?') ? '&' : '?'}apiKey=${encodeURIComponent(SECRET_KEY)}`);
let initial;
const greeted = new Promise((resolve) => { initial = resolve; });
ws.on('message', (data) => {
  const at = Date.now();
  const m = JSON.parse(data.toString());
  if (m.type === 'INITIAL_VISITORS') initial(m);
  if (m.type !== 'VISITOR_REMOVED' || !m.visitorId?.startsWith(run)) return;
  const waiter = removals.get(m.visitorId);
  if (waiter) waiter(m, at); else arrived.set(m.visitorId, [m, at]);
});
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
const timeout = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(what)), ms));
await Promise.race([greeted, timeout(10000, 'no INITIAL_VISITORS within 10 s')]).catch((e) => fail(e.message));

async function post(path, body, headers) {
  const res = await fetch(`${FN_URL}${path}`, { method: 'POST', headers, body });
  const text = await res.text();
  if (res.status !== 200) fail(`${path} answered ${res.status} ${text}`);
}

/** One visitor: a page view, the exit beacon, its removal. Returns the lag in ms. */
async function leaveOnce(i) {
  const id = `${run}_${i}`;
  await post('/track/visitor', JSON.stringify({
    event: 'pageview', visitor: { visitorId: id, tabId: 't', url: 'https://lag.test/' }, website: 'lag.test',
  }), { 'content-type': 'application/json', 'x-tippen-api-key': PUBLIC_KEY });
  const removed = new Promise((resolve) => {
    const early = arrived.get(id);
    if (early) resolve(early); else removals.set(id, (m, at) => resolve([m, at]));
  });
  const sent = Date.now();
  await post(`/track/leave?apiKey=${encodeURIComponent(PUBLIC_KEY)}`, JSON.stringify({ visitorId: id, tabId: 't' }),
    { 'content-type': 'text/plain;charset=UTF-8' });
  const answered = Date.now();
  const [m, at] = await Promise.race([removed, timeout(linger + 10000, `no VISITOR_REMOVED for ${id} within ${linger + 10000} ms of its beacon`)])
    .catch((e) => fail(e.message));
  if (m.reason !== 'left') fail(`${id} removed with reason ${m.reason}`);
  if (at - sent < linger - 300) fail(`${id} removed ${at - sent} ms after its beacon was sent (linger ${linger} ms)`);
  return at - answered - linger;
}

const lags = [];
let next = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < leaves) lags.push(await leaveOnce(next++));
}));
ws.close();
lags.sort((a, b) => a - b);
const pick = (q) => lags[Math.min(lags.length - 1, Math.floor(lags.length * q))];
console.log(`linger-end lag over ${lags.length} leaves (${concurrency} at a time, linger ${linger} ms): ` +
  `min ${lags[0]} ms, p50 ${pick(0.5)} ms, p95 ${pick(0.95)} ms, max ${lags[lags.length - 1]} ms`);
if (maxLag !== null && lags[lags.length - 1] > maxLag) fail(`the largest lag, ${lags[lags.length - 1]} ms, is over ${maxLag} ms`);
process.exit(0);
