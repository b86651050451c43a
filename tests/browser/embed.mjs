// The embedding example's pages in headless Chromium: tippen served under /tippen by a shop on
// axum (examples/embed-axum). The shop's home page carries the tracker from
// /tippen/tippen-tracker.js; the tracker must send to /tippen/track/... and open
// /tippen/ws/visitor, and the dashboard served at /tippen/dashboard must open
// /tippen/ws/dashboard, list the visitor and drop it when its tab closes.
//
// Environment: TIPPEN_EMBED_BIN (the tippen-embed-axum binary, required), TIPPEN_ARTIFACTS
// (screenshots and the app's log on failure), TIPPEN_CHROMIUM. The app listens on a free port
// (EMBED_LISTEN=127.0.0.1:0; the address is read from its output). Exit code 0 when every step
// passed.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const APP_BIN = process.env.TIPPEN_EMBED_BIN || '';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts'));
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const SECRET_KEY = 'sk_shop_secret'; // the example's demo keys (examples/embed-axum/src/main.rs)
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const WATCHDOG_MS = 60000;

const say = (line) => process.stdout.write(line + '\n');
class StepFailure extends Error {}
function assert(cond, message) { if (!cond) throw new StepFailure(message); }

let app;
let appLog = '';
let browser;
let dash;
let shop;

function startApp() {
  assert(APP_BIN && fs.existsSync(APP_BIN), `TIPPEN_EMBED_BIN (${APP_BIN || 'unset'}) is not the tippen-embed-axum binary`);
  app = spawn(APP_BIN, [], {
    env: { ...process.env, EMBED_LISTEN: '127.0.0.1:0', RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  app.stderr.on('data', (c) => { appLog += c; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new StepFailure(`no address from the app within 10 s: ${appLog}`)), 10000);
    app.stdout.on('data', (c) => {
      appLog += c;
      const m = /shop:\s+(http:\/\/127\.0\.0\.1:\d+)\//.exec(appLog);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    app.once('exit', (code) => { clearTimeout(timer); reject(new StepFailure(`the app exited with ${code}: ${appLog}`)); });
  });
}

async function step(name, fn) {
  const t0 = Date.now();
  say(`-- ${name}`);
  await fn();
  say(`ok   ${name} (${Date.now() - t0} ms)`);
}

async function waitInDashboard(fn, arg, timeoutMs, message) {
  try {
    await dash.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 50 });
  } catch (e) {
    if (!/Timeout/i.test(String(e && e.message))) throw e;
    const rows = await dash.evaluate(() => Array.from(document.querySelectorAll('#visitors tr[data-visitor-id]'))
      .map((tr) => tr.getAttribute('data-visitor-id')));
    throw new StepFailure(`${message} (waited ${timeoutMs} ms); the dashboard lists ${JSON.stringify(rows)}`);
  }
}

async function main() {
  const base = await startApp();
  say(`the shop: ${base}/, tippen under ${base}/tippen`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });

  const dashSockets = [];
  await step('the dashboard at /tippen/dashboard connects to /tippen/ws/dashboard', async () => {
    dash = await (await browser.newContext()).newPage();
    dash.on('websocket', (ws) => dashSockets.push(new URL(ws.url()).pathname));
    await dash.goto(`${base}/tippen/dashboard?apiKey=${SECRET_KEY}`);
    await waitInDashboard(() => (document.getElementById('connection-state') || {}).textContent === 'connected',
      null, 5000, '#connection-state never read "connected"');
    assert(dashSockets.includes('/tippen/ws/dashboard'), `dashboard sockets: ${JSON.stringify(dashSockets)}`);
  });

  const requests = [];
  const shopSockets = [];
  let visitorId;
  await step("the shop's page tracks through /tippen and the dashboard lists the visitor", async () => {
    shop = await (await browser.newContext()).newPage();
    shop.on('request', (r) => { if (r.method() === 'POST') requests.push(new URL(r.url()).pathname); });
    shop.on('websocket', (ws) => shopSockets.push(new URL(ws.url()).pathname));
    await shop.goto(`${base}/`);
    await shop.waitForFunction(() => window.tippen && window.tippen.visitorId, null, { timeout: 5000 });
    visitorId = await shop.evaluate(() => window.tippen.visitorId);
    await waitInDashboard((id) => !!document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`),
      visitorId, 5000, `visitor ${visitorId} never listed`);
    assert(requests.includes('/tippen/track/visitor'), `the tracker's POSTs: ${JSON.stringify(requests)}`);
    assert(requests.every((p) => p.startsWith('/tippen/')), `a POST outside /tippen: ${JSON.stringify(requests)}`);
  });

  await step("the tracker's visitor socket opens at /tippen/ws/visitor", async () => {
    for (let i = 0; i < 50 && !shopSockets.includes('/tippen/ws/visitor'); i++) await new Promise((r) => setTimeout(r, 100));
    assert(shopSockets.includes('/tippen/ws/visitor'), `the shop page's sockets: ${JSON.stringify(shopSockets)}`);
  });

  await step('closing the tab removes the visitor (the exit beacon goes to /tippen/track/leave)', async () => {
    await shop.close({ runBeforeUnload: true });
    shop = null;
    await waitInDashboard((id) => !document.querySelector(`#visitors tr[data-visitor-id="${CSS.escape(id)}"]`),
      visitorId, 10000, `visitor ${visitorId} still listed after its tab closed`);
  });
}

const watchdog = setTimeout(() => { say(`FAIL: the test did not finish within ${WATCHDOG_MS} ms`); process.exit(1); }, WATCHDOG_MS);
let failed = false;
try {
  await main();
  say('embed: every step passed');
} catch (e) {
  failed = true;
  say(`FAIL ${e instanceof StepFailure ? e.message : (e && e.stack) || e}`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const [name, page] of [['embed-dashboard.png', dash], ['embed-shop.png', shop]]) {
    if (page) await page.screenshot({ path: path.join(ARTIFACTS, name) }).catch(() => {});
  }
  fs.writeFileSync(path.join(ARTIFACTS, 'embed-app.log'), appLog);
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
  if (app && app.exitCode === null) app.kill('SIGTERM');
}
process.exit(failed ? 1 : 0);
