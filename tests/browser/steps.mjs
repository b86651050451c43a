// What the dashboard browser tests share: named steps with a pass/fail count, assertions,
// the API with the dashboard's key, and the closing line with the exit code.

export const say = (line) => process.stdout.write(line + '\n');

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const counts = { passed: 0, failed: 0 };

// Runs one named step; a failure is counted, printed and thrown (the test stops there).
export async function step(name, fn) {
  const t0 = Date.now();
  say(`-- ${name}`);
  try {
    await fn();
    counts.passed += 1;
    say(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    counts.failed += 1;
    say(`FAIL ${name}: ${(e && e.stack) || e}`);
    throw e;
  }
}

// `api(method, path, body?)` on `base` with `key` in X-Tippen-API-Key: the JSON answer, or
// an error naming the status and body.
export function apiWith(base, key) {
  return async function api(method, p, body) {
    const res = await fetch(base + p, {
      method,
      headers: { 'Content-Type': 'application/json', 'X-Tippen-API-Key': key },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    assert(res.ok, `${method} ${p}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

// Ends the process after `main`: `<what>: N steps passed, M failed`, exit code 0 when none
// failed.
export function finish(what, main) {
  main().then(() => {
    say(`${what}: ${counts.passed} steps passed, ${counts.failed} failed`);
    process.exit(counts.failed ? 1 : 0);
  }, (e) => {
    const failed = counts.failed || 1;
    say(`${what}: ${counts.passed} steps passed, ${failed} failed${counts.failed ? '' : `: ${(e && e.stack) || e}`}`);
    process.exit(1);
  });
}
