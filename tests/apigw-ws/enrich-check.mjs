// Company enrichment on Lambda, end to end: the HTTP function (invoked with an API Gateway
// event from a public sourceIp), its asynchronous invocation of the enrichment function, the
// stand-in IPinfo of outbound-standin.mjs (answers after ENRICHMENT_DELAY_MS), the DynamoDB
// cache (moto), and the fan-out to a dashboard connected through the API Gateway stand-in:
//   1. /track/visitor of site a from 9.x.y.z answers before the provider has answered (the
//      HTTP function does not wait for the lookup);
//   2. the dashboard of site a receives VISITOR_UPDATE (enriched) with the stand-in's company;
//      the provider was asked once, for that address, with the configured key;
//   3. a visitor of site b from the same address is listed with the company from the shared
//      cache (enrichmentSource "cache"), and the provider is asked nothing more;
//   4. /api/stats counts exactly: site a one miss and one credit, site b one cache hit and no
//      credit.
// Prints the measured answer time and the time to the enriched update.
// Env: FN_URL, INVOKE_URL, WS_URL, OUTBOUND_URL, ENRICHMENT_DELAY_MS, PUBLIC_KEY, SECRET_KEY,
// OTHER_PUBLIC_KEY, OTHER_SECRET_KEY.
import WebSocket from 'ws';
import { httpEvent, invoke } from './events.mjs';

const {
  FN_URL, INVOKE_URL, WS_URL, OUTBOUND_URL, PUBLIC_KEY, SECRET_KEY, OTHER_PUBLIC_KEY, OTHER_SECRET_KEY,
} = process.env;
const delayMs = Number(process.env.ENRICHMENT_DELAY_MS ?? 500);
const fail = (msg) => { console.error(`enrichment check FAILED: ${msg}`); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rnd = () => 1 + Math.floor(Math.random() * 250);
// 9.0.0.0/8 is globally reachable (not special-purpose): the core asks for a lookup.
const ip = `9.${rnd()}.${rnd()}.${rnd()}`;
const tag = `${Date.now()}_${Math.floor(Math.random() * 1e6)}`;

const ipinfo = async () => (await (await fetch(`${OUTBOUND_URL}/control/state`)).json()).ipinfo.filter((r) => r.ip === ip);
const get = async (path, secret) => {
  const res = await fetch(`${FN_URL}${path}?apiKey=${encodeURIComponent(secret)}`);
  const body = await res.text();
  if (res.status !== 200) fail(`GET ${path} answered ${res.status} ${body}`);
  return JSON.parse(body);
};
const track = (key, visitorId) => invoke(INVOKE_URL, 'tippen-http', httpEvent('/track/visitor',
  { 'content-type': 'application/json', 'x-tippen-api-key': key },
  JSON.stringify({ event: 'pageview', visitor: { visitorId, url: 'https://enrich.test/' }, website: 'enrich.test' }),
  { sourceIp: ip })).catch((e) => fail(e.message));

const before = { a: await get('/api/stats', SECRET_KEY), b: await get('/api/stats', OTHER_SECRET_KEY) };

const messages = [];
const ws = new WebSocket(`${WS_URL}${WS_URL.includes('?') ? '&' : '?'}apiKey=${encodeURIComponent(SECRET_KEY)}`);
ws.on('message', (data) => messages.push({ at: Date.now(), m: JSON.parse(data.toString()) }));
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
for (let i = 0; i < 100 && messages.length === 0; i++) await sleep(50);
if (messages[0]?.m.type !== 'INITIAL_VISITORS') fail(`first dashboard message ${JSON.stringify(messages[0])}`);

// 1. Site a: the answer does not wait for the provider.
const first = `enrich_a_${tag}`;
const sentAt = Date.now();
const tracked = await track(PUBLIC_KEY, first);
const answeredAt = Date.now();
if (tracked.statusCode !== 200) fail(`track answered ${JSON.stringify(tracked)}`);

// 2. The enriched update reaches the dashboard.
const isEnriched = ({ m }) => m.type === 'VISITOR_UPDATE' && m.visitor?.visitorId === first && m.visitor.company === 'Stand-in Corp';
for (let i = 0; i < 200 && !messages.some(isEnriched); i++) await sleep(50);
const enriched = messages.find(isEnriched);
if (!enriched) fail(`no enriched VISITOR_UPDATE within 10 s; the dashboard heard ${JSON.stringify(messages.slice(1).map((x) => x.m))}`);
if (enriched.m.event !== 'enriched' || enriched.m.visitor.enrichmentSource !== 'provider' || enriched.m.visitor.companyDomain !== 'standin.example') {
  fail(`enriched update ${JSON.stringify(enriched.m)}`);
}
const asked = await ipinfo();
if (asked.length !== 1) fail(`the provider was asked ${asked.length} times for ${ip}`);
if (asked[0].authorization !== 'Bearer test_token') fail(`the provider got authorization ${asked[0].authorization}`);
if (!(answeredAt < asked[0].answeredAt)) fail(`/track/visitor answered ${answeredAt - asked[0].answeredAt} ms after the provider: it waited for the lookup`);
ws.close();

// 3. Site b, same address: the shared cache, no provider request.
const second = `enrich_b_${tag}`;
const trackedB = await track(OTHER_PUBLIC_KEY, second);
if (trackedB.statusCode !== 200) fail(`site b track answered ${JSON.stringify(trackedB)}`);
const onB = (await get('/api/visitors', OTHER_SECRET_KEY)).visitors.find((v) => v.visitorId === second);
if (!(onB && onB.company === 'Stand-in Corp' && onB.enrichmentSource === 'cache' && onB.isCached === true)) {
  fail(`site b lists ${JSON.stringify(onB)}`);
}
await sleep(delayMs + 500);
const total = (await ipinfo()).length;
if (total !== 1) fail(`the provider was asked ${total} times for one address`);

// 4. Exact counters since the start of this check.
const after = { a: await get('/api/stats', SECRET_KEY), b: await get('/api/stats', OTHER_SECRET_KEY) };
const delta = (site, field) => after[site][field] - before[site][field];
const a = { creditsUsed: delta('a', 'creditsUsed'), cacheMisses: delta('a', 'cacheMisses'), cacheHits: delta('a', 'cacheHits') };
const b = { cacheHits: delta('b', 'cacheHits'), creditsSavedByCache: delta('b', 'creditsSavedByCache'), creditsUsed: delta('b', 'creditsUsed'), cacheMisses: delta('b', 'cacheMisses') };
if (a.creditsUsed !== 1 || a.cacheMisses !== 1 || a.cacheHits !== 0) fail(`site a stats ${JSON.stringify(before.a)} -> ${JSON.stringify(after.a)}`);
if (b.cacheHits !== 1 || b.creditsSavedByCache !== 1 || b.creditsUsed !== 0 || b.cacheMisses !== 0) fail(`site b stats ${JSON.stringify(before.b)} -> ${JSON.stringify(after.b)}`);

console.log(`enrichment check ok: /track/visitor (site a, sourceIp ${ip}) answered in ${answeredAt - sentAt} ms, `
  + `${asked[0].answeredAt - answeredAt} ms before the provider stand-in answered (it takes ${delayMs} ms); `
  + `enriched VISITOR_UPDATE on the dashboard ${enriched.at - sentAt} ms after the page view `
  + `(provider asked ${asked[0].at - sentAt} ms after it); site b's visitor from the shared cache with 0 further provider requests; `
  + `stats a ${JSON.stringify(a)}, b ${JSON.stringify(b)}`);
process.exit(0);
