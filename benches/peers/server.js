// The socket.io peer of tippen's load harness (benches/load, issue 18): the presence server a
// team writes by hand with socket.io 4.8 instead of adopting tippen. Same wire as tippen where
// the harness touches it:
//
//   POST /track/visitor   {"event":"pageview"|"heartbeat"|"leave", "visitor":{"visitorId",…}, "website"}
//                         key in X-Tippen-API-Key (or "apiKey" in the body) → {"success":true,"sessionId"}
//   POST /track/leave     {"apiKey","visitorId"} (any content type, as sendBeacon sends it)
//   socket.io (Engine.IO 4, path /socket.io/), query apiKey: the socket joins the "dashboard"
//   room, gets "initial_visitors", then "visitor_update" (new_visitor, pageview) and
//   "visitor_removed" (left, inactive), each payload in tippen's message shape.
//
// A visitor expires GRACE_MS after its last event (one timer per visitor, refreshed on each
// event: the most precise a hand-written server gets). What it lacks next to tippen: tabs,
// visibility, the exit beacon's linger (a beacon removes at once), sequence numbers and
// snapshots on resync, persistence, rate limits and quotas, enrichment, invites.
//
//   PORT=18903 GRACE_MS=6000 node server.js
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const PORT = Number(process.env.PORT || 18903);
const HOST = process.env.HOST || '127.0.0.1';
const GRACE_MS = Number(process.env.GRACE_MS || 60000);
const API_KEY = process.env.API_KEY || 'demo_api_key';
const MAX_BODY = 65536;

const visitors = new Map(); // visitorId -> { visitor, timer }

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Access-Control-Allow-Origin': '*',
  });
  res.end(text);
}

function readBody(req, done) {
  const chunks = [];
  let size = 0;
  let refused = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      refused = true;
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => done(refused ? null : Buffer.concat(chunks).toString('utf8')));
}

function remove(id, reason) {
  const entry = visitors.get(id);
  if (!entry) return false;
  clearTimeout(entry.timer);
  visitors.delete(id);
  io.to('dashboard').emit('visitor_removed', { type: 'VISITOR_REMOVED', visitorId: id, reason });
  return true;
}

function track(msg) {
  const v = msg.visitor;
  const id = v.visitorId;
  if (msg.event === 'leave') {
    remove(id, 'left');
    return;
  }
  const now = new Date().toISOString();
  let entry = visitors.get(id);
  if (!entry) {
    const visitor = {
      visitorId: id,
      company: 'Direct Visitor',
      pageViews: msg.event === 'pageview' ? 1 : 0,
      timestamp: now,
      lastActivity: now,
      status: 'active',
      website: msg.website || '',
      url: v.url || '',
      referrer: v.referrer || '',
      userAgent: (v.userAgent || '').slice(0, 512),
    };
    entry = { visitor, timer: setTimeout(() => remove(id, 'inactive'), GRACE_MS) };
    visitors.set(id, entry);
    io.to('dashboard').emit('visitor_update', { type: 'VISITOR_UPDATE', visitor, event: 'new_visitor' });
    return;
  }
  entry.timer.refresh();
  const visitor = entry.visitor;
  visitor.lastActivity = now;
  if (msg.event === 'pageview') {
    visitor.pageViews += 1;
    visitor.url = v.url || visitor.url;
    io.to('dashboard').emit('visitor_update', { type: 'VISITOR_UPDATE', visitor, event: 'pageview' });
  }
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (req.method !== 'POST' || (path !== '/track/visitor' && path !== '/track/leave')) {
    return reply(res, 404, { error: 'not found' });
  }
  readBody(req, (text) => {
    if (text === null) return reply(res, 413, { error: 'body too large' });
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return reply(res, 400, { error: 'invalid JSON: ' + e.message });
    }
    const key = req.headers['x-tippen-api-key'] || (msg && msg.apiKey);
    if (!key) return reply(res, 401, { error: 'API key required' });
    if (key !== API_KEY) return reply(res, 403, { error: 'invalid API key' });
    if (path === '/track/leave') {
      if (typeof msg.visitorId !== 'string') return reply(res, 400, { error: 'visitorId required' });
      remove(msg.visitorId, 'left');
      return reply(res, 200, { success: true });
    }
    const v = msg && msg.visitor;
    if (!v || typeof v.visitorId !== 'string' || v.visitorId.length === 0 || v.visitorId.length > 128) {
      return reply(res, 400, { error: 'visitor.visitorId required (1-128 bytes)' });
    }
    track(msg);
    reply(res, 200, { success: true, sessionId: v.visitorId });
  });
});

// Keep-alive connections outlive the harness's idle pool (as tippen's header timeout does).
server.keepAliveTimeout = 15000;
const io = new Server(server, { serveClient: false });
io.use((socket, next) => {
  if (socket.handshake.query.apiKey === API_KEY) return next();
  next(new Error('invalid API key'));
});
io.on('connection', (socket) => {
  socket.join('dashboard');
  socket.emit('initial_visitors', {
    type: 'INITIAL_VISITORS',
    visitors: Array.from(visitors.values(), (e) => e.visitor),
  });
});

server.listen(PORT, HOST, () => console.log(`socket.io peer on http://${HOST}:${PORT}`));
