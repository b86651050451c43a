// Visit history end to end on the Lambda host: three page views and an exit beacon through
// the HTTP function make one visit in DynamoDB (tippen_lambda::DynamoHistory), with those
// pages in order and their times, once the leave linger's sweep closed it:
//   1. three page views of one tab (/, /pricing, /docs), 300 ms apart, the first with a
//      referrer, UTM parameters and a CloudFront-Viewer-Country header the function must
//      ignore (TIPPEN_GEO_HEADERS is not set: no CloudFront in front);
//   2. the exit beacon; the HTTP function asks the sweep function to close the visitor when
//      the linger ends;
//   3. GET /api/visits?visitor=… (read from DynamoDB) until the visit is there (the close is
//      asynchronous), at most linger + 5 s: exactly one visit, pages /, /pricing, /docs with
//      durations, end reason left, no country; GET /api/visits/{id} answers the same visit;
//   4. DELETE /api/visitors/{id} erases it: /api/visits?visitor=… is empty.
// Env: FN_URL, PUBLIC_KEY, SECRET_KEY, LEAVE_LINGER_MS.
const { FN_URL, PUBLIC_KEY, SECRET_KEY } = process.env;
const linger = Number(process.env.LEAVE_LINGER_MS ?? 2000);
const id = `historycheck_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
const fail = (msg) => { console.error(`history check FAILED: ${msg}`); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const pages = ['/?utm_source=newsletter', '/pricing', '/docs'];
for (const [i, path] of pages.entries()) {
  const res = await fetch(`${FN_URL}/track/visitor`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-tippen-api-key': PUBLIC_KEY,
      'cloudfront-viewer-country': 'DE',
    },
    body: JSON.stringify({
      event: 'pageview',
      visitor: { visitorId: id, tabId: 't', url: `https://history.test${path}`, ...(i === 0 ? { referrer: 'https://news.example/item' } : {}) },
      website: 'history.test',
    }),
  });
  if (res.status !== 200) fail(`page view ${path} answered ${res.status} ${await res.text()}`);
  await sleep(300);
}
const left = await fetch(`${FN_URL}/track/leave?apiKey=${encodeURIComponent(PUBLIC_KEY)}`, {
  method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify({ visitorId: id, tabId: 't' }),
});
const leftAt = Date.now();
if (left.status !== 200) fail(`the exit beacon answered ${left.status}`);

const get = async (path) => {
  const res = await fetch(`${FN_URL}${path}`, { headers: { 'x-tippen-api-key': SECRET_KEY } });
  const text = await res.text();
  if (res.status !== 200) fail(`GET ${path} answered ${res.status} ${text}`);
  return JSON.parse(text);
};
let visits = [];
while (visits.length === 0 && Date.now() - leftAt < linger + 5000) {
  visits = (await get(`/api/visits?visitor=${encodeURIComponent(id)}`)).visits;
  if (visits.length === 0) await sleep(100);
}
const closedMs = Date.now() - leftAt;
if (visits.length !== 1) fail(`expected one visit of ${id} within ${linger + 5000} ms of the beacon, got ${JSON.stringify(visits)}`);
const v = visits[0];
const paths = v.pages.map((p) => p.path);
if (JSON.stringify(paths) !== JSON.stringify(['/', '/pricing', '/docs'])) fail(`pages ${JSON.stringify(paths)}`);
if (!(v.pages[0].durationMs >= 250 && v.pages[1].durationMs >= 250)) fail(`page durations ${JSON.stringify(v.pages)}`);
if (v.endReason !== 'left') fail(`end reason ${v.endReason}`);
if (v.utm?.source !== 'newsletter') fail(`utm ${JSON.stringify(v.utm)}`);
if (v.referrer !== 'https://news.example/item') fail(`referrer ${v.referrer}`);
if (v.place?.country) fail(`the place came from a client's CloudFront header: ${JSON.stringify(v.place)}`);
const one = await get(`/api/visits/${encodeURIComponent(v.visitId)}`);
const same = one.visitId === v.visitId && JSON.stringify(one.pages) === JSON.stringify(v.pages);
if (!same) fail(`GET /api/visits/${v.visitId} answered ${JSON.stringify(one)}`);
const deleted = await fetch(`${FN_URL}/api/visitors/${encodeURIComponent(id)}`, { method: 'DELETE', headers: { 'x-tippen-api-key': SECRET_KEY } });
if (deleted.status !== 200 && deleted.status !== 204) fail(`DELETE /api/visitors/${id} answered ${deleted.status} ${await deleted.text()}`);
const after = (await get(`/api/visits?visitor=${encodeURIComponent(id)}`)).visits;
if (after.length !== 0) fail(`deleting the visitor left its visits: ${JSON.stringify(after)}`);
console.log(`history check ok: one visit ${v.visitId} (${paths.join(' → ')}, durations ${v.pages.map((p) => p.durationMs).join('/')} ms, ${v.durationMs} ms, end reason ${v.endReason}) listed ${closedMs} ms after the exit beacon (linger ${linger} ms); the client's CloudFront header was ignored; deleting the visitor erased it`);
process.exit(0);
