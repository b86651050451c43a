// Stand-ins of the HTTP function's outbound peers, on 127.0.0.1:$OUTBOUND_PORT:
//   POST /video/create-session  the video provider (the predecessor's API shape:
//                               {hostName, guestName, isAdmin} -> {success, sessionId, roomId,
//                               urls: {host, guest}}), or a 500 while failing is switched on;
//   POST /slack/hook            a Slack incoming webhook: records the message, answers "ok";
//   GET  /ipinfo/<ip>           IPinfo (the enrichment provider; the answer shape of the
//                               Worker's stand-in in examples/worker/tests/checks.mjs), after
//                               ENRICHMENT_DELAY_MS (default 500) so a caller that waits for it
//                               shows;
//   POST /control/provider      {"fail": true|false} switches the provider's 500s;
//   GET  /control/state         {"provider": [request bodies], "slack": [messages],
//                               "ipinfo": [{ip, authorization, at, answeredAt}]}.
import http from 'node:http';

const port = Number(process.env.OUTBOUND_PORT);
const enrichmentDelayMs = Number(process.env.ENRICHMENT_DELAY_MS ?? 500);
const state = { provider: [], slack: [], ipinfo: [] };
let fail = false;

const readJson = (req) => new Promise((resolve) => {
  let raw = '';
  req.on('data', (c) => { raw += c; });
  req.on('end', () => { try { resolve(JSON.parse(raw)); } catch { resolve({ unparsable: raw }); } });
});
const send = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};

http.createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/video/create-session') {
    const body = await readJson(req);
    state.provider.push(body);
    if (fail) return send(res, 500, { success: false, error: 'provider down (stand-in)' });
    const n = state.provider.length;
    return send(res, 200, {
      success: true, sessionId: `sess_${n}`, roomId: `room_${n}`,
      urls: { host: `http://127.0.0.1:${port}/host/sess_${n}`, guest: `http://127.0.0.1:${port}/guest/sess_${n}` },
    });
  }
  if (req.method === 'POST' && req.url === '/slack/hook') {
    state.slack.push(await readJson(req));
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok');
  }
  if (req.method === 'GET' && req.url.startsWith('/ipinfo/')) {
    const ip = decodeURIComponent(req.url.slice('/ipinfo/'.length));
    const request = { ip, authorization: req.headers.authorization, at: Date.now() };
    state.ipinfo.push(request);
    setTimeout(() => {
      request.answeredAt = Date.now();
      send(res, 200, {
        ip, city: 'Zurich', region: 'Zurich', country: 'CH', org: 'AS64500 Stand-in Networks',
        company: { name: 'Stand-in Corp', domain: 'standin.example', type: 'business' },
      });
    }, enrichmentDelayMs);
    return;
  }
  if (req.method === 'POST' && req.url === '/control/provider') {
    fail = (await readJson(req)).fail === true;
    return send(res, 200, { fail });
  }
  if (req.method === 'GET' && req.url === '/control/state') return send(res, 200, state);
  return send(res, 404, { error: 'not found' });
}).listen(port, '127.0.0.1', () => console.log(`outbound stand-in on 127.0.0.1:${port}`));
