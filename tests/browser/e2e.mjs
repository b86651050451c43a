// End-to-end test of tippen's tracker and dashboard in headless Chromium.
//
// Needs a running tippen server (the caller starts it with short presence timings) and
//   TIPPEN_BASE_URL          e.g. http://127.0.0.1:18787
//   TIPPEN_KEY               a legacy key: tracks and opens the dashboard
//   TIPPEN_ARTIFACTS         folder for screenshots and logs (default <repo>/test-artifacts/browser)
//   TIPPEN_VISIBLE_GRACE_MS  the server's visible-tab grace (default 3000)
//   TIPPEN_HIDDEN_GRACE_MS   the server's hidden-tab grace (default 8000)
//   TIPPEN_CHROMIUM          the browser (default /usr/bin/chromium)
//   TIPPEN_INVITE_TTL_MS     the server's invite expiry (default 4000)
//   TIPPEN_VIDEO_PROVIDER_PORT  where this test serves a stand-in video provider, which the
//                            server must use as http://127.0.0.1:<port>/video (default 18790)
//   TIPPEN_LEAVE_LINGER_MS   the server's leave linger (default 2000, the core's default)
//   TIPPEN_SITE_PORT         where this test serves a small customer site of another origin
//                            that embeds the tracker from the server (default 18791)
//
// Context A is the site owner's dashboard, context B a visitor on the demo store. Exit code 0
// when every step passed, 1 otherwise (with screenshots of both pages in TIPPEN_ARTIFACTS).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.TIPPEN_BASE_URL || 'http://127.0.0.1:18787').replace(/\/+$/, '');
const KEY = process.env.TIPPEN_KEY || '';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'browser'));
const VISIBLE_GRACE = Number(process.env.TIPPEN_VISIBLE_GRACE_MS || 3000);
const HIDDEN_GRACE = Number(process.env.TIPPEN_HIDDEN_GRACE_MS || 8000);
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const HEARTBEAT_MS = 1000;
const INVITE_TTL = Number(process.env.TIPPEN_INVITE_TTL_MS || 4000);
const PROVIDER_PORT = Number(process.env.TIPPEN_VIDEO_PROVIDER_PORT || 18790);
const PROVIDER = `http://127.0.0.1:${PROVIDER_PORT}`;
const LINGER = Number(process.env.TIPPEN_LEAVE_LINGER_MS || 2000);
const SITE_PORT = Number(process.env.TIPPEN_SITE_PORT || 18791);
// Another origin than the server's (another host name and port), as customers embed it.
const SITE = `http://localhost:${SITE_PORT}`;
// A real close must reach dashboards within this (the linger, then the sweep).
const CLOSE_TO_REMOVAL_MS = 2500;
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WATCHDOG_MS = 150000;

const timings = {};
const problems = []; // uncaught page errors: a failure even when every step passed
const consoleLines = [];
let passed = 0;
let failed = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now();
const say = (line) => process.stdout.write(line + '\n');

class StepFailure extends Error {}
function assert(cond, message) {
  if (!cond) throw new StepFailure(message);
}

let browser;
let dash; // context A's page
const visitorPages = []; // context B's pages, for screenshots

// What the dashboard shows, for assertions and failure messages.
function dashboardState(page = dash) {
  return page.evaluate(() => ({
    connection: (document.getElementById('connection-state') || {}).textContent,
    count: (document.getElementById('visitor-count') || {}).textContent,
    rows: Array.from(document.querySelectorAll('#visitors tr[data-visitor-id]')).map((tr) => ({
      id: tr.getAttribute('data-visitor-id'),
      status: (tr.querySelector('.status') || {}).textContent,
      pageViews: (tr.querySelector('.page-views') || {}).textContent,
      tabs: Array.from(tr.querySelectorAll('.pages [data-tab-id]')).map((t) => ({
        tabId: t.getAttribute('data-tab-id'), visibility: t.getAttribute('data-visibility'), text: t.textContent,
      })),
    })),
    log: Array.from(document.querySelectorAll('#event-log li')).slice(0, 8).map((li) => li.textContent),
  }));
}

// Polls fn in the dashboard until it returns a truthy value; fails with message and what the
// dashboard showed. Returns [value, elapsed ms].
async function waitInDashboard(fn, arg, timeoutMs, message, page = dash) {
  const t0 = now();
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: Math.max(1, timeoutMs), polling: 25 });
    return [await handle.jsonValue(), now() - t0];
  } catch (e) {
    if (!/Timeout/i.test(String(e && e.message))) throw e;
    let state = '(unavailable)';
    try { state = JSON.stringify(await dashboardState(page)); } catch { /* page gone */ }
    throw new StepFailure(`${message} (waited ${now() - t0} ms); dashboard shows: ${state}`);
  }
}

async function step(name, fn) {
  const t0 = now();
  say(`-- ${name}`);
  try {
    await fn();
    passed += 1;
    say(`ok   ${name} (${now() - t0} ms)`);
  } catch (e) {
    failed += 1;
    say(`FAIL ${name}: ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
    if (e && typeof e === 'object') e.reported = true;
    throw e;
  }
}

function watch(page, label) {
  page.on('console', (m) => consoleLines.push(`[${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (err) => {
    problems.push(`[${label}] uncaught: ${err.message}`);
    consoleLines.push(`[${label}] pageerror: ${err.stack || err.message}`);
  });
}

async function screenshots(suffix) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shots = [];
  const take = async (page, name) => {
    if (!page || page.isClosed()) return;
    const file = path.join(ARTIFACTS, `${name}-${suffix}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
      shots.push(file);
    } catch (e) {
      say(`(screenshot of ${name} failed: ${e.message})`);
    }
  };
  await take(dash, 'dashboard');
  for (let i = 0; i < visitorPages.length; i++) await take(visitorPages[i], `demo-tab${i + 1}`);
  return shots;
}

// A stand-in of the video provider (the predecessor's API shape): POST /video/create-session
// with {hostName, guestName, isAdmin} -> {success, sessionId, roomId, urls: {host, guest}}; the
// host and guest URLs are small pages it serves itself, so the call frame loads for real.
const sessions = [];
function startProvider() {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/video/create-session') {
      let raw = '';
      req.on('data', (c) => { raw += c; });
      req.on('end', () => {
        let body;
        try { body = JSON.parse(raw); } catch { body = { unparsable: raw }; }
        const n = sessions.length + 1;
        const session = {
          request: body,
          sessionId: `sess_${n}`,
          host: `${PROVIDER}/host/sess_${n}`,
          guest: `${PROVIDER}/guest/sess_${n}`,
        };
        sessions.push(session);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({
          success: true, sessionId: session.sessionId, roomId: `room_${n}`,
          urls: { host: session.host, guest: session.guest },
        }));
      });
      return;
    }
    const m = /^\/(host|guest)\/(sess_\d+)$/.exec(req.url || '');
    if (req.method === 'GET' && m) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>${m[1]} ${m[2]}</title><h1 id="call">${m[1]} of ${m[2]}</h1>`);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(PROVIDER_PORT, '127.0.0.1', () => resolve(server));
  });
}
let provider;

// A small multi-page customer site on another origin, embedding the tracker from the server
// the way the README tells customers to: /a and /b link to each other (full page loads).
function sitePage(name, other) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Customer site ${name}</title></head>
<body>
<h1 id="page">${name}</h1>
<a id="to-${other}" href="/${other}">to ${other}</a>
<script src="${BASE}/tippen-tracker.js" data-tippen-api-key="${KEY}"
        data-tippen-heartbeat-ms="${HEARTBEAT_MS}" async></script>
</body></html>`;
}
// The predecessor's documented embed ("Tracking Script Deployment, Option 1: Self-Hosted"),
// verbatim but for its three placeholders: the script on the customer's CDN (another origin
// than the site and than the tippen server), the key, and data-tippen-backend naming the
// server. Its troubleshooting reads window.TippenTracker, and its host pages listened for a
// TIPPEN_VIDEO_INVITE window message.
const CDN = `http://127.0.0.1:${SITE_PORT}`; // another host name than SITE: another origin
const legacySnippet = () => `<script
  src="${CDN}/cdn/tippen-tracker.js"
  data-tippen-api-key="${KEY}"
  data-tippen-backend="${BASE}"
></script>`;
const LEGACY_PAGE = () => `<!doctype html>
<html><head><meta charset="utf-8"><title>Customer site (predecessor's snippet)</title></head>
<body>
<h1>abc.com</h1>
<script>
  window.__tippenMessages = [];
  window.addEventListener('message', (e) => {
    if (e.data && e.data.type === 'TIPPEN_VIDEO_INVITE') window.__tippenMessages.push({ data: e.data, origin: e.origin });
  });
</script>
${legacySnippet()}
</body></html>`;
let cdnTracker = null; // the server's tracker, as a customer would copy it to their CDN
const cdnRequests = []; // anything but the script reaching the CDN (a tracker posting there)
function startSite() {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/cdn/tippen-tracker.js') {
      res.writeHead(200, { 'content-type': 'application/javascript; charset=utf-8' });
      res.end(cdnTracker);
      return;
    }
    if (req.method === 'GET' && req.url === '/legacy') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(LEGACY_PAGE());
      return;
    }
    if (req.url && (req.url.startsWith('/track') || req.url.startsWith('/ws'))) cdnRequests.push(`${req.method} ${req.url}`);
    const m = /^\/(a|b)(\?.*)?$/.exec(req.url || '');
    if (req.method === 'GET' && m) {
      // No Cache-Control: no-store, so the page may enter the back/forward cache.
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(sitePage(m[1], m[1] === 'a' ? 'b' : 'a'));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(SITE_PORT, '127.0.0.1', () => resolve(server));
  });
}
let site;

async function main() {
  assert(KEY, 'TIPPEN_KEY is not set (a legacy key of the running server)');
  assert(VISIBLE_GRACE + HEARTBEAT_MS + 1000 < HIDDEN_GRACE,
    `hidden grace ${HIDDEN_GRACE} ms must exceed visible grace ${VISIBLE_GRACE} ms by more than 2 s to tell them apart`);

  // The server must be up before anything else makes sense.
  let health;
  try {
    const res = await fetch(BASE + '/');
    health = `${res.status} ${(await res.text()).slice(0, 40)}`;
  } catch (e) {
    throw new StepFailure(`no tippen server at ${BASE}: ${e.cause ? e.cause.code || e.cause.message : e.message}`);
  }
  say(`server ${BASE}: GET / -> ${health}`);
  provider = await startProvider();
  say(`stand-in video provider ${PROVIDER}/video`);
  cdnTracker = await (await fetch(`${BASE}/tippen-tracker.js`)).text();
  site = await startSite();
  say(`customer site of another origin ${SITE}/a, /b, /legacy (the tracker from ${CDN}/cdn)`);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  say(`chromium ${browser.version()}`);
  const ctxA = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const ctxB = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  dash = await ctxA.newPage();
  watch(dash, 'dashboard');
  // Every frame of the dashboard's socket, to check the server's sequence numbers.
  const framesIn = [];
  const framesOut = [];
  const socketUrls = [];
  dash.on('websocket', (ws) => {
    socketUrls.push(ws.url());
    ws.on('framereceived', (f) => framesIn.push(String(f.payload)));
    ws.on('framesent', (f) => framesOut.push(String(f.payload)));
  });

  const demoUrl = `${BASE}/demo?apiKey=${encodeURIComponent(KEY)}&heartbeatMs=${HEARTBEAT_MS}`;
  let visitorId;
  let tab1;
  let tab2;
  let b1;
  let b2;

  await step('1. dashboard connects', async () => {
    const t0 = now();
    await dash.goto(`${BASE}/dashboard?apiKey=${encodeURIComponent(KEY)}`);
    const [, ms] = await waitInDashboard(
      () => (document.getElementById('connection-state') || {}).textContent === 'connected', null, 5000,
      '#connection-state never read "connected"');
    timings.dashboardConnectedMs = now() - t0;
    void ms;
    // The page took the key out of its address (kept in localStorage instead).
    assert(!/apiKey=/.test(dash.url()), `the dashboard's address still holds the key: ${dash.url()}`);
    // The socket opened with a single-use ticket: the secret key is in no socket URL.
    assert(socketUrls.length >= 1 && socketUrls.every((u) => /[?&]ticket=/.test(u) && !/apiKey=/.test(u)),
      `the dashboard's socket URLs ${JSON.stringify(socketUrls)} carry the key, not a ticket`);
  });

  await step('2. a visitor opens the demo and appears as exactly one new row within 3 s', async () => {
    const before = (await dashboardState()).rows.map((r) => r.id);
    b1 = await ctxB.newPage();
    visitorPages.push(b1);
    watch(b1, 'demo-tab1');
    const t0 = now();
    await b1.goto(demoUrl);
    await b1.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 })
      .catch(() => { throw new StepFailure('window.tippen.visitorId never appeared on the demo page (tracker not running?)'); });
    ({ visitorId, tabId: tab1 } = await b1.evaluate(() => ({ visitorId: window.tippen.visitorId, tabId: window.tippen.tabId })));
    assert(/^visitor_\d+_[0-9a-z]{9}$/.test(visitorId), `visitor id ${visitorId} has not the form visitor_<ms>_<9 base36>`);
    assert(/^tab_\d+_/.test(tab1), `tab id ${tab1} has not the form tab_<ms>_<random>`);
    await waitInDashboard(
      (id) => !!document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), visitorId,
      3000 - (now() - t0), `no row for ${visitorId} within 3 s of opening the demo`);
    timings.rowAppearedMs = now() - t0;
    const state = await dashboardState();
    const added = state.rows.filter((r) => !before.includes(r.id));
    assert(added.length === 1, `expected exactly one new row, got ${added.length}: ${JSON.stringify(added)}`);
    assert(added[0].id === visitorId, `the new row is ${added[0].id}, not the demo's visitor ${visitorId}`);
    assert(state.count === String(state.rows.length), `#visitor-count says ${state.count} but the table has ${state.rows.length} rows`);
    const row = added[0];
    assert(row.tabs.length === 1 && row.tabs[0].tabId === tab1 && row.tabs[0].visibility === 'visible',
      `expected one visible tab line ${tab1}, got ${JSON.stringify(row.tabs)}`);
    say(`     visitor ${visitorId}, tab ${tab1}`);
  });

  await step('3. SPA navigation to pricing shows in the pages cell within 2 s', async () => {
    const t0 = now();
    await b1.click('#nav-pricing');
    const url = b1.url();
    assert(url.includes('page=pricing'), `the demo's URL after clicking #nav-pricing is ${url}`);
    const [views] = await waitInDashboard(
      ([id, tab]) => {
        const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
        const line = row && row.querySelector(`.pages [data-tab-id="${CSS.escape(tab)}"]`);
        return line && line.textContent.includes('page=pricing') ? row.querySelector('.page-views').textContent : null;
      }, [visitorId, tab1], 2000 - (now() - t0), `the pages cell of ${visitorId} never showed the pricing URL ${url}`);
    timings.pricingShownMs = now() - t0;
    if (Number(views) < 2) say(`     note: page views show ${views} after two pageviews`);
  });

  await step('4. a hidden tab outlives the visible grace', async () => {
    let t0 = now();
    // Headless Chromium keeps every page visible; hide this one the way the browser would.
    await b1.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await waitInDashboard(
      ([id, tab]) => {
        const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
        return !!(row && row.querySelector(`.pages [data-tab-id="${CSS.escape(tab)}"][data-visibility="hidden"]`) &&
          row.querySelector('.status').textContent.trim() === 'idle');
      }, [visitorId, tab1], 2000, `tab ${tab1} never showed data-visibility="hidden" with status idle`);
    timings.hiddenShownMs = now() - t0;

    // Then freeze it as Chrome freezes background tabs: no script runs, so no heartbeat goes out.
    const cdp = await ctxB.newCDPSession(b1);
    try {
      await cdp.send('Debugger.enable');
      const paused = new Promise((resolve) => cdp.once('Debugger.paused', resolve));
      await cdp.send('Debugger.pause');
      let pauseTimer;
      await Promise.race([paused, new Promise((_, reject) => {
        pauseTimer = setTimeout(() => reject(new StepFailure('the demo page never paused')), HEARTBEAT_MS * 3);
      })]).finally(() => clearTimeout(pauseTimer));
      t0 = now(); // the tab's last event reached the server before this
      const margin = Math.min(1500, Math.max(250, (HIDDEN_GRACE - VISIBLE_GRACE - HEARTBEAT_MS) / 2));
      const waitMs = VISIBLE_GRACE + margin;
      say(`     tab frozen; waiting ${waitMs} ms (visible grace ${VISIBLE_GRACE}, hidden grace ${HIDDEN_GRACE})`);
      await sleep(waitMs);
      const state = await dashboardState();
      const row = state.rows.find((r) => r.id === visitorId);
      assert(row, `the visitor was removed ${waitMs} ms after its hidden tab went quiet: hidden tabs must get the hidden grace (${HIDDEN_GRACE} ms)`);
      assert(row.tabs.some((t) => t.tabId === tab1 && t.visibility === 'hidden'),
        `tab ${tab1} is no longer listed as hidden: ${JSON.stringify(row.tabs)}`);
      timings.hiddenQuietMs = now() - t0;
    } finally {
      // Let the tab run again (its heartbeats resume; screenshots need it too).
      await cdp.send('Debugger.resume').catch(() => {});
      await cdp.send('Debugger.disable').catch(() => {});
      await cdp.detach().catch(() => {});
    }
  });

  await step('5. a second tab of the same visitor is a second tab line of one row', async () => {
    b2 = await ctxB.newPage();
    visitorPages.push(b2);
    watch(b2, 'demo-tab2');
    const t0 = now();
    await b2.goto(demoUrl);
    await b2.waitForFunction(() => window.tippen && window.tippen.tabId, null, { timeout: 3000 });
    const ids = await b2.evaluate(() => ({ visitorId: window.tippen.visitorId, tabId: window.tippen.tabId }));
    tab2 = ids.tabId;
    assert(ids.visitorId === visitorId, `the second tab has visitor id ${ids.visitorId}, expected ${visitorId} (localStorage)`);
    assert(tab2 !== tab1, `the second tab reuses tab id ${tab1} (sessionStorage must be per tab)`);
    await waitInDashboard(
      ([id, t1, t2]) => {
        const rows = document.querySelectorAll(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
        if (rows.length !== 1) return false;
        const lines = Array.from(rows[0].querySelectorAll('.pages [data-tab-id]'));
        const got = lines.map((l) => l.getAttribute('data-tab-id') + ':' + l.getAttribute('data-visibility')).sort();
        return JSON.stringify(got) === JSON.stringify([t1 + ':hidden', t2 + ':visible'].sort());
      }, [visitorId, tab1, tab2], 3000 - (now() - t0),
      `expected one row for ${visitorId} with tab lines ${tab1} (hidden) and ${tab2} (visible)`);
    timings.secondTabMs = now() - t0;
    const state = await dashboardState();
    assert(state.rows.filter((r) => r.id === visitorId).length === 1, 'more than one row for the visitor');
    const row = state.rows.find((r) => r.id === visitorId);
    assert(row.status.trim() === 'active', `status is "${row.status}" with a visible tab, expected active`);
    await screenshots('two-tabs');
  });

  await step('5b. the demo keeps its key out of the page addresses it reports', async () => {
    for (const page of [b1, b2]) {
      assert(!/apiKey=/i.test(page.url()), `the demo's address still carries its key: ${page.url()}`);
    }
    const res = await fetch(`${BASE}/api/visitors`, { headers: { 'X-Tippen-API-Key': KEY } });
    const listed = ((await res.json()).visitors || []).find((v) => v.visitorId === visitorId);
    assert(listed, `${visitorId} is not listed`);
    const urls = [listed.url, ...listed.tabs.map((t) => t.url)];
    assert(urls.every((u) => !/apiKey=/i.test(u || '')), `listed page addresses carry the key: ${JSON.stringify(urls)}`);
    const shown = await dash.evaluate(() => Array.from(document.querySelectorAll('#visitors .pages .url'))
      .map((a) => `${a.textContent} ${a.getAttribute('title') || ''} ${a.getAttribute('href') || ''}`));
    assert(shown.every((t) => !/apiKey=/i.test(t)), `the dashboard shows the key in a page address: ${JSON.stringify(shown)}`);
  });

  await step('5c. at 1366 px the visitors table shows Status and the Invite button without horizontal scroll', async () => {
    // A visitor with a long address and a desktop browser (bots get no Invite button).
    const wide = `visitor_${Date.now()}_widetable`;
    const desktop = `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${browser.version()} Safari/537.36`;
    const longUrl = `https://www.example-customer-with-a-long-name.com/products/category/espresso-machines/${'x'.repeat(300)}?utm_source=newsletter&utm_campaign=${'y'.repeat(200)}`;
    const tracked = await fetch(`${BASE}/track/visitor`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': KEY },
      body: JSON.stringify({ event: 'pageview', visitor: { visitorId: wide, tabId: 'tab_wide', url: longUrl, userAgent: desktop }, website: 'www.example-customer-with-a-long-name.com' }),
    });
    assert(tracked.status === 200, `tracking the wide visitor answered ${tracked.status}`);
    const ctxW = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    try {
      const w = await ctxW.newPage();
      watch(w, 'dashboard-1366');
      // The key in the fragment, which no server sees (a fresh context: nothing stored yet).
      await w.goto(`${BASE}/dashboard#apiKey=${encodeURIComponent(KEY)}`);
      const btn = `#visitors tr[data-visitor-id="${wide}"] .invite-button`;
      await waitInDashboard((sel) => { const b = document.querySelector(sel); return !!(b && !b.hidden); }, btn, 5000,
        `no Invite button for ${wide} at 1366 px`, w);
      const layout = await w.evaluate((id) => {
        const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
        const wrap = row.closest('.table-wrap');
        const box = (n) => { const r = n.getBoundingClientRect(); return { left: r.left, right: r.right, width: r.width }; };
        return {
          viewport: window.innerWidth,
          pageScroll: document.documentElement.scrollWidth,
          wrapClient: wrap.clientWidth,
          wrapScroll: wrap.scrollWidth,
          wrap: box(wrap),
          button: box(row.querySelector('.invite-button')),
          status: box(row.querySelector('.status .badge')),
          rows: Array.from(document.querySelectorAll('#visitors tr[data-visitor-id]')).map((tr) => {
            const b = tr.querySelector('.invite-button');
            return { id: tr.getAttribute('data-visitor-id'), status: box(tr.querySelector('.status .badge')), button: b && !b.hidden ? box(b) : null };
          }),
        };
      }, wide);
      timings.table1366 = { wrapClient: layout.wrapClient, wrapScroll: layout.wrapScroll, buttonRight: Math.round(layout.button.right) };
      say(`     1366 px: table ${layout.wrapScroll} px in a ${layout.wrapClient} px card; Invite button ends at ${Math.round(layout.button.right)} px`);
      assert(layout.pageScroll <= layout.viewport, `the page scrolls sideways: ${layout.pageScroll} px wide in a ${layout.viewport} px window`);
      assert(layout.wrapScroll <= layout.wrapClient, `the table is ${layout.wrapScroll} px wide in its ${layout.wrapClient} px card: it scrolls sideways`);
      for (const r of layout.rows) {
        for (const [what, b] of [['status', r.status], ['Invite button', r.button]]) {
          if (!b) continue;
          assert(b.width > 0 && b.right <= layout.wrap.right + 0.5 && b.right <= layout.viewport,
            `the ${what} of ${r.id} ends at ${Math.round(b.right)} px, outside the card (${Math.round(layout.wrap.right)} px) or the window`);
        }
      }
      await w.screenshot({ path: path.join(ARTIFACTS, 'dashboard-1366.png'), fullPage: false }).catch(() => {});
      await w.close();
    } finally {
      await ctxW.close().catch(() => {});
      await fetch(`${BASE}/track/leave?apiKey=${encodeURIComponent(KEY)}`, { method: 'POST', body: JSON.stringify({ visitorId: wide }) });
    }
  });

  await step('6. an invite reaches a (non-bot) visitor, Join opens the call, the dashboard shows accepted', async () => {
    // A separate visitor with a desktop user agent: headless Chromium's own is listed as a bot,
    // and bots get no invite button.
    const ua = `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${browser.version()} Safari/537.36`;
    const ctxC = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: ua });
    try {
      const c = await ctxC.newPage();
      visitorPages.push(c);
      watch(c, 'demo-invitee');
      const visitorSockets = [];
      c.on('websocket', (ws) => { if (ws.url().includes('/ws/visitor')) visitorSockets.push(ws); });
      await c.goto(demoUrl);
      await c.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
      const invitee = await c.evaluate(() => window.tippen.visitorId);
      assert(invitee !== visitorId, 'the invitee shares the first visitor id (contexts must not share storage)');
      const btnSel = `#visitors tr[data-visitor-id="${invitee}"] .invite-button`;
      await waitInDashboard(
        (sel) => { const b = document.querySelector(sel); return !!(b && !b.hidden && !b.disabled); }, btnSel, 3000,
        `no enabled .invite-button for ${invitee}`);
      const sessionsBefore = sessions.length;
      // Record when the popup appears, on the page's clock (same machine as ours).
      await c.evaluate(() => {
        window.__inviteShownAt = null;
        const mo = new MutationObserver(() => {
          if (document.getElementById('tippen-invite') && window.__inviteShownAt == null) {
            window.__inviteShownAt = Date.now();
            mo.disconnect();
          }
        });
        mo.observe(document.body, { childList: true, subtree: true });
      });
      const t0 = now();
      await dash.click(btnSel);
      // The tracker's /ws/visitor socket gets the invite pushed the moment it is sent: the
      // issue's target is the popup within 1 s of the click (the heartbeat is only the fallback).
      // Wait a little longer than that so a miss still reports how late the popup was.
      await c.waitForSelector('#tippen-invite', { state: 'visible', timeout: 2500 })
        .catch(() => { throw new StepFailure(`#tippen-invite did not show within 2500 ms of the click`); });
      const shownAt = await c.evaluate(() => window.__inviteShownAt);
      timings.inviteToPopupMs = (shownAt || now()) - t0;
      say(`     invite popup shown ${timings.inviteToPopupMs} ms after the click`);
      assert(timings.inviteToPopupMs <= 1000, `the popup took ${timings.inviteToPopupMs} ms (limit 1000 ms)`);
      assert(visitorSockets.length >= 1, 'the tracker opened no /ws/visitor socket');
      const inviteId = await c.getAttribute('#tippen-invite', 'data-invite-id');
      assert(/^inv_[0-9a-f]{16}$/.test(inviteId || ''), `#tippen-invite has data-invite-id ${inviteId}`);
      const text = await c.textContent('#tippen-invite');
      assert(text.includes('Admin'), `the popup does not name the inviter "Admin": ${text}`);
      // While the invite is open the dashboard locks the visitor's invite control.
      await waitInDashboard(
        (id) => {
          const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
          const lock = row && row.querySelector('.invite-lock');
          return !!(lock && !lock.hidden && row.querySelector('.invite-button').disabled);
        }, invitee, 2000, `no visible .invite-lock for ${invitee} while its invite is open`);
      const tJoin = now();
      await c.click('#tippen-invite-join');
      await c.waitForSelector('#tippen-call iframe', { state: 'visible', timeout: 1000 })
        .catch(() => { throw new StepFailure('#tippen-call iframe not visible after Join'); });
      // One call to the dashboard's server created the provider's session (POST /api/video-call).
      assert(sessions.length === sessionsBefore + 1, `the provider created ${sessions.length - sessionsBefore} sessions, expected 1`);
      const session = sessions[sessions.length - 1];
      assert(session.request.hostName === 'Admin' && session.request.isAdmin === true,
        `the provider was asked ${JSON.stringify(session.request)}`);
      // The call frame gets only what a call needs, and cannot navigate the customer's page.
      const frameAttrs = await c.$eval('#tippen-call iframe', (f) => ({
        allow: f.getAttribute('allow'), sandbox: f.getAttribute('sandbox'), referrer: f.referrerPolicy,
      }));
      assert(frameAttrs.allow === 'camera; microphone; autoplay; fullscreen',
        `the call frame is allowed "${frameAttrs.allow}"`);
      assert(frameAttrs.sandbox && !/allow-top-navigation/.test(frameAttrs.sandbox),
        `the call frame's sandbox is "${frameAttrs.sandbox}"`);
      assert(frameAttrs.referrer === 'no-referrer', `the call frame's referrer policy is "${frameAttrs.referrer}"`);
      const src = await c.getAttribute('#tippen-call iframe', 'src');
      assert(src === session.guest, `the call frame shows ${src}, expected the provider's guest URL ${session.guest}`);
      const frameText = await c.frameLocator('#tippen-call iframe').locator('#call').textContent({ timeout: 2000 });
      assert(frameText === `guest of ${session.sessionId}`, `the call frame reads "${frameText}"`);
      // The admin's way into the call: the host URL the one call returned.
      const hostHref = await dash.getAttribute(`#visitors tr[data-visitor-id="${invitee}"] a.host-link`, 'href');
      assert(hostHref === session.host, `the dashboard's host link is ${hostHref}, expected ${session.host}`);
      assert(!(await c.$('#tippen-invite')), 'the popup is still there after Join');
      await waitInDashboard(
        (id) => {
          const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
          const cell = row && row.querySelector('.invite-state');
          return !!(cell && cell.textContent.trim() === 'accepted');
        }, invitee, 2000, `.invite-state of ${invitee} never read "accepted" within 2 s of Join`);
      timings.joinToAcceptedMs = now() - tJoin;
      await screenshots('invite-accepted');
      await c.close({ runBeforeUnload: true });
    } finally {
      await ctxC.close().catch(() => {});
    }
  });

  // Another invitee (desktop user agent, so not a bot) for the remaining invite paths.
  const uaD = `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${browser.version()} Safari/537.36`;
  const ctxD = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: uaD });
  let d;
  let dId;
  const inviteCell = (id) => `#visitors tr[data-visitor-id="${id}"] td.invite`;
  async function inviteD() {
    const btnSel = `${inviteCell(dId)} .invite-button`;
    await waitInDashboard(
      (sel) => { const b = document.querySelector(sel); return !!(b && !b.hidden && !b.disabled); }, btnSel, 3000,
      `no enabled .invite-button for ${dId}`);
    await dash.click(btnSel);
    await d.waitForSelector('#tippen-invite', { state: 'visible', timeout: 2500 })
      .catch(() => { throw new StepFailure('#tippen-invite did not show within 2500 ms of the click'); });
    return d.getAttribute('#tippen-invite', 'data-invite-id');
  }
  async function dashboardInviteState(id, want, timeoutMs) {
    await waitInDashboard(
      ([sel, w]) => { const n = document.querySelector(sel + ' .invite-state'); return !!(n && n.textContent.trim() === w); },
      [inviteCell(id), want], timeoutMs, `.invite-state of ${id} never read "${want}" within ${timeoutMs} ms`);
  }

  await step('6b. Decline hides the popup and the dashboard shows declined', async () => {
    d = await ctxD.newPage();
    visitorPages.push(d);
    watch(d, 'demo-invitee-2');
    await d.goto(demoUrl);
    await d.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
    dId = await d.evaluate(() => window.tippen.visitorId);
    const inviteId = await inviteD();
    const t0 = now();
    await d.click('#tippen-invite-decline');
    assert(!(await d.$('#tippen-invite')), 'the popup is still there after Decline');
    assert(!(await d.$('#tippen-call')), 'a call frame opened after Decline');
    await dashboardInviteState(dId, 'declined', 2000);
    timings.declineToDashboardMs = now() - t0;
    const logged = await dash.$(`#event-log li[data-invite-id="${inviteId}"][data-invite-state="declined"]`);
    assert(logged, `no "declined" entry for ${inviteId} in #event-log`);
  });

  await step('6c. an unanswered invite expires: the popup goes, the dashboard shows expired', async () => {
    const inviteId = await inviteD();
    const t0 = now();
    // Nobody answers. The server's deadline expires it; the page hides the popup.
    await dashboardInviteState(dId, 'expired', INVITE_TTL + 2000);
    timings.inviteExpiredAfterMs = now() - t0;
    assert(timings.inviteExpiredAfterMs >= INVITE_TTL - 1500,
      `the invite expired ${timings.inviteExpiredAfterMs} ms after it was sent; its expiry is ${INVITE_TTL} ms`);
    await d.waitForSelector('#tippen-invite', { state: 'detached', timeout: 1500 })
      .catch(() => { throw new StepFailure('the popup is still shown after the invite expired'); });
    const logged = await dash.$(`#event-log li[data-invite-id="${inviteId}"][data-invite-state="expired"]`);
    assert(logged, `no "expired" entry for ${inviteId} in #event-log`);
    say(`     invite expired ${timings.inviteExpiredAfterMs} ms after it was sent (expiry ${INVITE_TTL} ms)`);
  });

  await step('6d. the visitor closes the tab with an invite open: visitor_left', async () => {
    const inviteId = await inviteD();
    const t0 = now();
    await d.close({ runBeforeUnload: true });
    await waitInDashboard(
      (sel) => !!document.querySelector(sel), `#event-log li[data-invite-id="${inviteId}"][data-invite-state="visitor_left"]`,
      CLOSE_TO_REMOVAL_MS, `no "visitor_left" entry for ${inviteId} in #event-log within ${CLOSE_TO_REMOVAL_MS} ms of closing the tab`);
    await waitInDashboard(
      (id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), dId,
      CLOSE_TO_REMOVAL_MS - (now() - t0), `the row of ${dId} was still there ${CLOSE_TO_REMOVAL_MS} ms after its tab closed`);
    timings.closeToVisitorLeftMs = now() - t0;
    await ctxD.close().catch(() => {});
  });

  await step('6e. an invite to an unknown visitor is 404 "Visitor not found" and creates no session', async () => {
    const nobody = `visitor_${Date.now()}_nobody`;
    const before = sessions.length;
    for (const [route, body] of [
      ['/api/send-video-invite', { apiKey: KEY, visitorId: nobody, guestUrl: 'https://meet.example/guest/x' }],
      ['/api/video-call', { apiKey: KEY, visitorId: nobody }],
    ]) {
      // From the dashboard's page, as the dashboard itself would send it.
      const answer = await dash.evaluate(async ([url, b]) => {
        const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(b) });
        return { status: res.status, body: await res.text() };
      }, [BASE + route, body]);
      assert(answer.status === 404 && answer.body === '{"error":"Visitor not found"}',
        `${route} for an unknown visitor answered ${answer.status} ${answer.body}`);
    }
    assert(sessions.length === before, 'a session was created for an unknown visitor');
  });

  await step(`7. closing both tabs removes the visitor within ${CLOSE_TO_REMOVAL_MS} ms with reason "left"`, async () => {
    // Record the removal time in the page (same machine clock as ours).
    await dash.evaluate((id) => {
      window.__removedAt = null;
      const sel = `#visitors tr[data-visitor-id="${CSS.escape(id)}"]`;
      const mo = new MutationObserver(() => {
        if (!document.querySelector(sel) && window.__removedAt == null) { window.__removedAt = Date.now(); mo.disconnect(); }
      });
      mo.observe(document.getElementById('visitors'), { subtree: true, childList: true, attributes: true });
    }, visitorId);
    const t0 = now();
    await Promise.all([b1.close({ runBeforeUnload: true }), b2.close({ runBeforeUnload: true })]);
    await waitInDashboard(
      (id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), visitorId,
      CLOSE_TO_REMOVAL_MS - (now() - t0), `the row of ${visitorId} was still there ${CLOSE_TO_REMOVAL_MS} ms after both tabs closed`);
    const removedAt = await dash.evaluate(() => window.__removedAt);
    timings.removalMs = (removedAt || now()) - t0;
    say(`     row removed ${timings.removalMs} ms after closing the tabs (leave linger ${LINGER} ms)`);
    assert(timings.removalMs >= LINGER - 300,
      `the row went ${timings.removalMs} ms after the close, before the leave linger (${LINGER} ms) ended`);
    const [reason] = await waitInDashboard(
      (id) => {
        const li = document.querySelector(`#event-log li[data-visitor-id="${CSS.escape(id)}"][data-reason]`);
        return li && li.getAttribute('data-reason');
      }, visitorId, 1000, `no removal of ${visitorId} in #event-log`);
    assert(reason === 'left', `the removal's reason is "${reason}", expected "left" (the exit beacon)`);
    // Nothing that was in flight may bring the visitor back.
    await sleep(1000);
    const state = await dashboardState();
    assert(!state.rows.some((r) => r.id === visitorId), `the visitor ${visitorId} came back after leaving`);
    assert(state.count === String(state.rows.length), `#visitor-count says ${state.count} but the table has ${state.rows.length} rows`);
  });

  await step('8. the dashboard saw a gapless sequence and never had to resync', async () => {
    const msgs = framesIn.map((f) => { try { return JSON.parse(f); } catch { return { unparsable: f }; } });
    assert(msgs.length && msgs[0].type === 'INITIAL_VISITORS', `the first message is not INITIAL_VISITORS: ${framesIn[0]}`);
    let last = null;
    const broadcasts = new Set(['VISITOR_UPDATE', 'VISITOR_REMOVED', 'VIDEO_INVITE_SENT', 'VIDEO_INVITE_UPDATE']);
    for (const m of msgs) {
      assert(Number.isInteger(m.seq), `a message without an integer seq: ${JSON.stringify(m).slice(0, 200)}`);
      if (m.type === 'INITIAL_VISITORS') last = m.seq;
      else if (broadcasts.has(m.type)) {
        assert(m.seq === last + 1, `broadcast ${m.type} has seq ${m.seq} after ${last} (expected ${last + 1})`);
        last = m.seq;
      } else {
        // a reply carries the current number; a broadcast still on its way may make it run ahead
        assert(m.seq >= last, `reply ${m.type} carries seq ${m.seq}, below the ${last} already seen`);
      }
    }
    const resyncs = framesOut.filter((f) => f.includes('GET_VISITORS')).length;
    assert(resyncs === 0, `the dashboard sent GET_VISITORS ${resyncs} time(s)`);
    timings.dashboardMessages = msgs.length;
  });

  // A second dashboard whose socket runs through a Playwright route between the page and the
  // real server: frames pass unchanged, except that one real broadcast is held back or dropped,
  // as a host with several writers (Lambda) may deliver them.
  const relay = {
    mode: 'pass', // 'pass' | 'hold' | 'drop'
    match: null, // which broadcast to hold or drop
    held: null, // { msg, text, at, seq }
    dropped: null, // { msg, at, seq }
    nextAt: null, // when the first broadcast after the held/dropped one was forwarded
    releasedAt: null,
    holdSnapshot: false, // keep the next INITIAL_VISITORS back (relay.snapshot) until released
    snapshot: null, // { text, seq, at }
    forwarded: [], // { seq, type, at } in the order the page got them
    toServer: [], // { text, at }
    waiters: [],
  };
  const BROADCASTS = new Set(['VISITOR_UPDATE', 'VISITOR_REMOVED', 'VIDEO_INVITE_SENT', 'VIDEO_INVITE_UPDATE',
    'SUPPORT_ALERT', 'SUPPORT_RECOVERED']);
  const HOLD_EXTRA_MS = 300; // n+1 reaches the page this long after n+2
  const REORDER_WAIT_MS = 1000; // dashboard.html's REORDER_WAIT_MS
  const relayed = (cond, timeoutMs, message) => new Promise((resolve, reject) => {
    if (cond()) { resolve(); return; }
    const w = { cond, resolve };
    relay.waiters.push(w);
    setTimeout(() => {
      relay.waiters = relay.waiters.filter((x) => x !== w);
      reject(new StepFailure(`${message} (waited ${timeoutMs} ms); the page got ${JSON.stringify(relay.forwarded.slice(-6))}`));
    }, timeoutMs);
  });
  const relayChanged = () => {
    relay.waiters = relay.waiters.filter((w) => { if (w.cond()) { w.resolve(); return false; } return true; });
  };
  function fromServer(ws, text) {
    let msg = {};
    try { msg = JSON.parse(text); } catch { /* forwarded as is */ }
    const forward = (m, t) => {
      ws.send(t);
      relay.forwarded.push({ seq: m.seq, type: m.type, at: now() });
    };
    const broadcast = BROADCASTS.has(msg.type) && Number.isInteger(msg.seq);
    if (msg.type === 'INITIAL_VISITORS' && relay.holdSnapshot && !relay.snapshot) {
      relay.snapshot = { msg, text, seq: msg.seq, at: now() };
    } else if (broadcast && relay.mode === 'hold' && !relay.held && relay.match(msg)) {
      relay.held = { msg, text, at: now(), seq: msg.seq };
    } else if (broadcast && relay.mode === 'hold' && relay.held && !relay.nextAt && msg.seq > relay.held.seq) {
      forward(msg, text);
      relay.nextAt = now();
      setTimeout(() => {
        forward(relay.held.msg, relay.held.text);
        relay.releasedAt = now();
        relay.mode = 'pass';
        relayChanged();
      }, HOLD_EXTRA_MS);
    } else if (broadcast && relay.mode === 'drop' && !relay.dropped && relay.match(msg)) {
      relay.dropped = { msg, at: now(), seq: msg.seq };
    } else {
      forward(msg, text);
      if (broadcast && relay.dropped && !relay.nextAt && msg.seq > relay.dropped.seq) relay.nextAt = now();
    }
    relayChanged();
  }
  const serverVisitor = async (id) => {
    const res = await fetch(`${BASE}/api/visitors`, { headers: { 'X-Tippen-API-Key': KEY } });
    const body = await res.json();
    return (body.visitors || []).find((v) => v.visitorId === id);
  };
  const rowOf = ([id, want]) => {
    const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`);
    const pages = row && row.querySelector('.pages');
    return pages && pages.textContent.includes(want) ? row.querySelector('.page-views').textContent : null;
  };
  const ctxE = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: uaD });
  let rd;
  let dashSend; // sends a frame to the routed dashboard page
  let e;
  let eId;
  try {
    await step('9. a broadcast overtaken by the next one is held back, not resynced: both apply in order', async () => {
      rd = await ctxA.newPage();
      watch(rd, 'dashboard-routed');
      await rd.routeWebSocket(/\/ws\/dashboard/, (ws) => {
        dashSend = (t) => ws.send(t);
        const server = ws.connectToServer();
        ws.onMessage((m) => { relay.toServer.push({ text: String(m), at: now() }); relayChanged(); server.send(m); });
        server.onMessage((m) => fromServer(ws, String(m)));
      });
      await rd.goto(`${BASE}/dashboard?apiKey=${encodeURIComponent(KEY)}`);
      await waitInDashboard(
        () => (document.getElementById('connection-state') || {}).textContent === 'connected', null, 5000,
        'the routed dashboard never read "connected"', rd);
      await relayed(() => relay.forwarded.some((f) => f.type === 'INITIAL_VISITORS'), 3000, 'no INITIAL_VISITORS through the route');
      // Hold the next visitor's new_visitor update (n+1); the following broadcast (n+2) passes.
      relay.match = (m) => m.type === 'VISITOR_UPDATE' && m.event === 'new_visitor';
      relay.mode = 'hold';
      const sentBefore = relay.toServer.length;
      e = await ctxE.newPage();
      visitorPages.push(e);
      watch(e, 'demo-reorder');
      await e.goto(demoUrl);
      await e.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
      eId = await e.evaluate(() => window.tippen.visitorId);
      await relayed(() => relay.held, 3000, 'the route saw no new_visitor broadcast to hold');
      assert(relay.held.msg.visitor.visitorId === eId, `held the arrival of ${relay.held.msg.visitor.visitorId}, not ${eId}`);
      await e.click('#nav-pricing');
      await relayed(() => relay.releasedAt, 3000, 'no broadcast followed the held one');
      const order = relay.forwarded.map((f) => f.seq);
      const iHeld = order.indexOf(relay.held.seq);
      const iNext = order.indexOf(relay.held.seq + 1);
      assert(iNext >= 0 && iNext < iHeld, `the page did not get #${relay.held.seq + 1} before #${relay.held.seq}: ${JSON.stringify(order.slice(-6))}`);
      timings.reorderHeldMs = relay.releasedAt - relay.held.at;
      timings.reorderOvertakenByMs = relay.releasedAt - relay.nextAt;
      say(`     held #${relay.held.seq} (new_visitor) ${timings.reorderHeldMs} ms; #${relay.held.seq + 1} reached the page ${timings.reorderOvertakenByMs} ms before it`);
      const [views] = await waitInDashboard(rowOf, [eId, 'page=pricing'], 2000,
        `the routed dashboard never showed ${eId} on page=pricing`, rd);
      timings.reorderAppliedAfterReleaseMs = now() - relay.releasedAt;
      // Give a resync time to show if the page were going to send one.
      await sleep(Math.max(0, relay.releasedAt + REORDER_WAIT_MS + 500 - now()));
      const asked = relay.toServer.slice(sentBefore).filter((f) => f.text.includes('GET_VISITORS'));
      assert(asked.length === 0, `the page sent GET_VISITORS ${asked.length} time(s) although nothing was lost`);
      const state = await dashboardState(rd);
      const resyncLogged = state.log.filter((l) => l.includes('resync'));
      assert(resyncLogged.length === 0, `the page logged a resync: ${JSON.stringify(resyncLogged)}`);
      // n+1 applied first: the row was new when the update came (it logs new_visitor, not the
      // pageview); n+2 applied last: the row shows pricing (n+1 would have put the first page back).
      const arrival = await rd.getAttribute(`#event-log li[data-visitor-id="${eId}"][data-event]`, 'data-event');
      assert(arrival === 'new_visitor', `the row of ${eId} was created by a "${arrival}" update, not by the held new_visitor`);
      const row = (await rd.evaluate(rowOf, [eId, 'page=pricing']));
      assert(row !== null, `${eId} no longer shows page=pricing: ${JSON.stringify(state.rows.find((r) => r.id === eId))}`);
      const server = await serverVisitor(eId);
      assert(server && String(server.pageViews) === views, `the page shows ${views} page views, the server ${server && server.pageViews}`);
      assert(state.count === String(state.rows.length), `#visitor-count says ${state.count} but the table has ${state.rows.length} rows`);
    });

    await step('10. a broadcast lost for good: the page resyncs after the reorder wait and the snapshot is right', async () => {
      relay.match = (m) => m.type === 'VISITOR_UPDATE' && m.visitor && m.visitor.visitorId === eId;
      relay.nextAt = null;
      relay.mode = 'drop';
      const sentBefore = relay.toServer.length;
      await e.click('#nav-about');
      await relayed(() => relay.dropped, 3000, 'the route saw no broadcast of the about page to drop');
      await e.click('#nav-home');
      await relayed(() => relay.nextAt, 3000, 'no broadcast followed the dropped one');
      await relayed(() => relay.toServer.slice(sentBefore).some((f) => f.text.includes('GET_VISITORS')),
        REORDER_WAIT_MS + 3000, 'the page never sent GET_VISITORS after a lost broadcast');
      const ask = relay.toServer.slice(sentBefore).find((f) => f.text.includes('GET_VISITORS'));
      timings.lostToResyncMs = ask.at - relay.nextAt;
      say(`     dropped #${relay.dropped.seq}; GET_VISITORS ${timings.lostToResyncMs} ms after #${relay.dropped.seq + 1} reached the page (wait ${REORDER_WAIT_MS} ms)`);
      assert(timings.lostToResyncMs >= REORDER_WAIT_MS - 100,
        `the page resynced ${timings.lostToResyncMs} ms after the gap opened, before its ${REORDER_WAIT_MS} ms wait`);
      assert(timings.lostToResyncMs <= REORDER_WAIT_MS + 1500,
        `the page resynced only ${timings.lostToResyncMs} ms after the gap opened (wait ${REORDER_WAIT_MS} ms)`);
      await waitInDashboard(
        () => Array.from(document.querySelectorAll('#event-log li[data-kind="resync"]')).some((li) => li.textContent.includes('resynced')),
        null, 2000, 'the page never logged "resynced"', rd);
      const snapshot = relay.forwarded.filter((f) => f.type === 'INITIAL_VISITORS' && f.at >= ask.at);
      assert(snapshot.length === 1 && snapshot[0].seq >= relay.dropped.seq + 1,
        `after GET_VISITORS the page got ${JSON.stringify(snapshot)} (want one snapshot at #${relay.dropped.seq + 1} or later)`);
      const [views] = await waitInDashboard(rowOf, [eId, 'page=home'], 2000, `the routed dashboard never showed ${eId} on page=home`, rd);
      const server = await serverVisitor(eId);
      assert(server && String(server.pageViews) === views, `the page shows ${views} page views after the resync, the server ${server && server.pageViews}`);
      await sleep(REORDER_WAIT_MS + 500);
      const asked = relay.toServer.slice(sentBefore).filter((f) => f.text.includes('GET_VISITORS')).length;
      assert(asked === 1, `the page sent GET_VISITORS ${asked} times for one lost broadcast`);
      const state = await dashboardState(rd);
      assert(state.count === String(state.rows.length), `#visitor-count says ${state.count} but the table has ${state.rows.length} rows`);
    });

    await step('11. broadcasts newer than a resync\'s snapshot, held when it comes, apply right after it', async () => {
      relay.match = (m) => m.type === 'VISITOR_UPDATE' && m.visitor && m.visitor.visitorId === eId;
      relay.dropped = null;
      relay.nextAt = null;
      relay.holdSnapshot = true;
      relay.mode = 'drop';
      const sentBefore = relay.toServer.length;
      await e.click('#nav-pricing'); // n+1: lost
      await relayed(() => relay.dropped, 3000, 'the route saw no broadcast of the pricing page to drop');
      await e.click('#nav-about'); // n+2: held by the page, which resyncs after its wait
      await relayed(() => relay.snapshot, REORDER_WAIT_MS + 3000, 'no snapshot answered the resync');
      // n+3 happens after the snapshot was taken and overtakes it on the way to the page.
      const n3 = relay.forwarded.length;
      await e.click('#nav-home');
      await relayed(() => relay.forwarded.slice(n3).some((f) => f.type === 'VISITOR_UPDATE' && f.seq > relay.snapshot.seq),
        3000, `no broadcast newer than the snapshot (#${relay.snapshot && relay.snapshot.seq}) reached the page`);
      const newer = relay.forwarded.slice(n3).find((f) => f.type === 'VISITOR_UPDATE' && f.seq > relay.snapshot.seq);
      assert(relay.snapshot.seq >= relay.dropped.seq + 1, `the snapshot is at #${relay.snapshot.seq}, before the lost #${relay.dropped.seq}`);
      relay.holdSnapshot = false;
      const snap = relay.snapshot;
      const tRelease = now();
      dashSend(snap.text);
      relay.forwarded.push({ seq: snap.seq, type: 'INITIAL_VISITORS', at: tRelease });
      say(`     lost #${relay.dropped.seq}; snapshot at #${snap.seq} held ${tRelease - snap.at} ms while #${newer.seq} overtook it`);
      // #n+3 (held by the page) is applied at once from the buffer: no second wait, no second resync.
      const [views] = await waitInDashboard(rowOf, [eId, 'page=home'], REORDER_WAIT_MS / 2,
        `${eId} did not show page=home right after the snapshot (the held #${newer.seq} was not applied)`, rd);
      timings.snapshotToHeldAppliedMs = now() - tRelease;
      await sleep(REORDER_WAIT_MS + 500);
      const asked = relay.toServer.slice(sentBefore).filter((f) => f.text.includes('GET_VISITORS')).length;
      assert(asked === 1, `the page sent GET_VISITORS ${asked} times for one lost broadcast`);
      const server = await serverVisitor(eId);
      assert(server && String(server.pageViews) === views, `the page shows ${views} page views, the server ${server && server.pageViews}`);
      const state = await dashboardState(rd);
      const row = state.rows.find((r) => r.id === eId);
      assert(row && row.tabs.length === 1 && row.tabs[0].text.includes('page=home'), `the row of ${eId} is ${JSON.stringify(row)}`);
    });
  } finally {
    await ctxE.close().catch(() => {});
  }

  // ---- presence on a customer site of another origin: reloads and navigations don't flap ----
  // Every dashboard message about `id` since frame `from`, parsed.
  const framesAbout = (id, from) => framesIn.slice(from).map((f) => { try { return JSON.parse(f); } catch { return {}; } })
    .filter((m) => (m.visitorId === id) || (m.visitor && m.visitor.visitorId === id));
  const pageViewsShown = (id) => dash.evaluate((v) => {
    const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(v)}"]`);
    return row ? Number(row.querySelector('.page-views').textContent) : null;
  }, id);
  const waitPageViews = (id, n, timeoutMs, what) => waitInDashboard(
    ([v, want]) => {
      const row = document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(v)}"]`);
      return !!(row && Number(row.querySelector('.page-views').textContent) === want);
    }, [id, n], timeoutMs, `${what}: the row of ${id} never showed pageViews ${n}`);
  // Exit beacons the site's pages sent, counted in the tab's sessionStorage (it survives the
  // navigations): a page that cannot tell a reload from a close sends one, and the server must
  // not believe it.
  const countBeacons = () => {
    const send = navigator.sendBeacon && navigator.sendBeacon.bind(navigator);
    if (!send) return;
    navigator.sendBeacon = (url, body) => {
      if (String(url).includes('/track/leave')) {
        sessionStorage.setItem('__beacons', String(Number(sessionStorage.getItem('__beacons') || 0) + 1));
      }
      return send(url, body);
    };
  };
  const beaconsSent = (page) => page.evaluate(() => Number(sessionStorage.getItem('__beacons') || 0));
  const ctxF = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: uaD });
  await ctxF.addInitScript(countBeacons);
  let f;
  let fId;
  let fFrom;
  try {
    await step(`12. on a site of another origin, reload, link navigation, back/forward and typed addresses keep the visitor (no VISITOR_REMOVED, pageViews go on; linger ${LINGER} ms)`, async () => {
      f = await ctxF.newPage();
      visitorPages.push(f);
      watch(f, 'site');
      fFrom = framesIn.length;
      await f.goto(`${SITE}/a`);
      await f.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
      fId = await f.evaluate(() => window.tippen.visitorId);
      const tab = await f.evaluate(() => window.tippen.tabId);
      await waitPageViews(fId, 1, 3000, 'the first page of the site');
      let views = 1;
      const navigations = [
        ['reload', () => f.reload()],
        ['link to /b', () => f.click('#to-b')],
        ['back', () => f.goBack()],
        ['forward', () => f.goForward()],
        ['typed address /a', () => f.goto(`${SITE}/a?typed=1`)],
        ['reload again', () => f.reload()],
      ];
      timings.siteNavigations = {};
      for (const [what, go] of navigations) {
        const before = await beaconsSent(f);
        const t0 = now();
        await go();
        await f.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
        const same = await f.evaluate(() => ({ visitorId: window.tippen.visitorId, tabId: window.tippen.tabId }));
        assert(same.visitorId === fId && same.tabId === tab, `${what}: the page has ${JSON.stringify(same)}, expected visitor ${fId} tab ${tab}`);
        views += 1;
        await waitPageViews(fId, views, 3000, what);
        const sent = (await beaconsSent(f)) - before;
        timings.siteNavigations[what] = { toDashboardMs: now() - t0, beacons: sent };
        say(`     ${what}: pageViews ${views} on the dashboard ${now() - t0} ms later; exit beacons sent: ${sent}`);
      }
      // Past the end of the last beacon's linger: a removal would have come by now.
      await sleep(LINGER + 1000);
      const about = framesAbout(fId, fFrom);
      const removals = about.filter((m) => m.type === 'VISITOR_REMOVED');
      const arrivals = about.filter((m) => m.type === 'VISITOR_UPDATE' && m.event === 'new_visitor');
      assert(removals.length === 0, `the dashboard got ${JSON.stringify(removals)} for ${fId}`);
      assert(arrivals.length === 1, `the dashboard got ${arrivals.length} new_visitor updates for ${fId} (expected 1: one visit)`);
      assert(await pageViewsShown(fId) === views, `the row shows ${await pageViewsShown(fId)} page views, expected ${views}`);
      const sent = Object.values(timings.siteNavigations).reduce((n, x) => n + x.beacons, 0);
      assert(sent >= 1, 'no navigation sent an exit beacon: the server-side linger was never exercised');
      timings.siteBeacons = sent;
    });

    await step(`13. a page restored from the back/forward cache keeps the visitor (separate browser with the bfcache on)`, async () => {
      const bfBrowser = await chromium.launch({
        executablePath: CHROMIUM, args: ARGS, headless: true, ignoreDefaultArgs: ['--disable-back-forward-cache'],
      });
      try {
        const ctxG = await bfBrowser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: uaD });
        await ctxG.addInitScript(countBeacons);
        const g = await ctxG.newPage();
        g.on('pageerror', (err) => problems.push(`[bfcache] uncaught: ${err.message}`));
        const from = framesIn.length;
        await g.goto(`${SITE}/a`);
        await g.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 3000 });
        const gId = await g.evaluate(() => window.tippen.visitorId);
        await waitPageViews(gId, 1, 3000, 'bfcache: the first page');
        await g.evaluate(() => {
          window.__notReloaded = true;
          window.__restored = 0;
          window.addEventListener('pageshow', (e) => { if (e.persisted) window.__restored += 1; });
        });
        await g.goto(`${SITE}/b`); // typed: the tracker cannot tell it from a close
        await waitPageViews(gId, 2, 3000, 'bfcache: the second page');
        const t0 = now();
        await g.goBack({ waitUntil: 'commit' });
        await g.waitForFunction(() => window.__notReloaded === true && window.__restored >= 1, null, { timeout: 3000 })
          .catch(() => { throw new StepFailure('going back did not restore /a from the back/forward cache (the page was loaded again)'); });
        await waitPageViews(gId, 3, 3000, 'bfcache: the restored page');
        timings.bfcacheRestoreToDashboardMs = now() - t0;
        say(`     restored from the bfcache; pageViews 3 on the dashboard ${timings.bfcacheRestoreToDashboardMs} ms later; exit beacons: ${await beaconsSent(g)}`);
        timings.bfcacheBeacons = await beaconsSent(g);
        await sleep(LINGER + 1000);
        const about = framesAbout(gId, from);
        assert(!about.some((m) => m.type === 'VISITOR_REMOVED'), `the dashboard got a removal of ${gId}: ${JSON.stringify(about.filter((m) => m.type === 'VISITOR_REMOVED'))}`);
        assert(about.filter((m) => m.type === 'VISITOR_UPDATE' && m.event === 'new_visitor').length === 1, `more than one visit of ${gId}`);
        assert(await pageViewsShown(gId) === 3, `the row of ${gId} shows ${await pageViewsShown(gId)} page views, expected 3`);
        // Its close, the real one, is measured too.
        const tc = now();
        await g.close({ runBeforeUnload: true });
        await waitInDashboard((id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), gId,
          CLOSE_TO_REMOVAL_MS, `the row of ${gId} was still there ${CLOSE_TO_REMOVAL_MS} ms after its tab closed`);
        timings.bfcacheCloseToRemovalMs = now() - tc;
      } finally {
        await bfBrowser.close().catch(() => {});
      }
    });

    await step(`14. a real close of the site's page removes the visitor with reason "left" within ${CLOSE_TO_REMOVAL_MS} ms`, async () => {
      await dash.evaluate((id) => {
        window.__siteRemovedAt = null;
        const sel = `#visitors tr[data-visitor-id="${CSS.escape(id)}"]`;
        const mo = new MutationObserver(() => {
          if (!document.querySelector(sel) && window.__siteRemovedAt == null) { window.__siteRemovedAt = Date.now(); mo.disconnect(); }
        });
        mo.observe(document.getElementById('visitors'), { subtree: true, childList: true, attributes: true });
      }, fId);
      const t0 = now();
      await f.close({ runBeforeUnload: true });
      await waitInDashboard((id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), fId,
        CLOSE_TO_REMOVAL_MS, `the row of ${fId} was still there ${CLOSE_TO_REMOVAL_MS} ms after its tab closed`);
      const removedAt = await dash.evaluate(() => window.__siteRemovedAt);
      timings.siteCloseToRemovalMs = (removedAt || now()) - t0;
      say(`     row removed ${timings.siteCloseToRemovalMs} ms after the close (linger ${LINGER} ms)`);
      const removal = framesAbout(fId, fFrom).find((m) => m.type === 'VISITOR_REMOVED');
      assert(removal && removal.reason === 'left', `the removal of ${fId} is ${JSON.stringify(removal)}, expected reason "left"`);
      assert(timings.siteCloseToRemovalMs >= LINGER - 300, `removed ${timings.siteCloseToRemovalMs} ms after the close, before the linger (${LINGER} ms) ended`);
    });
  } finally {
    await ctxF.close().catch(() => {});
  }

  await step('15. the predecessor\'s snippet verbatim (script on a CDN origin, data-tippen-backend): tracked, window.TippenTracker, TIPPEN_VIDEO_INVITE posted on invite', async () => {
    const ctxH = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: uaD });
    try {
      const h = await ctxH.newPage();
      visitorPages.push(h);
      watch(h, 'legacy-snippet');
      await h.goto(`${SITE}/legacy`);
      await h.waitForFunction(() => window.TippenTracker && window.TippenTracker.visitorId, null, { timeout: 3000 })
        .catch(() => { throw new StepFailure('window.TippenTracker.visitorId never appeared (the predecessor\'s troubleshooting reads it)'); });
      const hId = await h.evaluate(() => window.TippenTracker.visitorId);
      assert(await h.evaluate(() => window.TippenTracker === window.tippen), 'window.TippenTracker is not the tracker\'s API object');
      // Tracked on the server named by data-tippen-backend, not on the CDN the script came from.
      await waitPageViews(hId, 1, 3000, 'the predecessor\'s snippet');
      assert(cdnRequests.length === 0, `the tracker sent requests to the CDN origin: ${cdnRequests.join(', ')}`);
      const btnSel = `#visitors tr[data-visitor-id="${hId}"] .invite-button`;
      await waitInDashboard(
        (sel) => { const b = document.querySelector(sel); return !!(b && !b.hidden && !b.disabled); }, btnSel, 3000,
        `no enabled .invite-button for ${hId}`);
      const t0 = now();
      await dash.click(btnSel);
      await h.waitForFunction(() => window.__tippenMessages.length > 0, null, { timeout: 2500 })
        .catch(() => { throw new StepFailure('no TIPPEN_VIDEO_INVITE window message within 2500 ms of the click'); });
      timings.legacyInviteMessageMs = now() - t0;
      const [{ data, origin }] = await h.evaluate(() => window.__tippenMessages);
      const shownId = await h.getAttribute('#tippen-invite', 'data-invite-id');
      assert(origin === SITE, `the message came from ${origin}, expected the page's own origin ${SITE}`);
      assert(data.inviteId === shownId && /^https?:\/\//.test(data.guestUrl || ''),
        `the message is ${JSON.stringify(data)} (popup for ${shownId})`);
      say(`     TIPPEN_VIDEO_INVITE posted ${timings.legacyInviteMessageMs} ms after the click: ${JSON.stringify(data)}`);
      await h.click('#tippen-invite-decline');
      await h.close({ runBeforeUnload: true });
    } finally {
      await ctxH.close().catch(() => {});
    }
  });

  if (problems.length) throw new StepFailure(`uncaught errors in the pages: ${problems.join('; ')}`);
}

const watchdog = setTimeout(() => {
  say(`FAIL the test did not finish within ${WATCHDOG_MS / 1000} s`);
  process.exit(1);
}, WATCHDOG_MS);

let ok = false;
try {
  await main();
  ok = true;
} catch (e) {
  if (!(e && e.reported)) {
    failed += 1;
    say(`FAIL ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
  }
  try {
    if (dash) {
      const shots = await screenshots('failure');
      if (shots.length) say(`screenshots: ${shots.join(' ')}`);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'console.log'), consoleLines.join('\n') + '\n');
    say(`page console: ${path.join(ARTIFACTS, 'console.log')}`);
  } catch (err) {
    say(`(could not save artifacts: ${err.message})`);
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  if (provider) provider.close();
  if (site) site.close();
  clearTimeout(watchdog);
}

say(JSON.stringify({ ok, base: BASE, visibleGraceMs: VISIBLE_GRACE, hiddenGraceMs: HIDDEN_GRACE, leaveLingerMs: LINGER, ...timings }));
say(`e2e: ${passed} passed, ${failed} failed`);
process.exit(ok ? 0 : 1);
