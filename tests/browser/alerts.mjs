// The dashboard's alert views in headless Chromium (issue 16), on a running tippen server:
// an alert rule made through the API, a visitor who matches it, and what a salesperson
// sees — the live row marked with the rule, the Alerts tab listing the rule and the alert,
// and a Slack button's link (#visitor=<id>) selecting the visitor's row.
//
//   TIPPEN_BASE_URL   e.g. http://127.0.0.1:18787
//   TIPPEN_KEY        a legacy key (tracks and opens the dashboard)
//   TIPPEN_ARTIFACTS  folder for screenshots (default <repo>/test-artifacts/browser)
//   TIPPEN_CHROMIUM   the browser (default /usr/bin/chromium)
//
// Exit code 0 when every step passed. The rule is deleted at the end.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiWith, assert, finish, say, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.TIPPEN_BASE_URL || 'http://127.0.0.1:18787').replace(/\/+$/, '');
const KEY = process.env.TIPPEN_KEY || 'demo_api_key';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'browser'));
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'];

const api = apiWith(BASE, KEY);

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const run = Date.now().toString(36);
  const rule = `browser-${run}`;
  const ruleName = `Pricing visit ${run}`;
  const visitor = `visitor_alert_${run}`;
  const bystander = `visitor_quiet_${run}`;

  await step('an alert rule is made through the API (a page of this run, no cooldown)', async () => {
    const created = await api('POST', '/api/alert-rules', {
      id: rule, name: ruleName, when: { pages: [{ path: `/a-${run}/pricing` }] }, cooldownMinutes: 0,
    });
    assert(created.source === 'api', `created: ${JSON.stringify(created)}`);
  });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const problems = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${BASE}/dashboard#apiKey=${encodeURIComponent(KEY)}`);
    await page.waitForSelector('#tabs:not([hidden])', { timeout: 5000 });

    await step('a visitor opens the pricing page: its live row is marked with the rule; another is not', async () => {
      const view = (id, p) => api('POST', '/track/visitor', {
        event: 'pageview',
        visitor: { visitorId: id, url: `https://alerts.test/a-${run}${p}`, tabId: 'tab1', timestamp: new Date().toISOString(),
          userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36' },
        website: 'alerts.test',
      });
      await view(bystander, '/');
      await view(visitor, '/pricing');
      const badge = `#board tr[data-visitor-id="${visitor}"] .badge.alerted`;
      await page.waitForSelector(badge, { timeout: 6000 });
      const text = await page.textContent(badge);
      assert(text.includes(ruleName), `badge: ${text}`);
      await page.waitForSelector(`#board tr[data-visitor-id="${bystander}"]`, { timeout: 3000 });
      const other = await page.$(`#board tr[data-visitor-id="${bystander}"] .badge.alerted`);
      assert(!other, 'the visitor who matched nothing is not marked');
    });

    await step('the Alerts tab lists the rule and the alert', async () => {
      await page.click('#tabs button[data-tab="alerts"]');
      await page.waitForSelector(`#rules-table tr[data-rule-id="${rule}"]`, { timeout: 5000 });
      const ruleRow = await page.textContent(`#rules-table tr[data-rule-id="${rule}"]`);
      assert(ruleRow.includes(`/a-${run}/pricing`) && ruleRow.includes('0 min') && ruleRow.includes('api'), `rule row: ${ruleRow}`);
      await page.waitForSelector('#alerts-table tbody tr', { timeout: 5000 });
      const rows = await page.$$eval('#alerts-table tbody tr', (trs) => trs.map((t) => t.textContent));
      assert(rows.some((r) => r.includes(ruleName) && r.includes(visitor)), `alerts: ${rows.join(' | ')}`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'alerts-tab.png'), fullPage: true });
    });

    await step('a Slack button\'s link (#visitor=<id>) selects the visitor\'s row on the Live tab', async () => {
      await page.click('#tabs button[data-tab="live"]');
      await page.evaluate((id) => { location.hash = 'visitor=' + encodeURIComponent(id); }, visitor);
      await page.waitForSelector(`#board tr.focused[data-visitor-id="${visitor}"]`, { timeout: 3000 });
      const focused = await page.$$eval('#board tr.focused', (trs) => trs.length);
      assert(focused === 1, `${focused} rows focused`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'alerts-focused-row.png') });
    });
    assert(problems.length === 0, `page errors: ${problems.join('; ')}`);
  } finally {
    await browser.close();
    await api('DELETE', `/api/alert-rules/${rule}`).catch((e) => say(`cleanup: ${e.message}`));
  }
}

finish('alerts dashboard', main);
