// API Gateway HTTP API (payload 2.0) events for the HTTP function, sent to cargo lambda
// watch's Invoke API: what the local function URL cannot produce (a chosen sourceIp, a
// base64 body). Used by http-events.mjs.

/** An HTTP API event for `path` from `sourceIp` (default 192.0.2.7, a documentation address). */
export function httpEvent(path, headers, body, { base64 = false, sourceIp = '192.0.2.7', method = 'POST' } = {}) {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    headers,
    requestContext: {
      accountId: '123456789012', apiId: 'check', domainName: 'check.example', domainPrefix: 'check',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp, userAgent: 'apigw-ws checks' },
      requestId: `check-${Date.now()}`, routeKey: '$default', stage: '$default',
      time: '30/Nov/2026:00:00:00 +0000', timeEpoch: Date.now(),
    },
    body: base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: base64,
  };
}

/** Invokes `fn` synchronously through `invokeUrl`; the function's answer (an HTTP API response). */
export async function invoke(invokeUrl, fn, event) {
  const res = await fetch(`${invokeUrl}/2015-03-31/functions/${fn}/invocations`, { method: 'POST', body: JSON.stringify(event) });
  if (res.status !== 200) throw new Error(`invoke ${fn} answered ${res.status}: ${await res.text()}`);
  return res.json();
}
