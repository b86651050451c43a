// Slack from the HTTP function, a Lambda-specific property: Lambda freezes the instance once
// the function has answered, so the Slack message must be delivered before the answer. (That
// an error burst reaches Slack once, and no second time within the cooldown, is a case of the
// shared conformance suite.) Serves the webhook itself on 127.0.0.1:$OUTBOUND_PORT/slack/hook,
// where TIPPEN_SLACK_WEBHOOK_URL points (the conformance runner's stand-ins are gone by now):
// by the time POST /api/track/user-activity has answered, the webhook has exactly one message
// for the user, linking the public URL; still one a second later.
// Env: FN_URL, OUTBOUND_PORT, PUBLIC_URL, PUBLIC_KEY.
import http from 'node:http';

const { FN_URL, PUBLIC_URL, PUBLIC_KEY } = process.env;
const port = Number(process.env.OUTBOUND_PORT);
const fail = (msg) => { console.error(`slack check FAILED: ${msg}`); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const received = [];
const server = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (c) => { raw += c; });
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/slack/hook') received.push(raw);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
});
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

const user = `slackcheck_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
const error = { type: 'error', message: 'Failed to load', route: '/billing', timestamp: Date.now() };
const activity = await fetch(`${FN_URL}/api/track/user-activity`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({
    apiKey: PUBLIC_KEY, userId: user, userEmail: `${user}@outbound.test`, subscriptionTier: 'paid',
    events: [error, error, error, error],
  }),
});
if (activity.status !== 200) fail(`user-activity answered ${activity.status} ${await activity.text()}`);
const forUser = () => received.filter((m) => m.includes(user));
const atAnswer = forUser();
if (atAnswer.length !== 1) fail(`when the function answered, Slack had ${atAnswer.length} messages for ${user}`);
if (!atAnswer[0].includes(PUBLIC_URL)) fail(`the Slack message does not link ${PUBLIC_URL}: ${atAnswer[0]}`);
await sleep(1000);
if (forUser().length !== 1) fail(`a second later, Slack had ${forUser().length} messages for ${user}`);
console.log(`slack check ok: an error burst -> exactly one Slack message, delivered before the answer: ${JSON.parse(atAnswer[0]).text}`);
server.close();
process.exit(0);
