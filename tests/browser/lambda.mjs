// The Lambda host in headless Chromium, as a user meets it on the local stack
// (scripts/test-lambda.sh): the dashboard served by the HTTP function finds its socket on the
// WebSocket API (a separate address, which the function tells its pages: TIPPEN_DASHBOARD_WS_URL,
// TIPPEN_VISITOR_WS_URL), sees a visitor of a customer site (another origin) appear live, and
// the visitor's page shows an invite popup within 1 s of the click (pushed on the visitor
// socket, not carried by the next heartbeat); closing the page removes the visitor.
//
// Environment:
//   FN_URL          the HTTP function's base URL (cargo lambda watch's function URL)
//   PUBLIC_KEY, SECRET_KEY   a site's keys
//   PROVIDER_PORT   where this test serves a stand-in video provider; the functions use
//                   http://127.0.0.1:<port>/video (TIPPEN_VIDEO_PROVIDER_URL)
//   SITE_PORT       where this test serves the customer site (default 9104)
//   LEAVE_LINGER_MS the functions' leave linger (default 2000)
//   TIPPEN_CHROMIUM, TIPPEN_ARTIFACTS
// Exit code 0 when every step passed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const FN_URL = (process.env.FN_URL || '').replace(/\/+$/, '');
const PUBLIC_KEY = process.env.PUBLIC_KEY || 'pk_a';
const SECRET_KEY = process.env.SECRET_KEY || 'sk_a';
const PROVIDER_PORT = Number(process.env.PROVIDER_PORT || 9102);
const SITE_PORT = Number(process.env.SITE_PORT || 9104);
const LINGER = Number(process.env.LEAVE_LINGER_MS || 2000);
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'lambda'));
const SITE = `http://localhost:${SITE_PORT}`;
const PROVIDER = `http://127.0.0.1:${PROVIDER_PORT}`;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WATCHDOG_MS = 90000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Date.now();
const say = (line) => process.stdout.write(line + '\n');
class StepFailure extends Error {}
function assert(cond, message) { if (!cond) throw new StepFailure(message); }
const timings = {};
const consoleLines = [];
let passed = 0;

function listen(handler, port) {
  return new Promise((resolve, reject) => {
    const s = http.createServer(handler);
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

// The video provider the HTTP function calls for POST /api/video-call (its API shape as in
// e2e.mjs), serving the guest page itself.
let sessions = 0;
const provider = await listen((req, res) => {
  if (req.method === 'POST' && req.url === '/video/create-session') {
    req.resume();
    req.on('end', () => {
      sessions += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        success: true, sessionId: `sess_${sessions}`, roomId: `room_${sessions}`,
        urls: { host: `${PROVIDER}/host/sess_${sessions}`, guest: `${PROVIDER}/guest/sess_${sessions}` },
      }));
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><h1 id="call">call</h1>');
}, PROVIDER_PORT);

// The customer's site, another origin than the function. The tracker comes from the function;
// data-tippen-endpoint only because cargo lambda watch's function URL has a path prefix (on AWS
// the HTTP API is at its host's root, and the script's origin is the endpoint).
const site = await listen((req, res) => {
  if (req.url.startsWith('/shop')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html>
<html><head><meta charset="utf-8"><title>Customer shop</title></head><body><h1>Shop</h1>
<script src="${FN_URL}/tippen-tracker.js" data-tippen-api-key="${PUBLIC_KEY}"
        data-tippen-endpoint="${FN_URL}" async></script>
</body></html>`);
  } else {
    res.writeHead(404).end();
  }
}, SITE_PORT);

let browser;
let dash;
let shop;

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

async function waitIn(page, fn, arg, timeoutMs, message) {
  try {
    await page.waitForFunction(fn, arg, { timeout: Math.max(1, timeoutMs), polling: 25 });
  } catch (e) {
    if (!/Timeout/i.test(String(e && e.message))) throw e;
    const state = await page.evaluate(() => ({
      connection: (document.getElementById('connection-state') || {}).textContent,
      rows: Array.from(document.querySelectorAll('#visitors tr[data-visitor-id]')).map((tr) => tr.getAttribute('data-visitor-id')),
    })).catch(() => '(unavailable)');
    throw new StepFailure(`${message}; the page shows ${JSON.stringify(state)}`);
  }
}

async function main() {
  assert(FN_URL, 'FN_URL is not set');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctxA = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  dash = await ctxA.newPage();
  dash.on('console', (m) => consoleLines.push(`[dashboard] ${m.type()}: ${m.text()}`));
  const dashSockets = [];
  dash.on('websocket', (ws) => dashSockets.push(ws.url()));

  await step('1. the dashboard served by the HTTP function connects to the WebSocket API it is told about', async () => {
    const t0 = now();
    await dash.goto(`${FN_URL}/dashboard?apiKey=${encodeURIComponent(SECRET_KEY)}`);
    await waitIn(dash, () => (document.getElementById('connection-state') || {}).textContent === 'connected', null, 10000,
      `#connection-state never read "connected" (sockets tried: ${JSON.stringify(dashSockets)})`);
    timings.dashboardConnectedMs = now() - t0;
    assert(dashSockets.length >= 1 && !dashSockets[0].startsWith(FN_URL.replace(/^http/, 'ws')),
      `the dashboard's socket is ${dashSockets[0]}, on the HTTP function's address`);
    say(`     socket ${dashSockets[0].replace(/apiKey=[^&]*/, 'apiKey=…')}`);
  });

  const ua = `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${browser.version()} Safari/537.36`;
  const ctxB = await browser.newContext({ viewport: { width: 1200, height: 800 }, userAgent: ua });
  shop = await ctxB.newPage();
  shop.on('console', (m) => consoleLines.push(`[shop] ${m.type()}: ${m.text()}`));
  const visitorSockets = [];
  shop.on('websocket', (ws) => {
    const entry = { url: ws.url(), open: true };
    visitorSockets.push(entry);
    ws.on('close', () => { entry.open = false; });
  });
  let visitorId;

  await step('2. a visitor of a customer site (another origin) appears on the dashboard live', async () => {
    const t0 = now();
    await shop.goto(`${SITE}/shop`);
    await shop.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 5000 });
    visitorId = await shop.evaluate(() => window.tippen.visitorId);
    await waitIn(dash, (id) => !!document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), visitorId, 5000,
      `no row for ${visitorId} within 5 s`);
    timings.visitorAppearedMs = now() - t0;
  });

  await step('3. the visitor\'s page opens its socket on the WebSocket API; an invite pops up within 1 s of the click', async () => {
    for (let i = 0; i < 100 && !visitorSockets.some((s) => s.open); i++) await sleep(50);
    assert(visitorSockets.some((s) => s.open), `the tracker opened no visitor socket that stayed open: ${JSON.stringify(visitorSockets)}`);
    assert(!visitorSockets[0].url.startsWith(FN_URL.replace(/^http/, 'ws')), `the visitor socket is ${visitorSockets[0].url}, on the HTTP function's address`);
    // Let the socket's $connect settle (the greeting is sent by an asynchronous invocation).
    await sleep(500);
    const btn = `#visitors tr[data-visitor-id="${visitorId}"] .invite-button`;
    await waitIn(dash, (sel) => { const b = document.querySelector(sel); return !!(b && !b.hidden && !b.disabled); }, btn, 3000,
      `no enabled .invite-button for ${visitorId}`);
    await shop.evaluate(() => {
      window.__shownAt = null;
      new MutationObserver((_, mo) => {
        if (document.getElementById('tippen-invite') && window.__shownAt == null) { window.__shownAt = Date.now(); mo.disconnect(); }
      }).observe(document.body, { childList: true, subtree: true });
    });
    const t0 = now();
    await dash.click(btn);
    await shop.waitForSelector('#tippen-invite', { state: 'visible', timeout: 5000 })
      .catch(() => { throw new StepFailure('#tippen-invite did not show within 5 s of the click'); });
    timings.inviteToPopupMs = (await shop.evaluate(() => window.__shownAt) || now()) - t0;
    say(`     popup ${timings.inviteToPopupMs} ms after the click (heartbeat ${30000} ms: it came on the socket)`);
    assert(timings.inviteToPopupMs <= 1000, `the popup took ${timings.inviteToPopupMs} ms (limit 1000 ms)`);
    await shop.click('#tippen-invite-decline');
  });

  await step(`4. closing the visitor's page removes it from the dashboard (leave linger ${LINGER} ms)`, async () => {
    const t0 = now();
    await shop.close({ runBeforeUnload: true });
    await waitIn(dash, (id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`), visitorId,
      LINGER + 2500, `the row of ${visitorId} was still there ${LINGER + 2500} ms after its page closed`);
    timings.closeToRemovalMs = now() - t0;
  });
}

const watchdog = setTimeout(() => { say(`FAIL the test did not finish within ${WATCHDOG_MS / 1000} s`); process.exit(1); }, WATCHDOG_MS);
let ok = false;
try {
  await main();
  ok = true;
} catch (e) {
  if (!(e && e.reported)) say(`FAIL ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
  try {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    if (dash && !dash.isClosed()) await dash.screenshot({ path: path.join(ARTIFACTS, 'lambda-dashboard-failure.png'), fullPage: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'lambda-browser-console.log'), consoleLines.join('\n') + '\n');
  } catch { /* best effort */ }
} finally {
  if (browser) await browser.close().catch(() => {});
  provider.close();
  site.close();
  clearTimeout(watchdog);
}
say(JSON.stringify({ ok, fnUrl: FN_URL, leaveLingerMs: LINGER, ...timings }));
say(`lambda browser: ${passed} passed, ${ok ? 0 : 1} failed`);
process.exit(ok ? 0 : 1);
