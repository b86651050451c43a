// The tracker's privacy (issue 17), in headless Chromium against a stand-in API (the page's
// requests to it are intercepted, no tippen server): URLs and referrers are sent without their
// fragment and sensitive query parameters; a 410 (the visitor was deleted) stops tracking for
// good; tippen.optOut() sends one leave and nothing more, on this page load or the next.
//
//   node tests/browser/privacy.mjs        (TIPPEN_CHROMIUM: the browser, default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tracker = fs.readFileSync(path.join(here, '../../tippen-core/assets/tippen-tracker.js'), 'utf8');
const API = 'http://api.tippen.test';

const page = (extra) => `<!doctype html><title>privacy</title>
<script src="/tracker.js" data-tippen-api-key="pk_test" data-tippen-endpoint="${API}"
        data-tippen-heartbeat-ms="300" data-tippen-strip-params="utm_secret" ${extra || ''}></script>`;

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/tracker.js')) {
    res.writeHead(200, { 'Content-Type': 'application/javascript' });
    res.end(tracker);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page());
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.TIPPEN_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  headless: true,
});
let failed = false;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed = true;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every request to the stand-in API, answered by `answer(request)` ({status, body}).
async function context(answer) {
  const ctx = await browser.newContext();
  const seen = [];
  await ctx.route(`${API}/**`, async (route) => {
    const req = route.request();
    const entry = { path: new URL(req.url()).pathname, body: req.postData() || '' };
    seen.push(entry);
    const { status, body } = answer(entry, seen);
    await route.fulfill({ status, contentType: 'application/json', body, headers: { 'Access-Control-Allow-Origin': '*' } });
  });
  return { ctx, seen };
}
const ok = () => ({ status: 200, body: '{"success":true,"sessionId":"x"}' });

try {
  // 1. Fragments and sensitive parameters never leave the page.
  {
    const { ctx, seen } = await context(ok);
    const p = await ctx.newPage();
    await p.goto(`${origin}/account?q=shoes&token=T0K3N&code=C0D3&Access_Token=AT&utm_secret=U&page=2#access_token=FRAGMENT`,
      { referer: `${origin}/login?password=PW&next=%2Faccount#id_token=IDT` });
    await sleep(700);
    const tracked = seen.filter((e) => e.path === '/track/visitor');
    check(tracked.length >= 2, `pageview and heartbeats were sent (${tracked.length})`);
    const first = JSON.parse(tracked[0].body);
    check(first.visitor.url === `${origin}/account?q=shoes&page=2`, `the URL is cleaned: ${first.visitor.url}`);
    check(first.visitor.referrer === `${origin}/login?next=%2Faccount`, `the referrer is cleaned: ${first.visitor.referrer}`);
    const all = seen.map((e) => e.body).join('\n');
    for (const secret of ['T0K3N', 'C0D3', 'AT"', 'FRAGMENT', 'PW', 'IDT', '"U"', 'utm_secret']) {
      check(!all.includes(secret), `${secret} is in no request`);
    }
    await ctx.close();
  }

  // 2. A 410 (deleted, opted out) stops tracking, for this page load and the next.
  {
    const { ctx, seen } = await context((e, all) =>
      all.filter((x) => x.path === '/track/visitor').length >= 2
        ? { status: 410, body: '{"error":"visitor v was deleted and has opted out of tracking"}' }
        : ok());
    const p = await ctx.newPage();
    await p.goto(`${origin}/`);
    await sleep(1200);
    const count = seen.length;
    check(seen.filter((e) => e.path === '/track/visitor').length === 2, `nothing after the 410 (${count} requests)`);
    check(await p.evaluate(() => window.tippen.optedOut === true), 'the opt-out is stored');
    await p.reload();
    await sleep(800);
    check(seen.length === count, `a reload sends nothing (${seen.length - count} more)`);
    await ctx.close();
  }

  // 3. tippen.optOut(): one leave for the whole visitor, then silence, on reload too.
  {
    const { ctx, seen } = await context(ok);
    const p = await ctx.newPage();
    await p.goto(`${origin}/`);
    await sleep(500);
    await p.evaluate(() => window.tippen.optOut());
    const at = seen.length;
    const leave = seen[at - 1];
    check(leave && leave.path === '/track/leave' && !JSON.parse(leave.body).tabId, 'optOut sends one leave for the visitor');
    await sleep(900);
    check(seen.length === at, `nothing after optOut (${seen.length - at} more)`);
    await p.reload();
    await sleep(800);
    check(seen.length === at, `a reload sends nothing (${seen.length - at} more)`);
    await ctx.close();
  }
} finally {
  await browser.close();
  server.close();
}
if (failed) {
  console.error('privacy: FAILED');
  process.exit(1);
}
console.log('privacy: all checks passed');
