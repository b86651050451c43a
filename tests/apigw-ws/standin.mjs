// Test stand-in for API Gateway's WebSocket API, in front of `cargo lambda watch`.
//
// - WebSocket clients connect to ws://HOST:PORT/?<query>. Each connect / message / close
//   becomes a `$connect` / `$default` / `$disconnect` event (the shape API Gateway sends)
//   POSTed to cargo lambda watch's Invoke API for FUNCTION. `$connect` answering a non-2xx
//   statusCode refuses the upgrade with that status and body.
// - The Management API the function calls with aws-sdk-apigatewaymanagement (endpoint
//   overridden to http://HOST:PORT/STAGE): POST (PostToConnection), GET (GetConnection) and
//   DELETE /STAGE/@connections/<id>; an unknown or closed connection is 410 GoneException,
//   as on AWS (a connection whose $connect has not returned yet is not open).
// - API Gateway's HTTP API (payload format 2.0) on /http/<function>/<path>: the request
//   becomes the event API Gateway sends (a body that is not UTF-8 base64-encoded, the
//   client's address as requestContext.http.sourceIp), invoked synchronously; the function's
//   answer (statusCode, headers, cookies, body, isBase64Encoded) becomes the HTTP response.
//   Unlike cargo lambda watch's function URLs, it carries any body bytes. A test may name the
//   client's address in the header X-Standin-Source-Ip (the conformance suite's enrichment
//   cases do): it becomes sourceIp, as if the request had come from there. The same header on
//   a WebSocket upgrade becomes the connection's requestContext.identity.sourceIp (the socket
//   quota cases name an address per socket so).
// - Lambda's asynchronous Invoke (X-Amz-Invocation-Type: Event) on
//   /2015-03-31/functions/<name>/invocations: answered 202 at once, then forwarded to cargo
//   lambda watch, which only runs invocations synchronously.
//
// Test infrastructure only: the product code is what runs on AWS.
import http from 'node:http';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';

const HOST = process.env.STANDIN_HOST ?? '127.0.0.1';
const PORT = Number(process.env.STANDIN_PORT ?? 9101);
const INVOKE_URL = process.env.STANDIN_INVOKE_URL ?? 'http://127.0.0.1:9100';
const FUNCTION = process.env.STANDIN_FUNCTION ?? 'tippen-ws';
const STAGE = process.env.STANDIN_STAGE ?? 'local';
const log = (...a) => { if (process.env.STANDIN_DEBUG) console.error(new Date().toISOString(), ...a); };

/** connectionId -> { ws, connectedAt, sourceIp, userAgent, queue } */
const open = new Map();
const wss = new WebSocketServer({ noServer: true });

async function invoke(name, event) {
  const res = await fetch(`${INVOKE_URL}/2015-03-31/functions/${name}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(event),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`invoke ${name}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function event(routeKey, eventType, id, req, extra = {}) {
  const url = new URL(req.url, `http://${HOST}`);
  const query = Object.fromEntries(url.searchParams);
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(',') : v;
  return {
    headers,
    queryStringParameters: Object.keys(query).length ? query : null,
    isBase64Encoded: false,
    requestContext: {
      routeKey,
      eventType,
      connectionId: id,
      messageDirection: 'IN',
      stage: STAGE,
      apiId: 'standin',
      domainName: `${HOST}:${PORT}`,
      requestId: crypto.randomUUID(),
      requestTimeEpoch: Date.now(),
      connectedAt: open.get(id)?.connectedAt ?? Date.now(),
      identity: { sourceIp: sourceIp(req), userAgent: headers['user-agent'] ?? null },
    },
    ...extra,
  };
}

/** The client's address as API Gateway would see it: X-Standin-Source-Ip, else the peer. */
function sourceIp(req) {
  return req.headers['x-standin-source-ip'] ?? req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
}

/** One HTTP API request: event (payload 2.0) -> synchronous invoke -> HTTP response. */
async function httpApiRequest(name, path, url, req, body, res) {
  const headers = {};
  const cookies = [];
  for (const [k, v] of Object.entries(req.headers)) {
    if (k === 'cookie') cookies.push(...String(v).split(/;\s*/));
    else headers[k] = Array.isArray(v) ? v.join(',') : v;
  }
  let text = null;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(body); } catch { text = null; }
  const now = new Date();
  const ev = {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: url.search.replace(/^\?/, ''),
    cookies: cookies.length ? cookies : undefined,
    headers,
    requestContext: {
      accountId: '123456789012', apiId: 'standin', domainName: req.headers.host ?? HOST, domainPrefix: 'standin',
      http: { method: req.method, path, protocol: `HTTP/${req.httpVersion}`, sourceIp: sourceIp(req), userAgent: req.headers['user-agent'] ?? '' },
      requestId: crypto.randomUUID(), routeKey: '$default', stage: '$default',
      time: now.toUTCString(), timeEpoch: now.getTime(),
    },
    body: body.length === 0 ? undefined : text ?? body.toString('base64'),
    isBase64Encoded: body.length > 0 && text === null,
  };
  let answer;
  try {
    answer = await invoke(name, ev);
  } catch (e) {
    console.error('HTTP API invoke failed:', e.message);
    res.writeHead(500, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ message: 'Internal Server Error' }));
  }
  const out = answer?.body == null ? Buffer.alloc(0) : Buffer.from(answer.body, answer.isBase64Encoded ? 'base64' : 'utf8');
  const outHeaders = { ...(answer?.headers ?? {}) };
  for (const [k, vs] of Object.entries(answer?.multiValueHeaders ?? {})) outHeaders[k] = vs;
  if (answer?.cookies?.length) outHeaders['set-cookie'] = answer.cookies;
  res.writeHead(Number(answer?.statusCode ?? 200), outHeaders);
  res.end(out);
}

function refuse(socket, status, body) {
  const text = body ?? '';
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${HOST}`);
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const mgmt = url.pathname.match(/^\/([^/]+)\/@connections\/([^/]+)$/);
  const gone = () => {
    res.writeHead(410, { 'content-type': 'application/json', 'x-amzn-errortype': 'GoneException' });
    res.end(JSON.stringify({ message: 'Gone' }));
  };
  if (mgmt && mgmt[1] === STAGE) {
    const id = decodeURIComponent(mgmt[2]);
    const conn = open.get(id);
    if (!conn) return gone();
    if (req.method === 'POST') {
      conn.ws.send(body.toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{}');
    }
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({
        connectedAt: new Date(conn.connectedAt).toISOString(),
        lastActiveAt: new Date().toISOString(),
        identity: { sourceIp: conn.sourceIp, userAgent: conn.userAgent ?? '' },
      }));
    }
    if (req.method === 'DELETE') {
      conn.ws.close(1000);
      res.writeHead(204);
      return res.end();
    }
  }
  const httpApi = url.pathname.match(/^\/http\/([^/]+)(\/.*)?$/);
  if (httpApi) return httpApiRequest(decodeURIComponent(httpApi[1]), httpApi[2] ?? '/', url, req, body, res);
  const inv = url.pathname.match(/^\/2015-03-31\/functions\/([^/]+)\/invocations$/);
  if (inv && req.method === 'POST' && req.headers['x-amz-invocation-type'] === 'Event') {
    res.writeHead(202, { 'content-type': 'application/json' });
    res.end('');
    invoke(decodeURIComponent(inv[1]), JSON.parse(body.toString('utf8') || '{}')).catch((e) => console.error('async invoke failed:', e.message));
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ message: `no route for ${req.method} ${url.pathname}` }));
});

server.on('upgrade', async (req, socket, head) => {
  const id = crypto.randomBytes(12).toString('base64');
  let answer;
  try {
    answer = await invoke(FUNCTION, event('$connect', 'CONNECT', id, req));
  } catch (e) {
    console.error('$connect failed:', e.message);
    return refuse(socket, 500, JSON.stringify({ message: 'Internal server error' }));
  }
  const status = Number(answer?.statusCode ?? 200);
  if (status < 200 || status > 299) return refuse(socket, status, answer?.body);
  wss.handleUpgrade(req, socket, head, (ws) => {
    const conn = {
      ws,
      connectedAt: Date.now(),
      sourceIp: sourceIp(req),
      userAgent: req.headers['user-agent'],
      queue: Promise.resolve(),
    };
    open.set(id, conn);
    log('open', id);
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      conn.queue = conn.queue
        .then(() => invoke(FUNCTION, event('$default', 'MESSAGE', id, req, { body: text })))
        .catch((e) => console.error('$default failed:', e.message));
    });
    ws.on('close', () => {
      open.delete(id);
      log('close', id);
      conn.queue = conn.queue
        .then(() => invoke(FUNCTION, event('$disconnect', 'DISCONNECT', id, req)))
        .catch((e) => console.error('$disconnect failed:', e.message));
    });
  });
});

server.listen(PORT, HOST, () => console.log(`apigw-ws stand-in on ws://${HOST}:${PORT} (stage ${STAGE}) -> ${INVOKE_URL} ${FUNCTION}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { for (const c of open.values()) c.ws.terminate(); server.close(); process.exit(0); });
