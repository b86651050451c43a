// Checks of the Workers host that the shared conformance suite (tippen-conformance, which
// also covers the visitor channel, video calls, Slack and enrichment against its own
// stand-ins) does not make, against a running `wrangler dev` (scripts/test-worker.sh starts it):
//
//   node tests/checks.mjs alarm            removal by the Durable Object alarm, seen on a real
//                                          dashboard WebSocket, with nothing else happening
//   node tests/checks.mjs isolation        two sites, two Durable Objects, nothing shared
//   node tests/checks.mjs restart-before   a visitor (and a dashboard's seq) before a restart
//   node tests/checks.mjs restart-after    ... listed again after wrangler restarted
//   node tests/checks.mjs store-suite      tippen_core::testkit::run_store_suite on DO storage
//   node tests/checks.mjs history-suite    tippen_core::testkit::run_history_suite on D1
//   node tests/checks.mjs history          three pages and an exit beacon: one visit with those
//                                          pages, in order, and the place from the `cf` object
//
// Environment: TIPPEN_BASE_URL, TIPPEN_VISIBLE_GRACE_MS, TIPPEN_LEAVE_LINGER_MS, TIPPEN_STATE_FILE
// (restart; history: where the visitor id goes), TIPPEN_PERSIST_DIR (isolation: where wrangler
// keeps Durable Object storage), TIPPEN_CF_COUNTRY and TIPPEN_CF_CITY (history: the place the
// `cf` object of wrangler's requests carries).
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';

const base = (process.env.TIPPEN_BASE_URL ?? 'http://127.0.0.1:8801').replace(/\/$/, '');
const wsBase = base.replace(/^http/, 'ws');
const visibleGraceMs = Number(process.env.TIPPEN_VISIBLE_GRACE_MS ?? 2000);
const leaveLingerMs = Number(process.env.TIPPEN_LEAVE_LINGER_MS ?? 2000);

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

const unique = (prefix) => `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

async function track(key, visitorId, { event = 'pageview', visibility = 'visible', headers = {}, url = 'https://example.com/pricing' } = {}) {
  const res = await fetch(`${base}/track/visitor`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': key, ...headers },
    body: JSON.stringify({
      event,
      visitor: {
        visitorId,
        url,
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
  const board = await dashboard('sk_a_0123456789abcdefghij');
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
  const list = await visitors('sk_a_0123456789abcdefghij');
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
  const boardB = await dashboard('sk_b_0123456789abcdefghij');
  await boardB.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  await track('pk_a', id);
  const a = await visitors('sk_a_0123456789abcdefghij');
  const b = await visitors('sk_b_0123456789abcdefghij');
  check(a.visitors.some((v) => v.visitorId === id), 'site A does not list its visitor');
  check(!b.visitors.some((v) => v.visitorId === id), "site B lists site A's visitor");
  // Site A's secret does not open site B's data and vice versa: each key finds its own site.
  await new Promise((r) => setTimeout(r, 300));
  check(!boardB.messages.some((m) => JSON.stringify(m.value).includes(id)), "site B's dashboard heard site A's visitor");
  await track('pk_b', id, { visibility: 'hidden' });
  const a2 = await visitors('sk_a_0123456789abcdefghij');
  const b2 = await visitors('sk_b_0123456789abcdefghij');
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
  const list = await visitors('sk_a_0123456789abcdefghij');
  check(list.visitors.some((v) => v.visitorId === id), 'the visitor is not listed before the restart');
  writeFileSync(process.env.TIPPEN_STATE_FILE, JSON.stringify({ id, seq: list.seq }));
  console.log(`ok restart (before): ${id} listed, seq ${list.seq}`);
}

async function restartAfter() {
  const { id, seq } = JSON.parse(readFileSync(process.env.TIPPEN_STATE_FILE, 'utf8'));
  const list = await visitors('sk_a_0123456789abcdefghij');
  check(list.visitors.some((v) => v.visitorId === id), `${id} is not listed after the restart: ${JSON.stringify(list)}`);
  check(list.seq >= seq, `the sequence went back from ${seq} to ${list.seq}`);
  const board = await dashboard('sk_a_0123456789abcdefghij');
  const hello = await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  check(hello.value.visitors.some((v) => v.visitorId === id), 'INITIAL_VISITORS after the restart misses the visitor');
  // The restarted object still works: a heartbeat of the same visitor is an update, not a new visit.
  await track('pk_a', id, { event: 'heartbeat', visibility: 'hidden' });
  const again = await visitors('sk_a_0123456789abcdefghij');
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

async function historySuite() {
  const prefix = unique('hsuite');
  const res = await fetch(`${base}/__tippen/test/history-suite?prefix=${prefix}`, { method: 'POST' });
  const body = await res.text();
  check(res.status === 200, `history suite answered ${res.status}: ${body}`);
  const answer = JSON.parse(body);
  check(answer.passed === true && answer.prefix === prefix, `history suite answered ${body}`);
  console.log(`ok history suite: run_history_suite passed on D1 (prefix ${prefix})`);
}

async function history() {
  const secret = 'sk_a_0123456789abcdefghij';
  const id = unique('visit');
  const board = await dashboard(secret);
  await board.waitFor('INITIAL_VISITORS', (m) => m.type === 'INITIAL_VISITORS', 5000);
  const paths = ['/', '/pricing', '/docs'];
  for (const path of paths) {
    await track('pk_a', id, { url: `https://example.com${path}?utm_source=checks` });
  }
  const res = await fetch(`${base}/track/leave`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify({ apiKey: 'pk_a', visitorId: id, tabId: 'tab_1' }),
  });
  check(res.status === 200, `POST /track/leave answered ${res.status}`);
  // The visit is written before the visitor is removed: once the dashboard hears the removal,
  // the visit is in D1.
  const removed = await board.waitFor(
    'VISITOR_REMOVED after the exit beacon',
    (m) => m.type === 'VISITOR_REMOVED' && m.visitorId === id,
    leaveLingerMs + 5000,
  );
  check(removed.value.reason === 'left', `removal reason ${removed.value.reason}, expected left`);
  board.close();
  const listed = await fetch(`${base}/api/visits?visitor=${encodeURIComponent(id)}`, { headers: { 'X-Tippen-API-Key': secret } });
  const body = await listed.text();
  check(listed.status === 200, `GET /api/visits answered ${listed.status} ${body}`);
  const { visits } = JSON.parse(body);
  check(visits.length === 1, `expected one visit of ${id}, got ${visits.length}: ${body}`);
  const [visit] = visits;
  const seen = visit.pages.map((p) => p.path);
  check(JSON.stringify(seen) === JSON.stringify(paths), `pages ${JSON.stringify(seen)}, expected ${JSON.stringify(paths)}`);
  check(visit.endReason === 'left', `end reason ${visit.endReason}`);
  check(visit.utm?.source === 'checks', `utm ${JSON.stringify(visit.utm)}`);
  const want = { country: process.env.TIPPEN_CF_COUNTRY, city: process.env.TIPPEN_CF_CITY };
  if (want.country) {
    check(
      visit.place?.country === want.country && visit.place?.city === want.city,
      `place ${JSON.stringify(visit.place)}, expected ${JSON.stringify(want)} (the request's cf object)`,
    );
  }
  const one = await fetch(`${base}/api/visits/${encodeURIComponent(visit.visitId)}`, { headers: { 'X-Tippen-API-Key': secret } });
  check(one.status === 200, `GET /api/visits/{id} answered ${one.status}`);
  check((await one.json()).visitId === visit.visitId, 'the visit by id is another visit');
  if (process.env.TIPPEN_STATE_FILE) writeFileSync(process.env.TIPPEN_STATE_FILE, JSON.stringify({ id, visitId: visit.visitId }));
  console.log(`ok history: one visit ${visit.visitId} with pages ${seen.join(' ')} (place ${JSON.stringify(visit.place)}, ${visit.durationMs} ms)`);
}

const commands = {
  alarm,
  isolation,
  'restart-before': restartBefore,
  'restart-after': restartAfter,
  'store-suite': storeSuite,
  'history-suite': historySuite,
  history,
};
const command = commands[process.argv[2]];
if (!command) fail(`usage: node tests/checks.mjs ${Object.keys(commands).join('|')}`);
command().then(
  () => process.exit(0),
  (e) => fail(e.stack ?? String(e)),
);
