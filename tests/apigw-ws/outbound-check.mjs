// The HTTP function's outbound HTTPS client (reqwest + rustls; plain http to the local
// stand-ins of outbound-standin.mjs), through the function URL:
//   1. the provider answers 500: POST /api/video-call is 502 {"error"}, the provider was asked
//      once, and no invite message reaches the dashboard;
//   2. the provider works: 200 with the provider's host URL, and the dashboard (through the
//      API Gateway stand-in) receives VIDEO_INVITE_SENT with the provider's guest URL;
//   3. an error burst of user activity: by the time the function has answered (Lambda
//      freezes after that), the stand-in Slack webhook has exactly one message for the user,
//      linking the public URL; still one a second later.
// Env: FN_URL, WS_URL, OUTBOUND_URL, PUBLIC_URL, PUBLIC_KEY, SECRET_KEY.
import WebSocket from 'ws';

const { FN_URL, WS_URL, OUTBOUND_URL, PUBLIC_URL, PUBLIC_KEY, SECRET_KEY } = process.env;
const tag = `${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
const id = `outbound_${tag}`;
const fail = (msg) => { console.error(`outbound check FAILED: ${msg}`); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const state = async () => (await fetch(`${OUTBOUND_URL}/control/state`)).json();
const providerFails = async (on) => {
  const r = await fetch(`${OUTBOUND_URL}/control/provider`, { method: 'POST', body: JSON.stringify({ fail: on }) });
  if (r.status !== 200) fail(`stand-in control answered ${r.status}`);
};
const post = (path, key, body) => fetch(`${FN_URL}${path}`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-tippen-api-key': key },
  body: JSON.stringify(body),
});

const tracked = await post('/track/visitor', PUBLIC_KEY,
  { event: 'pageview', visitor: { visitorId: id, url: 'https://outbound.test/' }, website: 'outbound.test' });
if (tracked.status !== 200) fail(`track answered ${tracked.status}`);

const messages = [];
const ws = new WebSocket(`${WS_URL}${WS_URL.includes('?') ? '&' : '?'}apiKey=${encodeURIComponent(SECRET_KEY)}`);
ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
for (let i = 0; i < 50 && messages.length === 0; i++) await sleep(100);
if (messages[0]?.type !== 'INITIAL_VISITORS') fail(`first message ${JSON.stringify(messages[0])}`);
if (!messages[0].visitors.some((v) => v.visitorId === id)) fail('the visitor is not in INITIAL_VISITORS');
const invites = () => messages.filter((m) => m.type?.startsWith('VIDEO_INVITE') && m.visitorId === id);

// 1. The provider fails.
await providerFails(true);
const asked = (await state()).provider.length;
const failed = await post('/api/video-call', SECRET_KEY, { visitorId: id, hostName: 'Alice' });
const failedBody = await failed.json().catch(() => null);
if (failed.status !== 502 || typeof failedBody?.error !== 'string') {
  fail(`provider 500: expected 502 {"error"}, got ${failed.status} ${JSON.stringify(failedBody)}`);
}
if ((await state()).provider.length !== asked + 1) fail('the provider was not asked exactly once');
await sleep(1500);
if (invites().length) fail(`provider 500, yet the dashboard heard ${JSON.stringify(invites())}`);
console.log(`outbound check: provider 500 -> ${failed.status} ${JSON.stringify(failedBody)}; nothing sent`);

// 2. The provider works.
await providerFails(false);
const ok = await post('/api/video-call', SECRET_KEY, { visitorId: id, hostName: 'Alice', guestName: 'Bob' });
const okBody = await ok.json().catch(() => null);
if (ok.status !== 200 || okBody?.success !== true) fail(`video-call: ${ok.status} ${JSON.stringify(okBody)}`);
const sessions = (await state()).provider;
const n = sessions.length;
const host = `${OUTBOUND_URL}/host/sess_${n}`;
const guest = `${OUTBOUND_URL}/guest/sess_${n}`;
if (okBody.hostUrl !== host) fail(`hostUrl ${okBody.hostUrl}, expected ${host}`);
if (okBody.guestUrl !== guest) fail(`guestUrl ${okBody.guestUrl}, expected ${guest}`);
const request = sessions[n - 1];
if (request.hostName !== 'Alice' || request.guestName !== 'Bob' || request.isAdmin !== true) {
  fail(`the provider was asked ${JSON.stringify(request)}`);
}
const sent = () => messages.find((m) => m.type === 'VIDEO_INVITE_SENT' && m.visitorId === id);
for (let i = 0; i < 50 && !sent(); i++) await sleep(100);
if (!sent()) fail(`no VIDEO_INVITE_SENT within 5 s (dashboard heard ${JSON.stringify(messages.slice(1))})`);
if (sent().guestUrl !== guest) fail(`VIDEO_INVITE_SENT guestUrl ${sent().guestUrl}, expected ${guest}`);
console.log(`outbound check: video-call -> 200 hostUrl ${okBody.hostUrl}; VIDEO_INVITE_SENT guestUrl ${sent().guestUrl}`);
ws.close();

// 3. Slack, delivered before the function answered.
const user = `slackcheck_${tag}`;
const error = { type: 'error', message: 'Failed to load', route: '/billing', timestamp: Date.now() };
const activity = await post('/api/track/user-activity', PUBLIC_KEY, {
  apiKey: PUBLIC_KEY, userId: user, userEmail: `${user}@outbound.test`, subscriptionTier: 'paid',
  events: [error, error, error, error],
});
if (activity.status !== 200) fail(`user-activity answered ${activity.status} ${await activity.text()}`);
const forUser = async () => (await state()).slack.filter((m) => JSON.stringify(m).includes(user));
const atAnswer = await forUser();
if (atAnswer.length !== 1) fail(`when the function answered, Slack had ${atAnswer.length} messages for ${user}`);
if (!JSON.stringify(atAnswer[0]).includes(PUBLIC_URL)) fail(`the Slack message does not link ${PUBLIC_URL}: ${JSON.stringify(atAnswer[0])}`);
await sleep(1000);
const later = await forUser();
if (later.length !== 1) fail(`a second later, Slack had ${later.length} messages for ${user}`);
console.log(`outbound check: error burst -> exactly one Slack message, delivered before the answer: ${atAnswer[0].text}`);
process.exit(0);
