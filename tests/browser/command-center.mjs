// The operator's Command Center in headless Chromium (issue 20), on a running tippen server
// configured with an operator token: sign-in (a wrong token refused), a site created from the
// page (its keys shown once), tracking with those keys at once, the site's row and the totals
// with the right counts (live visitors, visits today once a visit closed), a reload keeping
// the session, disabling the site from the page (its keys refused), and the audit log naming
// the operator's actions.
//
//   TIPPEN_BASE_URL        e.g. http://127.0.0.1:18787
//   TIPPEN_OPERATOR_TOKEN  the server's TIPPEN_OPERATOR_TOKEN
//   TIPPEN_ARTIFACTS       folder for screenshots (default <repo>/test-artifacts/browser)
//   TIPPEN_CHROMIUM        the browser (default /usr/bin/chromium)
//
// Exit code 0 when every step passed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiWith, assert, finish, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.TIPPEN_BASE_URL || 'http://127.0.0.1:18787').replace(/\/+$/, '');
const TOKEN = process.env.TIPPEN_OPERATOR_TOKEN || '';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'browser'));
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'];

const operator = apiWith(BASE, TOKEN);

// Polls `fn` until it returns a truthy value or `ms` pass.
async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
}

async function track(key, event, visitorId, url) {
  const res = await fetch(`${BASE}/track/visitor`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': key },
    body: JSON.stringify({ event, visitor: { visitorId, url, tabId: 'tab1', timestamp: new Date().toISOString() }, website: 'customer.test' }),
  });
  return res.status;
}

async function main() {
  assert(TOKEN, 'TIPPEN_OPERATOR_TOKEN is not set');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const run = Date.now().toString(36);
  const siteId = `cc-${run}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const problems = [];
  let keys = {};
  // Visitor b stays, heartbeating as its tracker would (the server under test expires a
  // visible tab 3 s after its last event), until its site is disabled.
  let beating = null;
  try {
    const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    // The cell of `field` in the row of `site`, as the page shows it.
    const cell = (site, field) => page
      .locator(`#sites tr[data-site="${site}"] td[data-field="${field}"]`)
      .textContent({ timeout: 2000 })
      .catch(() => null);
    const total = (label) => page
      .locator(`#totals [data-total="${label}"] .value`)
      .textContent({ timeout: 2000 })
      .catch(() => null);

    await step('a wrong operator token is refused and the sign-in shown again', async () => {
      await page.goto(`${BASE}/command-center`);
      await page.fill('#token', 'not-the-operator-token-0123456789');
      await page.click('#login-form button');
      await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
      await until('the refusal shown', async () => /invalid operator token/.test(await page.textContent('#error')));
    });

    await step('the operator signs in: every site is listed', async () => {
      await page.fill('#token', TOKEN);
      await page.click('#login-form button');
      await page.waitForSelector('#app:not([hidden])', { timeout: 5000 });
      const expected = (await operator('GET', '/api/operator/sites')).sites.map((s) => s.id);
      assert(expected.length > 0, 'the server has sites');
      await until('every site in the table', async () => {
        const shown = await page.$$eval('#sites tbody tr', (rows) => rows.map((r) => r.dataset.site));
        return expected.every((id) => shown.includes(id));
      });
    });

    await step('a site is created from the page; its keys are shown once', async () => {
      await page.fill('#new-id', siteId);
      await page.fill('#new-name', `Customer ${run}`);
      await page.click('#create button');
      await page.waitForSelector('#keys:not([hidden]) [data-key="secret"]', { timeout: 5000 });
      const text = await page.textContent('#keys');
      const pk = /^public key: (\S+)$/.exec(await page.textContent('#keys [data-key="public"]'));
      const sk = /^secret key: (\S+)$/.exec(await page.textContent('#keys [data-key="secret"]'));
      assert(pk && sk && text.includes(siteId), `keys shown: ${text}`);
      keys = { public: pk[1], secret: sk[1] };
      await until('the new row with 0 live visitors', async () => (await cell(siteId, 'liveVisitors')) === '0');
    });

    await step('tracking works with the new keys at once; the row counts the live visitors', async () => {
      for (const v of ['a', 'b']) {
        const status = await track(keys.public, 'pageview', `cc_${run}_${v}`, `https://customer.test/${v}`);
        assert(status === 200, `tracking with the new public key: HTTP ${status}`);
      }
      beating = setInterval(() => {
        track(keys.public, 'heartbeat', `cc_${run}_b`, 'https://customer.test/b').catch(() => {});
      }, 500);
      await page.reload();
      await page.waitForSelector('#app:not([hidden])', { timeout: 5000 });
      await until('2 live visitors in the row after a reload', async () => (await cell(siteId, 'liveVisitors')) === '2');
    });

    await step('a visitor leaves: live visitors 1, visits today 1; the totals add up', async () => {
      const res = await fetch(`${BASE}/track/leave`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': keys.public },
        body: JSON.stringify({ visitorId: `cc_${run}_a`, tabId: 'tab1' }),
      });
      assert(res.ok, `leave: HTTP ${res.status}`);
      await until('live 1 and visits today 1', async () =>
        (await cell(siteId, 'liveVisitors')) === '1' && (await cell(siteId, 'visitsToday')) === '1', 15000);
      const api = await operator('GET', '/api/operator/overview');
      const rows = await page.$$eval('#sites tbody tr', (trs) => trs.map((r) => ({
        id: r.dataset.site, live: r.querySelector('td[data-field="liveVisitors"]').textContent,
      })));
      const sum = rows.reduce((n, r) => n + Number(r.live), 0);
      await until('the live visitors total equal to the rows and the API', async () => {
        const shown = await total('Live visitors');
        return shown === String(sum) && Number(shown) === api.totals.liveVisitors;
      });
      const mine = api.sites.find((s) => s.id === siteId);
      assert(mine && mine.overview.visitsToday === 1 && mine.overview.liveVisitors === 1, `API: ${JSON.stringify(mine)}`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'command-center.png'), fullPage: true });
    });

    await step('a viewer\'s token opens the dashboard without invite controls, named', async () => {
      const made = await apiWith(BASE, keys.secret)('POST', '/api/members', { name: 'Vera Viewer', role: 'viewer' });
      const dash = await ctx.newPage();
      dash.on('pageerror', (e) => problems.push(e.message));
      await dash.goto(`${BASE}/dashboard#apiKey=${encodeURIComponent(made.token)}`);
      await dash.waitForSelector(`#board tr[data-visitor-id="cc_${run}_b"]`, { timeout: 8000 });
      await until('the header naming the viewer', async () =>
        /Vera Viewer · viewer/.test(await dash.textContent('#whoami')));
      const visible = await dash.isVisible(`#board tr[data-visitor-id="cc_${run}_b"] .invite-button`);
      assert(!visible, 'no invite button for a viewer');
      await dash.close();
      // The same row shows the button to the site's admin (so its absence above is the role's).
      const admin = await ctx.newPage();
      await admin.goto(`${BASE}/dashboard#apiKey=${encodeURIComponent(keys.secret)}`);
      await admin.waitForSelector(`#board tr[data-visitor-id="cc_${run}_b"] .invite-button`, { state: 'visible', timeout: 8000 });
      await admin.close();
    });

    await step('the site is disabled from the page: its keys are refused', async () => {
      clearInterval(beating);
      await page.click(`#sites tr[data-site="${siteId}"] button`);
      await until('the row marked disabled', async () =>
        (await page.textContent(`#sites tr[data-site="${siteId}"] .badge`).catch(() => '')) === 'disabled');
      const status = await track(keys.public, 'heartbeat', `cc_${run}_b`, 'https://customer.test/b');
      assert(status === 403, `tracking on a disabled site: HTTP ${status}`);
    });

    await step('the audit log names the operator\'s actions on the site', async () => {
      await until('site.create and site.update in the audit table', async () => {
        const rows = await page.$$eval('#audit tbody tr', (trs) => trs.map((r) => [...r.children].map((c) => c.textContent)));
        const mine = rows.filter((r) => r[1] === siteId);
        return mine.some((r) => r[3] === 'site.create' && r[2] === 'operator')
          && mine.some((r) => r[3] === 'site.update' && r[2] === 'operator' && r[5] === 'done');
      });
    });
    assert(problems.length === 0, `page errors: ${problems.join('; ')}`);
  } finally {
    clearInterval(beating);
    await browser.close();
  }
}

finish('command center', main);
