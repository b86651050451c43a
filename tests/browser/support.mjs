// End-to-end test of the support triggers in headless Chromium: the in-app tracker on a test
// app page (its own origin), the dashboard's "Needs help" panel, and Slack delivery to a local
// receiver.
//
// The test starts, and stops, everything it needs:
//   - a stand-in for Slack's incoming webhook on 127.0.0.1:$TIPPEN_SLACK_PORT (records posts),
//   - the test app page on 127.0.0.1:$TIPPEN_APP_PORT (embeds /tippen-app-tracker.js),
//   - tippen-server ($TIPPEN_SERVER_BIN) on 127.0.0.1:$TIPPEN_PORT with TIPPEN_SLACK_WEBHOOK_URL
//     pointing at the receiver and TIPPEN_PUBLIC_URL set, on a fresh database.
// Environment: TIPPEN_SERVER_BIN (required), TIPPEN_PORT (18800), TIPPEN_SLACK_PORT (18801),
// TIPPEN_APP_PORT (18802), TIPPEN_ARTIFACTS (screenshots, server log), TIPPEN_CHROMIUM.
//
// The app page throws four errors within a minute: the dashboard must show the alert (reason,
// page, time) and the receiver must get exactly one Slack message. The app page runs the visitor
// tracker too, so the user is also a live visitor: the dashboard's user view (1366 px wide)
// shows the user's journey, errors and why they are flagged, and invites them to a call. Exit
// code 0 when every step passed.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import crypto from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER_BIN = process.env.TIPPEN_SERVER_BIN || '';
const PORT = Number(process.env.TIPPEN_PORT || 18800);
const SLACK_PORT = Number(process.env.TIPPEN_SLACK_PORT || 18801);
const APP_PORT = Number(process.env.TIPPEN_APP_PORT || 18802);
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'browser'));
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const BASE = `http://127.0.0.1:${PORT}`;
const APP = `http://127.0.0.1:${APP_PORT}`;
const KEY = 'demo_api_key';
const HOOK_PATH = '/services/T0TEST/B0TEST/hooksecret42';
const PUBLIC_URL = `http://localhost:${PORT}`;
const USER = 'user_e2e_42';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WATCHDOG_MS = 90000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now();
const say = (line) => process.stdout.write(line + '\n');
class StepFailure extends Error {}
function assert(cond, message) { if (!cond) throw new StepFailure(message); }

const slackPosts = []; // { at, body }
const consoleLines = [];
const timings = {};
let server;
let browser;
let dash;
let app;
let passed = 0;

// ---- the Slack stand-in and the app page ----------------------------------------------------
function listen(handler, port) {
  return new Promise((resolve, reject) => {
    const s = http.createServer(handler);
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

const slack = await listen((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    if (req.method === 'POST' && req.url === HOOK_PATH) {
      let parsed = null;
      try { parsed = JSON.parse(body); } catch { /* recorded as null */ }
      slackPosts.push({ at: now(), body: parsed });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    } else {
      res.writeHead(404).end('no_service');
    }
  });
}, SLACK_PORT);

const APP_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Acme app (test)</title></head>
<body>
<h1 id="title">Acme billing</h1>
<button id="to-settings" onclick="history.pushState({}, '', '/app/settings'); document.getElementById('title').textContent = 'Settings';">Settings</button>
<button id="break" onclick="breakFourTimes()">Break</button>
<script>
  // Four uncaught errors, half a second apart (the app is broken for this user).
  function breakFourTimes() {
    for (let i = 1; i <= 4; i++) setTimeout(() => { throw new Error('Failed to load invoice #' + i); }, i * 500);
  }
</script>
<script src="${BASE}/tippen-tracker.js" data-tippen-api-key="${KEY}"></script>
<script src="${BASE}/tippen-app-tracker.js"
        data-tippen-api-key="${KEY}"
        data-tippen-user-id="${USER}"
        data-tippen-user-email="jane@acme.example"
        data-tippen-subscription-tier="free_trial"
        async></script>
</body></html>`;

// Verified identities: site "v" has an identity secret; the app's backend renders the user's
// HMAC (here computed by this test, as a backend would) into data-tippen-user-hash.
const V_KEY = 'pk_v';
const V_SECRET_KEY = 'sk_v_0123456789abcdefghij';
const IDENTITY_SECRET = 'idv_support_e2e_0123456789abcdef';
const V_SITES = JSON.stringify([{ id: 'v', name: 'Verified', publicKey: V_KEY, secretKey: V_SECRET_KEY, identitySecret: IDENTITY_SECRET }]);
const userHash = (id) => crypto.createHmac('sha256', IDENTITY_SECRET).update(id).digest('hex');
const verifiedPage = (user, hash) => `<!doctype html>
<html><head><meta charset="utf-8"><title>Acme app, verified (test)</title></head>
<body><h1>Verified ${user}</h1>
<script src="${BASE}/tippen-app-tracker.js" data-tippen-api-key="${V_KEY}"
        data-tippen-user-id="${user}" data-tippen-user-hash="${hash}" async></script>
</body></html>`;

const appServer = await listen((req, res) => {
  if (req.url === '/verified/good') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(verifiedPage('user_verified', userHash('user_verified')));
  } else if (req.url === '/verified/forged') {
    // Another user's hash: what someone holding only the public key could put in a page.
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(verifiedPage('user_forged', userHash('user_verified')));
  } else if (req.url.startsWith('/app')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(APP_HTML);
  } else {
    res.writeHead(404).end();
  }
}, APP_PORT);

// ---- tippen-server -------------------------------------------------------------------------
function startServer() {
  assert(SERVER_BIN && fs.existsSync(SERVER_BIN), `TIPPEN_SERVER_BIN (${SERVER_BIN || 'unset'}) is not a tippen-server binary`);
  const dbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tippen-support-'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const log = fs.openSync(path.join(ARTIFACTS, 'support-server.log'), 'w');
  const env = {
    ...process.env,
    RUST_LOG: 'info',
    TIPPEN_SLACK_WEBHOOK_URL: `http://127.0.0.1:${SLACK_PORT}${HOOK_PATH}`,
    TIPPEN_PUBLIC_URL: PUBLIC_URL,
    TIPPEN_SITES: V_SITES,
  };
  for (const k of ['TIPPEN_CONFIG', 'TIPPEN_NO_DEMO', 'TIPPEN_LISTEN', 'TIPPEN_DB']) delete env[k];
  server = spawn(SERVER_BIN, ['--listen', `127.0.0.1:${PORT}`, '--db', path.join(dbDir, 'tippen.db')], {
    env,
    stdio: ['ignore', log, log],
  });
  server.dbDir = dbDir;
  server.logFile = path.join(ARTIFACTS, 'support-server.log');
}

function stopServer() {
  if (server && server.exitCode === null) server.kill('SIGTERM');
  if (server && server.dbDir) fs.rmSync(server.dbDir, { recursive: true, force: true });
}

async function waitForServer() {
  for (let i = 0; i < 150; i++) {
    try {
      const r = await fetch(BASE + '/');
      if (r.ok) return;
    } catch { /* not yet */ }
    if (server.exitCode !== null) throw new StepFailure(`tippen-server exited with ${server.exitCode}; see ${server.logFile}`);
    await sleep(100);
  }
  throw new StepFailure(`tippen-server did not answer on ${BASE} within 15 s`);
}

// ---- steps -----------------------------------------------------------------------------------
async function step(name, fn) {
  const t0 = now();
  say(`-- ${name}`);
  try {
    await fn();
    passed += 1;
    say(`ok   ${name} (${now() - t0} ms)`);
  } catch (e) {
    say(`FAIL ${name}: ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
    if (e && typeof e === 'object') e.reported = true;
    throw e;
  }
}

function panelState() {
  return dash.evaluate(() => ({
    count: (document.getElementById('support-count') || {}).textContent,
    empty: !!(document.getElementById('support-empty') || {}).hidden === false,
    rows: Array.from(document.querySelectorAll('#support-alerts tr[data-user-id]')).map((tr) => ({
      user: tr.getAttribute('data-user-id'),
      text: tr.textContent,
      reasons: Array.from(tr.querySelectorAll('.support-reason')).map((r) => r.getAttribute('data-trigger')),
      page: (tr.querySelector('.support-page') || {}).textContent,
      timeOnPage: (tr.querySelector('.support-time-on-page') || {}).textContent,
      since: (tr.querySelector('.support-since') || {}).textContent,
      focused: tr.classList.contains('support-focus'),
    })),
  }));
}

async function waitInDashboard(fn, arg, timeoutMs, message) {
  const t0 = now();
  try {
    await dash.waitForFunction(fn, arg, { timeout: Math.max(1, timeoutMs), polling: 50 });
    return now() - t0;
  } catch (e) {
    if (!/Timeout/i.test(String(e && e.message))) throw e;
    let state = '(unavailable)';
    try { state = JSON.stringify(await panelState()); } catch { /* gone */ }
    throw new StepFailure(`${message} (waited ${now() - t0} ms); panel shows: ${state}`);
  }
}

async function overview(key = KEY) {
  const r = await fetch(`${BASE}/api/support/users`, { headers: { 'X-Tippen-API-Key': key } });
  assert(r.ok, `GET /api/support/users answered ${r.status}`);
  return r.json();
}

async function main() {
  startServer();
  await waitForServer();
  say(`tippen-server on ${BASE}, Slack receiver on ${SLACK_PORT}, app on ${APP}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctxA = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  // A desktop browser's user agent: headless Chromium's is flagged a bot, and bots get no invite.
  const desktop = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36';
  const ctxB = await browser.newContext({ viewport: { width: 1100, height: 700 }, userAgent: desktop });
  dash = await ctxA.newPage();
  dash.on('console', (m) => consoleLines.push(`[dashboard] ${m.type()}: ${m.text()}`));
  dash.on('pageerror', (e) => consoleLines.push(`[dashboard] pageerror: ${e.message}`));

  await step('1. the dashboard connects with an empty "Needs help" panel', async () => {
    await dash.goto(`${BASE}/dashboard?apiKey=${KEY}`);
    await waitInDashboard(() => (document.getElementById('connection-state') || {}).textContent === 'connected',
      null, 5000, 'the dashboard never connected');
    const s = await panelState();
    assert(s.count === '0' && s.rows.length === 0, `expected an empty panel, got ${JSON.stringify(s)}`);
  });

  await step('2. the in-app tracker reports the user, its route changes and custom events', async () => {
    app = await ctxB.newPage();
    app.on('console', (m) => consoleLines.push(`[app] ${m.type()}: ${m.text()}`));
    app.on('pageerror', (e) => consoleLines.push(`[app] pageerror: ${e.message}`));
    await app.goto(`${APP}/app/billing`);
    await app.waitForFunction(() => window.tippen && typeof window.tippen.track === 'function', null, { timeout: 5000 })
      .catch(() => { throw new StepFailure('window.tippen.track never appeared (tracker not loaded?)'); });
    await app.click('#to-settings');
    await app.evaluate(() => window.tippen.track('feature_used', { feature: 'export' }));
    await app.evaluate(() => window.tippen.flush());
    let user;
    for (let i = 0; i < 50 && !user; i++) {
      user = (await overview()).users.find((u) => u.userId === USER && u.route === '/app/settings');
      if (!user) await sleep(100);
    }
    assert(user, `the user never showed route /app/settings in the overview: ${JSON.stringify(await overview())}`);
    assert(user.userEmail === 'jane@acme.example' && user.subscriptionTier === 'free_trial',
      `identity from the data- attributes: ${JSON.stringify(user)}`);
    // route /app/billing, page_time + route /app/settings, click, custom
    assert(user.eventCount >= 5, `expected at least 5 events, got ${JSON.stringify(user)}`);
    assert(user.needsSupport === false, 'no trigger holds yet');
  });

  await step('3. four errors within a minute: the dashboard shows the alert, Slack gets one message', async () => {
    const t0 = now();
    await app.click('#break');
    const ms = await waitInDashboard((u) => {
      const tr = document.querySelector(`#support-alerts tr[data-user-id="${u}"]`);
      return tr && tr.querySelector('.support-reason[data-trigger="error_burst"]');
    }, USER, 20000, 'no error_burst alert row for the user');
    timings.alertShownMs = now() - t0;
    const s = await panelState();
    const row = s.rows.find((r) => r.user === USER);
    assert(s.count === '1', `the count says ${s.count}`);
    assert(row.page === '/app/settings', `page: ${row.page}`);
    assert(/\d+s|\d+m/.test(row.timeOnPage), `time on page: ${row.timeOnPage}`);
    assert(/ago$/.test(row.since), `needs help since: ${row.since}`);
    assert(row.text.includes('jane@acme.example') && row.text.includes('Failed to load invoice'),
      `row text: ${row.text}`);
    void ms;
    // Slack: exactly one message (and no second one a little later).
    for (let i = 0; i < 50 && slackPosts.length === 0; i++) await sleep(100);
    await sleep(1500);
    assert(slackPosts.length === 1, `expected exactly one Slack message, got ${slackPosts.length}: ${JSON.stringify(slackPosts)}`);
    timings.slackAfterAlertMs = slackPosts[0].at - t0;
    const text = JSON.stringify(slackPosts[0].body);
    for (const part of [USER, 'jane@acme.example', 'Free Trial', '/app/settings', 'Errors: &gt; 3 in 5 minutes',
      `${PUBLIC_URL}/dashboard#support=${USER}`]) {
      assert(text.includes(part), `the Slack message lacks ${part}: ${text}`);
    }
    await dash.screenshot({ path: path.join(ARTIFACTS, 'support-dashboard.png'), fullPage: true }).catch(() => {});
    const log = fs.readFileSync(server.logFile, 'utf8');
    assert(!log.includes('hooksecret42'), 'the webhook URL appears in the server log');
    assert(log.includes('Slack notified'), 'the server did not log the delivery');
  });

  await step('4. the Slack link opens the dashboard on that user', async () => {
    const link = slackPosts[0].body.blocks.find((b) => b.type === 'actions').elements[0].url;
    const page = await ctxA.newPage();
    await page.goto(link.replace(PUBLIC_URL, BASE) + '');
    // The key is in this browser's storage from step 1.
    await page.waitForFunction((u) => {
      const tr = document.querySelector(`#support-alerts tr[data-user-id="${u}"]`);
      return tr && tr.classList.contains('support-focus');
    }, USER, { timeout: 5000 }).catch(() => { throw new StepFailure(`${link}: the user's row is not highlighted`); });
    await page.close();
  });

  await step('4b. the user view, 1366 px wide: journey, errors, why flagged, and Invite to a call', async () => {
    await dash.setViewportSize({ width: 1366, height: 900 });
    await dash.click(`#support-alerts tr[data-user-id="${USER}"] button.support-open`);
    await waitInDashboard((u) => {
      const v = document.getElementById('user-view');
      return v && !v.hidden && v.getAttribute('data-user-id') === u && v.hasAttribute('data-loaded');
    }, USER, 5000, 'the user view never loaded');
    const view = await dash.evaluate(() => {
      const rows = (sel) => Array.from(document.querySelectorAll(sel));
      const v = document.getElementById('user-view');
      const invite = document.getElementById('user-invite');
      const box = invite.getBoundingClientRect();
      return {
        title: document.getElementById('user-title').textContent,
        journey: rows('#user-journey tbody tr').map((tr) => ({
          route: tr.getAttribute('data-route'),
          time: tr.querySelector('td.dur').textContent,
          current: tr.hasAttribute('data-current'),
        })),
        errors: rows('#user-errors tbody tr td.msg').map((td) => td.textContent),
        flags: rows('#user-flags .user-flag').map((f) => [f.getAttribute('data-trigger'), f.textContent]),
        timeline: rows('#user-timeline tbody tr').map((tr) => tr.getAttribute('data-type')),
        live: !document.getElementById('user-live').hidden,
        inviteVisible: box.width > 0 && box.left >= 0 && box.right <= window.innerWidth,
        overflow: v.scrollWidth - v.clientWidth,
        pageOverflow: document.documentElement.scrollWidth - window.innerWidth,
      };
    });
    const routes = view.journey.map((s) => s.route);
    assert(JSON.stringify(routes) === JSON.stringify(['/app/billing', '/app/settings']),
      `journey: ${JSON.stringify(view.journey)}`);
    assert(view.journey[1].current && !view.journey[0].current, `the current page: ${JSON.stringify(view.journey)}`);
    assert(view.journey.every((s) => /^\d+(s|m \d+s|h \d+m)$/.test(s.time)), `time per page: ${JSON.stringify(view.journey)}`);
    const expected = [4, 3, 2, 1].map((i) => `Failed to load invoice #${i}`);
    assert(expected.every((m, i) => (view.errors[i] || '').includes(m)) && view.errors.length === 4,
      `errors (newest first): ${JSON.stringify(view.errors)}`);
    assert(view.flags.length === 1 && view.flags[0][0] === 'error_burst' && view.flags[0][1] === 'Errors: > 3 in 5 minutes',
      `why flagged: ${JSON.stringify(view.flags)}`);
    assert(view.title.includes('jane@acme.example'), `title: ${view.title}`);
    assert(view.timeline[0] === 'error' || view.timeline.includes('error'), `timeline: ${JSON.stringify(view.timeline)}`);
    assert(view.overflow <= 0 && view.pageOverflow <= 0,
      `the view overflows a 1366 px window by ${view.overflow} px (page by ${view.pageOverflow} px)`);
    // The user is also a live visitor (the visitor tracker runs on the app page).
    assert(view.live && view.inviteVisible, `"Invite to a call" is not shown in view: ${JSON.stringify(view)}`);
    await dash.screenshot({ path: path.join(ARTIFACTS, 'support-user-view.png'), fullPage: true }).catch(() => {});
    const visitorId = await app.evaluate(() => window.tippen.visitorId);
    assert(typeof visitorId === 'string' && visitorId, 'the app page has no visitor id');
    await dash.click('#user-invite');
    await waitInDashboard((v) => {
      const state = document.getElementById('user-invite-state');
      const row = document.querySelector(`#visitors tr[data-visitor-id="${v}"] .invite-state`);
      return state && /invite (sent|delivered|seen)/.test(state.textContent) && row && /sent|delivered|seen/.test(row.textContent);
    }, visitorId, 5000, 'the invite from the user view never reached the visitor\'s row');
    await dash.screenshot({ path: path.join(ARTIFACTS, 'support-user-view-invited.png'), fullPage: true }).catch(() => {});
  });

  await step('5. pagehide sends what is left with sendBeacon', async () => {
    const before = (await overview()).users.find((u) => u.userId === USER).eventCount;
    await app.evaluate(() => window.tippen.track('about_to_leave'));
    await app.goto('about:blank');
    let after = before;
    for (let i = 0; i < 50 && after <= before; i++) {
      await sleep(100);
      after = (await overview()).users.find((u) => u.userId === USER).eventCount;
    }
    // the custom event and the page_time of pagehide
    assert(after >= before + 2, `events before ${before}, after leaving ${after}`);
    assert(slackPosts.length === 1, `still exactly one Slack message, got ${slackPosts.length}`);
  });

  await step('6. verified identities: a page with the backend\'s userHash is tracked, a forged one is refused', async () => {
    const page = await ctxB.newPage();
    page.on('console', (m) => consoleLines.push(`[verified] ${m.type()}: ${m.text()}`));
    const visit = async (url) => {
      await page.goto(url);
      await page.waitForFunction(() => window.tippen && typeof window.tippen.flush === 'function', null, { timeout: 5000 })
        .catch(() => { throw new StepFailure(`${url}: the tracker never loaded`); });
      // Resolves once the batch has been answered (accepted, or refused and dropped).
      const answered = page.waitForResponse((r) => r.url().endsWith('/api/track/user-activity'), { timeout: 5000 })
        .catch(() => { throw new StepFailure(`${url}: no activity batch was sent`); });
      await page.evaluate(() => window.tippen.flush());
      return (await answered).status();
    };
    const good = await visit(`${APP}/verified/good`);
    assert(good === 200, `the verified user's batch answered ${good}`);
    const forged = await visit(`${APP}/verified/forged`);
    assert(forged === 401, `the forged batch answered ${forged}, expected 401`);
    const users = (await overview(V_SECRET_KEY)).users.map((u) => u.userId);
    assert(users.includes('user_verified'), `user_verified is not listed: ${JSON.stringify(users)}`);
    assert(!users.includes('user_forged'), `the forged user was stored: ${JSON.stringify(users)}`);
    await page.close();
  });
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    say(`FAIL interrupted (${sig})`);
    stopServer();
    process.exit(1);
  });
}

const watchdog = setTimeout(() => {
  say(`FAIL the test did not finish within ${WATCHDOG_MS / 1000} s`);
  stopServer();
  process.exit(1);
}, WATCHDOG_MS);

let ok = false;
try {
  await main();
  ok = true;
} catch (e) {
  if (!(e && e.reported)) say(`FAIL ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
  try {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    if (dash && !dash.isClosed()) await dash.screenshot({ path: path.join(ARTIFACTS, 'support-dashboard-failed.png'), fullPage: true });
    if (app && !app.isClosed()) await app.screenshot({ path: path.join(ARTIFACTS, 'support-app-failed.png'), fullPage: true });
  } catch { /* best effort */ }
  for (const line of consoleLines.slice(-40)) say(`   ${line}`);
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
  stopServer();
  slack.close();
  appServer.close();
}
say(`${ok ? 'PASS' : 'FAIL'} support e2e: ${passed} step(s) passed; timings ${JSON.stringify(timings)}`);
process.exit(ok ? 0 : 1);
