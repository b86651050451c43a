// The dashboard's History, Companies and Analytics tabs in headless Chromium, on a running
// tippen server with history (the reference server keeps it by default).
//
//   TIPPEN_BASE_URL        e.g. http://127.0.0.1:18787
//   TIPPEN_KEY             a legacy key (tracks and opens the dashboard)
//   TIPPEN_ARTIFACTS       folder for screenshots (default <repo>/test-artifacts/browser)
//   TIPPEN_LEAVE_LINGER_MS the server's leave linger (default 2000)
//   TIPPEN_CHROMIUM        the browser (default /usr/bin/chromium)
//
// Visits are made over the tracking API (the tracker itself is e2e.mjs's subject): a visitor
// of three pages, then 26 one-page visitors (so the history has a second page). The test then
// checks the History tab (the visit's row, its page path in order, a filter, paging, the CSV
// download parsed), the Companies tab and the Analytics tab (KPIs, the SVG charts), with a
// screenshot of each. Exit code 0 when every step passed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiWith, assert, finish, say, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.TIPPEN_BASE_URL || 'http://127.0.0.1:18787').replace(/\/+$/, '');
const KEY = process.env.TIPPEN_KEY || 'demo_api_key';
const ARTIFACTS = path.resolve(process.env.TIPPEN_ARTIFACTS || path.join(here, '..', '..', 'test-artifacts', 'browser'));
const LINGER = Number(process.env.TIPPEN_LEAVE_LINGER_MS || 2000);
const CHROMIUM = process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'];

const api = apiWith(BASE, KEY);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const pageview = (visitorId, url) => api('POST', '/track/visitor', {
  event: 'pageview',
  visitor: {
    visitorId, url, tabId: 'tab1', timestamp: new Date().toISOString(),
    userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    referrer: 'https://news.example/launch',
  },
  website: 'history.test',
});

// Waits until `GET /api/visits?visitor=` lists every visitor in `ids` (closed after the
// linger and the server's sweep).
async function closed(ids, timeoutMs) {
  const t0 = Date.now();
  const pending = new Set(ids);
  while (pending.size) {
    for (const id of [...pending]) {
      const body = await api('GET', `/api/visits?visitor=${encodeURIComponent(id)}`);
      if (body.visits.length) pending.delete(id);
    }
    if (!pending.size) break;
    assert(Date.now() - t0 < timeoutMs, `visits not closed within ${timeoutMs} ms: ${[...pending].join(', ')}`);
    await sleep(100);
  }
}

// A standard CSV parse (RFC 4180: quoted fields, doubled quotes, CRLF), for the download.
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(field); field = ''; } else if (c === '\r') { /* CRLF */ } else if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; } else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const run = Date.now().toString(36);
  const visitor = `visitor_hist_${run}`;
  const paths = [`/h-${run}/`, `/h-${run}/pricing`, `/h-${run}/docs`];
  const gaps = [400, 700, 300];

  await step('a visitor browses three pages and leaves; 26 others view one page each', async () => {
    for (let i = 0; i < 3; i++) {
      await pageview(visitor, `https://history.test${paths[i]}${i === 0 ? '?utm_source=launch' : ''}`);
      await sleep(gaps[i]);
    }
    await api('POST', '/track/leave', { visitorId: visitor, tabId: 'tab1' });
    const others = [];
    for (let i = 0; i < 26; i++) {
      const id = `visitor_hist_${run}_${i}`;
      others.push(id);
      await pageview(id, `https://history.test/h-${run}/other`);
      await api('POST', '/track/leave', { visitorId: id, tabId: 'tab1' });
    }
    await closed([visitor, ...others], LINGER + 8000);
  });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const problems = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${BASE}/dashboard?apiKey=${encodeURIComponent(KEY)}`);

    await step('the tabs show; History lists the visit with its page path in order', async () => {
      await page.waitForSelector('#tabs:not([hidden]) button[data-tab="history"]', { timeout: 5000 });
      await page.click('#tabs button[data-tab="history"]');
      await page.waitForSelector(`#history-table tr[data-visit-id]`, { timeout: 5000 });
      await page.fill('#history-filters input[name="page"]', paths[1]);
      await page.click('#history-filters button[type="submit"]');
      await page.waitForFunction((v) => {
        const rows = document.querySelectorAll('#history-table tbody tr');
        return rows.length === 1 && rows[0].textContent.includes(v);
      }, visitor, { timeout: 5000 });
      await page.click('#history-table tbody tr');
      await page.waitForSelector('#visit-detail:not([hidden]) #visit-pages li', { timeout: 5000 });
      const items = await page.$$eval('#visit-pages li', (lis) => lis.map((li) => li.textContent));
      assert(items.length === 3, `three pages, got ${JSON.stringify(items)}`);
      items.forEach((t, i) => assert(t.startsWith(paths[i] + ' — '), `page ${i + 1} is ${paths[i]}: ${t}`));
      await page.screenshot({ path: path.join(ARTIFACTS, 'history-visit.png'), fullPage: true });
    });

    await step('History pages through the visits with Next page', async () => {
      await page.fill('#history-filters input[name="page"]', '');
      await page.click('#history-filters button[type="submit"]');
      await page.waitForFunction(() => document.querySelectorAll('#history-table tbody tr').length === 25
        && !document.getElementById('history-next').disabled, null, { timeout: 5000 });
      const first = await page.$$eval('#history-table tbody tr', (t) => t.map((r) => r.dataset.visitId));
      await page.click('#history-next');
      await page.waitForFunction(() => (document.getElementById('history-status').textContent || '').startsWith('page 2'), null, { timeout: 5000 });
      const second = await page.$$eval('#history-table tbody tr', (t) => t.map((r) => r.dataset.visitId));
      assert(second.length > 0, 'a second page of visits');
      assert(second.every((id) => !first.includes(id)), 'the second page repeats none of the first');
      await page.screenshot({ path: path.join(ARTIFACTS, 'history-page-2.png'), fullPage: true });
    });

    await step('the CSV download parses and holds the visit', async () => {
      await page.click('#history-first');
      await page.fill('#history-filters input[name="company"]', '');
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 5000 }), page.click('#history-csv')]);
      const file = path.join(ARTIFACTS, 'visits.csv');
      await download.saveAs(file);
      const rows = parseCsv(fs.readFileSync(file, 'utf8'));
      const header = rows[0];
      const col = (name) => header.indexOf(name);
      assert(col('visitId') === 0 && col('pages') > 0, `a header row: ${header}`);
      const mine = rows.filter((r) => r[col('visitorId')] === visitor);
      assert(mine.length === 1, `one row of ${visitor}`);
      const pagesCell = mine[0][col('pages')];
      const at = paths.map((p) => pagesCell.indexOf(p + ' ('));
      assert(at.every((x) => x >= 0) && at[0] < at[1] && at[1] < at[2], `pages in order: ${pagesCell}`);
      assert(mine[0][col('utmSource')] === 'launch', 'utmSource launch');
      assert(mine[0][col('browser')] === 'Chrome', `browser Chrome: ${mine[0][col('browser')]}`);
    });

    await step('Companies shows its table (the demo has no enrichment: none identified)', async () => {
      await page.click('#tabs button[data-tab="companies"]');
      await page.waitForFunction(() => !document.getElementById('companies-empty').hidden
        || document.querySelectorAll('#companies-table tbody tr').length > 0, null, { timeout: 5000 });
      await page.screenshot({ path: path.join(ARTIFACTS, 'history-companies.png'), fullPage: true });
    });

    await step('Analytics counts the visits and draws the charts', async () => {
      await page.click('#tabs button[data-tab="analytics"]');
      await page.waitForSelector('#analytics-kpis [data-kpi="visits"]', { timeout: 5000 });
      const visits = Number(await page.$eval('#analytics-kpis [data-kpi="visits"] .v', (n) => n.textContent));
      assert(visits >= 27, `at least 27 visits, got ${visits}`);
      await page.waitForSelector('#chart-time svg polyline.series-visits', { timeout: 5000 });
      const labels = await page.$$eval('#chart-pages svg text', (t) => t.map((n) => n.textContent));
      assert(labels.some((l) => l.includes(`/h-${run}/other`)), `top pages name /h-${run}/other: ${labels}`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'history-analytics.png'), fullPage: true });
    });

    await step('Live is back with one click', async () => {
      await page.click('#tabs button[data-tab="live"]');
      await page.waitForSelector('#board:not([hidden])', { timeout: 2000 });
      assert(await page.$eval('#view-analytics', (n) => n.hidden), 'the analytics view hides');
    });
    assert(problems.length === 0, `uncaught page errors: ${problems.join('; ')}`);
  } finally {
    await browser.close();
  }
}

finish('history dashboard', main);
