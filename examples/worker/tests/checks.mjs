// Checks of the Workers host that the shared conformance suite does not make, against a
// running `wrangler dev` (scripts/test-worker.sh starts it):
//
//   node tests/checks.mjs alarm            removal by the Durable Object alarm, seen on a real
//                                          dashboard WebSocket, with nothing else happening
//   node tests/checks.mjs isolation        two sites, two Durable Objects, nothing shared
//   node tests/checks.mjs restart-before   a visitor (and a dashboard's seq) before a restart
//   node tests/checks.mjs restart-after    ... listed again after wrangler restarted
//   node tests/checks.mjs store-suite      tippen_core::testkit::run_store_suite on DO storage
//   node tests/checks.mjs visitor-channel  /ws/visitor: pushes, delivery, answers, hello, refusals
//   node tests/checks.mjs video-call       POST /api/video-call against a stand-in provider (fetch)
//   node tests/checks.mjs slack            support alert -> Slack stand-in webhook (fetch, waitUntil)
//   node tests/checks.mjs enrichment       IP -> company through a stand-in IPinfo (fetch), then
//                                          the other site served from the shared KV cache
//
// Environment: TIPPEN_BASE_URL, TIPPEN_VISIBLE_GRACE_MS, TIPPEN_STATE_FILE (restart),
// TIPPEN_PERSIST_DIR (isolation: where wrangler keeps Durable Object storage).
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';

const base = (process.env.TIPPEN_BASE_URL ?? 'http://127.0.0.1:8801').replace(/\/$/, '');
const wsBase = base.replace(/^http/, 'ws');
const visibleGraceMs = Number(process.env.TIPPEN_VISIBLE_GRACE_MS ?? 2000);

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

const unique = (prefix) => `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

async function track(key, visitorId, { event = 'pageview', visibility = 'visible', headers = {} } = {}) {
  const res = await fetch(`${base}/track/visitor`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': key, ...headers },
    body: JSON.stringify({
      event,
      visitor: {
        visitorId,
        url: 'https://example.com/pricing',
        timestamp: new Date().toISOString(),
        userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0',
        tabId: 'tab_1',
        visibility,
      },
      website: 'example.com',
    }),
  });
  const body = await res.text();
  check(res.status === 200, `POST /track/visitor answered ${res.status} ${body}`);
  return JSON.parse(body);
}

async function visitors(secret) {
  const res = await fetch(`${base}/api/visitors`, { headers: { 'X-Tippen-API-Key': secret } });
  const body = await res.text();
  check(res.status === 200, `GET /api/visitors answered ${res.status} ${body}`);
  return JSON.parse(body);
}

/** A dashboard socket that records every message with its arrival time. */
function dashboard(secret) {
  return socket(`/ws/dashboard?apiKey=${encodeURIComponent(secret)}`);
}

/** A visitor-channel socket (one tab). */
function visitorSocket(key, visitorId) {
  return socket(`/ws/visitor?apiKey=${encodeURIComponent(key)}&visitorId=${encodeURIComponent(visitorId)}`);
}

/** The HTTP status a refused WebSocket upgrade was answered with. */
function refusedWith(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}${path}`);
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      ws.terminate();
    });
    ws.on('open', () => {
      ws.close();
      reject(new Error(`${path} was upgraded`));
    });
    ws.on('error', () => {});
  });
}

/** A socket that records every message with its arrival time. */
function socket(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}${path}`);
    const messages = [];
    const waiters = [];
    ws.on('message', (data) => {
      const message = { at: Date.now(), value: JSON.parse(data.toString()) };
      messages.push(message);
      for (const w of [...waiters]) {
        if (w.predicate(message.value)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(message);
        }
      }
    });
    ws.on('error', reject);
    ws.on('open', () =>
      resolve({
        ws,
        messages,
        waitFor(description, predicate, timeoutMs) {
          const seen = messages.find((m) => predicate(m.value));
          if (seen) return Promise.resolve(seen);
          return new Promise((res, rej) => {
            const timer = setTimeout(
              () => rej(new Error(`no ${description} within ${timeoutMs} ms; got ${JSON.stringify(messages.map((m) => m.value))}`)),
              timeoutMs,
            );
            waiters.push({ predicate, resolve: (m) => { clearTimeout(timer); res(m); } });
          });
        },
        send(value) { ws.send(typeof value === 'string' ? value : JSON.stringify(value)); },
        /** How many messages so far match. */
        count(predicate) { return messages.filter((m) => predicate(m.value)).length; },
        close() { ws.close(); },
      }),
    );
  });
}

async function alarm() {
  const id = unique('alarm');
  const board = await dashboard('sk_a');
  await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  const trackedAt = Date.now();
  await track('pk_a', id);
  await board.waitFor('VISITOR_UPDATE new_visitor', (m) => m.type === 'VISITOR_UPDATE' && m.visitor?.visitorId === id, 5000);
  // Nothing else is sent to the site: only the alarm can remove the visitor.
  const removed = await board.waitFor(
    'VISITOR_REMOVED by the alarm',
    (m) => m.type === 'VISITOR_REMOVED' && m.visitorId === id,
    visibleGraceMs + 5000,
  );
  check(removed.value.reason === 'inactive', `removal reason ${removed.value.reason}, expected inactive`);
  const after = removed.at - trackedAt;
  check(after >= visibleGraceMs - 50, `removed after ${after} ms, before the ${visibleGraceMs} ms grace`);
  const list = await visitors('sk_a');
  check(!list.visitors.some((v) => v.visitorId === id), 'the removed visitor is still listed');
  board.close();
  console.log(`ok alarm: VISITOR_REMOVED (inactive) on the dashboard ${after} ms after the page view (grace ${visibleGraceMs} ms; ${after - visibleGraceMs} ms late)`);
}

/** Durable Object storage under wrangler's --persist-to: object id -> its SQLite bytes (db + WAL). */
function objectStorage(dir) {
  const objects = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        walk(p);
        continue;
      }
      const m = /^([0-9a-f]{64})\.sqlite(-wal)?$/.exec(name);
      if (m && /TippenSite/.test(d)) {
        objects.set(m[1], Buffer.concat([objects.get(m[1]) ?? Buffer.alloc(0), readFileSync(p)]));
      }
    }
  };
  walk(dir);
  return objects;
}

async function isolation() {
  const id = unique('twin');
  const boardB = await dashboard('sk_b');
  await boardB.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  await track('pk_a', id);
  const a = await visitors('sk_a');
  const b = await visitors('sk_b');
  check(a.visitors.some((v) => v.visitorId === id), 'site A does not list its visitor');
  check(!b.visitors.some((v) => v.visitorId === id), "site B lists site A's visitor");
  // Site A's secret does not open site B's data and vice versa: each key finds its own site.
  await new Promise((r) => setTimeout(r, 300));
  check(!boardB.messages.some((m) => JSON.stringify(m.value).includes(id)), "site B's dashboard heard site A's visitor");
  await track('pk_b', id, { visibility: 'hidden' });
  const a2 = await visitors('sk_a');
  const b2 = await visitors('sk_b');
  const va = a2.visitors.find((v) => v.visitorId === id);
  const vb = b2.visitors.find((v) => v.visitorId === id);
  check(va && vb, 'both sites list their own visitor of the same id');
  check(va.status === 'active' && vb.status === 'idle', `the two records are separate (A ${va.status}, B ${vb.status})`);
  check(va.pageViews === 1 && vb.pageViews === 1, 'page views were counted per site');
  boardB.close();
  if (process.env.TIPPEN_PERSIST_DIR) {
    // The visitor id is stored by exactly two Durable Objects: site A's and site B's.
    const holders = [...objectStorage(process.env.TIPPEN_PERSIST_DIR)].filter(([, bytes]) => bytes.includes(id));
    check(holders.length === 2, `expected the visitor in two Durable Objects' storage, found it in ${holders.length}`);
    console.log(`ok isolation: separate records, separate dashboards, two Durable Objects (${holders.map(([o]) => o.slice(0, 8)).join(', ')})`);
  } else {
    console.log('ok isolation: separate records and dashboards');
  }
}

async function restartBefore() {
  const id = unique('survivor');
  await track('pk_a', id, { visibility: 'hidden' });
  const list = await visitors('sk_a');
  check(list.visitors.some((v) => v.visitorId === id), 'the visitor is not listed before the restart');
  writeFileSync(process.env.TIPPEN_STATE_FILE, JSON.stringify({ id, seq: list.seq }));
  console.log(`ok restart (before): ${id} listed, seq ${list.seq}`);
}

async function restartAfter() {
  const { id, seq } = JSON.parse(readFileSync(process.env.TIPPEN_STATE_FILE, 'utf8'));
  const list = await visitors('sk_a');
  check(list.visitors.some((v) => v.visitorId === id), `${id} is not listed after the restart: ${JSON.stringify(list)}`);
  check(list.seq >= seq, `the sequence went back from ${seq} to ${list.seq}`);
  const board = await dashboard('sk_a');
  const hello = await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  check(hello.value.visitors.some((v) => v.visitorId === id), 'INITIAL_VISITORS after the restart misses the visitor');
  // The restarted object still works: a heartbeat of the same visitor is an update, not a new visit.
  await track('pk_a', id, { event: 'heartbeat', visibility: 'hidden' });
  const again = await visitors('sk_a');
  check(again.visitors.filter((v) => v.visitorId === id).length === 1, 'the visitor is listed twice');
  board.close();
  console.log(`ok restart (after): ${id} listed again (seq ${seq} -> ${list.seq}), in INITIAL_VISITORS too`);
}

async function storeSuite() {
  const prefix = unique('suite');
  const res = await fetch(`${base}/__tippen/test/store-suite?prefix=${prefix}`, { method: 'POST' });
  const body = await res.text();
  check(res.status === 200, `store suite answered ${res.status}: ${body}`);
  const answer = JSON.parse(body);
  check(answer.passed === true && answer.prefix === prefix, `store suite answered ${body}`);
  console.log(`ok store suite: run_store_suite passed on Durable Object storage (prefix ${prefix})`);
}

async function post(path, key, body) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': key },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const update = (inviteId, state) => (m) => m.type === 'VIDEO_INVITE_UPDATE' && m.inviteId === inviteId && m.state === state;

async function visitorChannel() {
  const v1 = unique('chan');
  const v2 = unique('chan_other');
  await track('pk_a', v1);
  await track('pk_a', v2);
  const board = await dashboard('sk_a');
  await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  const tab1 = await visitorSocket('pk_a', v1);
  const tab2 = await visitorSocket('pk_a', v1);
  const other = await visitorSocket('pk_a', v2);
  await sleep(200);
  check(tab1.messages.length === 0, `a socket without an open invite got a hello: ${JSON.stringify(tab1.messages)}`);

  // Pushed at once to every tab; the dashboard hears sent, then delivered once.
  const inviteId = unique('inv');
  const started = Date.now();
  const sent = await post('/api/send-video-invite', 'sk_a', { visitorId: v1, inviteId, guestUrl: 'https://video.example/guest/1', invitedBy: 'Alice' });
  check(sent.status === 200 && sent.body.success === true, `send-video-invite answered ${sent.status} ${JSON.stringify(sent.body)}`);
  const pushed = await tab1.waitFor('VIDEO_INVITE on tab 1', (m) => m.type === 'VIDEO_INVITE', 2000);
  const latency = pushed.at - started;
  check(pushed.value.inviteId === inviteId && pushed.value.guestUrl === 'https://video.example/guest/1' && pushed.value.invitedBy === 'Alice' && pushed.value.expiresIn > 0, `VIDEO_INVITE ${JSON.stringify(pushed.value)}`);
  await tab2.waitFor('VIDEO_INVITE on tab 2', (m) => m.type === 'VIDEO_INVITE', 2000);
  await board.waitFor('VIDEO_INVITE_UPDATE sent', update(inviteId, 'sent'), 2000);
  await board.waitFor('VIDEO_INVITE_UPDATE delivered', update(inviteId, 'delivered'), 2000);

  // Answered on tab 1: the reply there, the update on tab 2 only, the dashboard hears it.
  tab1.send({ type: 'INVITE_ACCEPTED', inviteId });
  await tab1.waitFor('the reply accepted', update(inviteId, 'accepted'), 2000);
  await tab2.waitFor('the update accepted on the other tab', update(inviteId, 'accepted'), 2000);
  await board.waitFor('VIDEO_INVITE_UPDATE accepted', update(inviteId, 'accepted'), 2000);
  await sleep(300);
  check(tab1.count(update(inviteId, 'accepted')) === 1, 'the answering tab got the update twice');
  check(board.count(update(inviteId, 'delivered')) === 1, 'two tabs delivered the invite twice');

  // Nonsense gets an ERROR on the socket, which stays open.
  tab1.send({ type: 'INVITE_DECLINED', inviteId });
  await tab1.waitFor('ERROR for declining an accepted invite', (m) => m.type === 'ERROR' && /accepted/.test(m.error), 2000);
  tab1.send('not json');
  await tab1.waitFor('ERROR for text that is not JSON', (m) => m.type === 'ERROR' && !/accepted/.test(m.error), 2000);
  check(other.messages.length === 0, `another visitor's socket heard ${JSON.stringify(other.messages)}`);

  // A socket opened after an invite gets it in its hello (which delivers it); a cancel
  // reaches it as an update.
  other.close();
  await sleep(300);
  const late = unique('inv');
  await post('/api/send-video-invite', 'sk_a', { visitorId: v2, inviteId: late, guestUrl: 'https://video.example/guest/2' });
  await board.waitFor('VIDEO_INVITE_UPDATE sent', update(late, 'sent'), 2000);
  await sleep(300);
  check(board.count(update(late, 'delivered')) === 0, 'delivered with no socket open');
  const tab3 = await visitorSocket('pk_a', v2);
  const hello = await tab3.waitFor('VIDEO_INVITE hello', (m) => m.type === 'VIDEO_INVITE', 2000);
  check(hello.value.inviteId === late, `hello ${JSON.stringify(hello.value)}`);
  await board.waitFor('VIDEO_INVITE_UPDATE delivered by the hello', update(late, 'delivered'), 2000);
  const cancelled = await post('/api/invites/cancel', 'sk_a', { visitorId: v2, inviteId: late });
  check(cancelled.status === 200 && cancelled.body.state === 'cancelled', `cancel answered ${JSON.stringify(cancelled)}`);
  await tab3.waitFor('VIDEO_INVITE_UPDATE cancelled', update(late, 'cancelled'), 2000);

  // Refusals are plain HTTP answers: unknown key (Worker), no key (Worker), no visitorId (object).
  for (const [path, status] of [
    [`/ws/visitor?apiKey=nope&visitorId=${v1}`, 403],
    [`/ws/visitor?visitorId=${v1}`, 401],
    ['/ws/visitor?apiKey=pk_a', 400],
  ]) {
    const got = await refusedWith(path);
    check(got === status, `${path} answered ${got}, expected ${status}`);
  }
  for (const s of [board, tab1, tab2, tab3]) s.close();
  console.log(`ok visitor channel: push to two tabs in ${latency} ms, delivered once, answered on the socket, other tab updated, hello, cancel, refusals 403/401/400`);
}

/**
 * A stand-in video provider (CustomerConnect's `POST /create-session`) on
 * TIPPEN_VIDEO_PROVIDER_PORT; the Durable Object reaches it with worker::Fetch.
 */
async function videoCall() {
  const port = Number(process.env.TIPPEN_VIDEO_PROVIDER_PORT ?? 8805);
  const seen = [];
  let mode = 'ok';
  const provider = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, body: body ? JSON.parse(body) : null });
      if (mode === 'fail') {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end('{"success":false,"error":"down"}');
        return;
      }
      const n = seen.length;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ success: true, sessionId: `s${n}`, roomId: `r${n}`, urls: { host: `https://video.example/host/s${n}`, guest: `https://video.example/guest/s${n}` } }));
    });
  });
  await new Promise((r) => provider.listen(port, '127.0.0.1', r));
  try {
    const id = unique('call');
    await track('pk_a', id);
    const tab = await visitorSocket('pk_a', id);
    const call = await post('/api/video-call', 'sk_a', { visitorId: id, invitedBy: 'Alice' });
    check(call.status === 200, `video-call answered ${call.status} ${JSON.stringify(call.body)}`);
    check(call.body.hostUrl === 'https://video.example/host/s1' && call.body.guestUrl === 'https://video.example/guest/s1' && call.body.state === 'sent', `video-call answered ${JSON.stringify(call.body)}`);
    check(seen.length === 1 && seen[0].method === 'POST' && seen[0].url === '/create-session', `the provider saw ${JSON.stringify(seen)}`);
    check(seen[0].body.hostName === 'Alice' && seen[0].body.guestName === 'Visitor' && seen[0].body.isAdmin === true, `the provider was asked ${JSON.stringify(seen[0].body)}`);
    const pushed = await tab.waitFor('VIDEO_INVITE with the provider\'s guest URL', (m) => m.type === 'VIDEO_INVITE', 2000);
    check(pushed.value.guestUrl === 'https://video.example/guest/s1' && pushed.value.inviteId === call.body.inviteId, `pushed ${JSON.stringify(pushed.value)}`);
    // A retry with the invite id creates no second session.
    const retry = await post('/api/video-call', 'sk_a', { visitorId: id, inviteId: call.body.inviteId });
    check(retry.status === 200 && retry.body.hostUrl === call.body.hostUrl && seen.length === 1, `retry answered ${JSON.stringify(retry)} after ${seen.length} sessions`);
    // A failing provider is a 502 naming it; nothing changes.
    mode = 'fail';
    const other = unique('call');
    await track('pk_a', other);
    const failed = await post('/api/video-call', 'sk_a', { visitorId: other });
    check(failed.status === 502 && typeof failed.body.error === 'string', `a failing provider answered ${JSON.stringify(failed)}`);
    tab.close();
    console.log(`ok video call: session created through worker::Fetch (${seen.length} provider requests), invite pushed with its guest URL, retry idempotent, provider failure 502`);
  } finally {
    provider.close();
  }
}

/**
 * Support triggers: an error burst raises SUPPORT_ALERT on the dashboard and one Slack
 * notification, sent by the Durable Object with worker::Fetch to a stand-in webhook on
 * TIPPEN_SLACK_PORT.
 */
async function slack() {
  const port = Number(process.env.TIPPEN_SLACK_PORT ?? 8806);
  const received = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ at: Date.now(), url: req.url, body: JSON.parse(body) });
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise((r) => receiver.listen(port, '127.0.0.1', r));
  try {
    const board = await dashboard('sk_a');
    await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
    const userId = unique('user');
    const now = Date.now();
    const sentAt = now;
    const events = [0, 1, 2, 3].map((i) => ({ type: 'error', message: `boom ${i}`, route: '/settings', timestamp: now + i }));
    const answer = await post('/api/track/user-activity', 'pk_a', { userId, userEmail: 'stuck@example.com', events });
    check(answer.status === 200 && answer.body.stored === 4, `user-activity answered ${JSON.stringify(answer)}`);
    await board.waitFor('SUPPORT_ALERT', (m) => m.type === 'SUPPORT_ALERT' && JSON.stringify(m).includes(userId), 3000);
    for (let i = 0; i < 50 && received.length === 0; i++) await sleep(100);
    check(received.length === 1, `the Slack webhook got ${received.length} requests`);
    check(received[0].url === '/hook' && JSON.stringify(received[0].body).includes('stuck@example.com'), `Slack got ${JSON.stringify(received[0])}`);
    // A second burst within the cooldown alerts no second time on Slack.
    await post('/api/track/user-activity', 'pk_a', { userId, events });
    await sleep(1000);
    check(received.length === 1, `a second burst within the cooldown reached Slack (${received.length} requests)`);
    board.close();
    console.log(`ok support + Slack: SUPPORT_ALERT on the dashboard, one Slack message through worker::Fetch ${received[0].at - sentAt} ms after the activity batch was posted, cooldown respected`);
  } finally {
    receiver.close();
  }
}

/**
 * Enrichment: a stand-in IPinfo (`GET /<ip>`, Bearer token) on TIPPEN_ENRICHMENT_PORT, which
 * the Worker runs with TIPPEN_ENRICHMENT_PROVIDER=ipinfo and TIPPEN_ENRICHMENT_API_KEY=test_token.
 * wrangler dev --local passes a client-sent CF-Connecting-IP through, so the page views come
 * "from" a public address. A page view of site a → its dashboard gets VISITOR_UPDATE with the
 * stand-in's company (the tracking answer does not wait for the slow stand-in); a visitor of
 * site b from the same address is served from the shared KV cache with no further provider
 * request, and each site's /api/stats counts its part.
 */
async function enrichment() {
  const port = Number(process.env.TIPPEN_ENRICHMENT_PORT ?? 8822);
  const providerDelayMs = 500;
  const seen = [];
  const provider = createServer((req, res) => {
    const ip = decodeURIComponent(req.url.slice(1));
    const request = { at: Date.now(), url: req.url, ip, authorization: req.headers.authorization };
    seen.push(request);
    setTimeout(() => {
      request.answeredAt = Date.now();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({
        ip, city: 'Zurich', region: 'Zurich', country: 'CH', org: 'AS64500 Stand-in Networks',
        company: { name: 'Stand-in Corp', domain: 'standin.example', type: 'business' },
      }));
    }, providerDelayMs);
  });
  await new Promise((r) => provider.listen(port, '127.0.0.1', r));
  try {
    const rnd = () => 1 + Math.floor(Math.random() * 250);
    // 9.0.0.0/8 is globally reachable (not special-purpose): the core looks it up.
    const ip = `9.${rnd()}.${rnd()}.${rnd()}`;
    const from = { 'CF-Connecting-IP': ip };

    const stats = async (secret) => {
      const res = await fetch(`${base}/api/stats?apiKey=${secret}`);
      const body = await res.text();
      check(res.status === 200, `GET /api/stats answered ${res.status} ${body}`);
      return JSON.parse(body);
    };
    const before = { a: await stats('sk_a'), b: await stats('sk_b') };

    const boardA = await dashboard('sk_a');
    await boardA.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
    const first = unique('enrich');
    const sentAt = Date.now();
    await track('pk_a', first, { headers: from });
    const answeredAt = Date.now();
    const enriched = await boardA.waitFor(
      'VISITOR_UPDATE with the stand-in company',
      (m) => m.type === 'VISITOR_UPDATE' && m.visitor?.visitorId === first && m.visitor.company === 'Stand-in Corp',
      5000,
    );
    check(seen.length === 1 && seen[0].ip === ip, `the provider saw ${JSON.stringify(seen)} (is CF-Connecting-IP passed through?)`);
    check(seen[0].authorization === 'Bearer test_token', `the provider got authorization ${seen[0].authorization}`);
    check(answeredAt < seen[0].answeredAt, `/track/visitor answered ${answeredAt - seen[0].answeredAt} ms after the provider: it waited for the lookup`);
    check(enriched.value.event === 'enriched' && enriched.value.visitor.enrichmentSource === 'provider', `enriched visitor ${JSON.stringify(enriched.value)}`);
    check(enriched.value.visitor.companyDomain === 'standin.example', `enriched visitor has no domain: ${JSON.stringify(enriched.value)}`);

    // Site b, same address: the shared cache answers at once, no provider request.
    const second = unique('enrich');
    await track('pk_b', second, { headers: from });
    const onB = (await visitors('sk_b')).visitors.find((v) => v.visitorId === second);
    check(onB && onB.company === 'Stand-in Corp' && onB.enrichmentSource === 'cache' && onB.isCached === true, `site b listed ${JSON.stringify(onB)}`);
    await sleep(providerDelayMs + 200);
    check(seen.length === 1, `the provider was asked ${seen.length} times for one address`);

    // Counted since the start of this check (the sites may have stats from earlier steps).
    const after = { a: await stats('sk_a'), b: await stats('sk_b') };
    const delta = (site, field) => after[site][field] - before[site][field];
    const a = { creditsUsed: delta('a', 'creditsUsed'), cacheMisses: delta('a', 'cacheMisses') };
    const b = { cacheHits: delta('b', 'cacheHits'), creditsSavedByCache: delta('b', 'creditsSavedByCache'), creditsUsed: delta('b', 'creditsUsed') };
    check(a.creditsUsed === 1 && a.cacheMisses === 1, `site a stats ${JSON.stringify(before.a)} -> ${JSON.stringify(after.a)}`);
    check(b.cacheHits === 1 && b.creditsSavedByCache === 1 && b.creditsUsed === 0, `site b stats ${JSON.stringify(before.b)} -> ${JSON.stringify(after.b)}`);
    boardA.close();
    console.log(`ok enrichment: /track/visitor answered in ${answeredAt - sentAt} ms (provider stand-in takes ${providerDelayMs} ms); VISITOR_UPDATE (enriched) with the stand-in's company ${enriched.at - sentAt} ms after the page view, 1 provider request through worker::Fetch from the client-sent CF-Connecting-IP; site b's visitor from the shared KV cache with 0 further requests; stats a creditsUsed=${a.creditsUsed} cacheMisses=${a.cacheMisses}, b cacheHits=${b.cacheHits} creditsUsed=${b.creditsUsed}`);
  } finally {
    provider.close();
  }
}

const commands = {
  enrichment,
  slack,
  'video-call': videoCall,
  'visitor-channel': visitorChannel,
  alarm,
  isolation,
  'restart-before': restartBefore,
  'restart-after': restartAfter,
  'store-suite': storeSuite,
};
const command = commands[process.argv[2]];
if (!command) fail(`usage: node tests/checks.mjs ${Object.keys(commands).join('|')}`);
command().then(
  () => process.exit(0),
  (e) => fail(e.stack ?? String(e)),
);
