// The API client of the page: every call goes to this page's own origin, below the path the
// page was served from (<root>/ui/), with the tab's bearer token when it has one.

/** The API's root path: the page lives at <root>/ui/, and this module at <root>/ui/js/. */
export const root = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

const tokenKey = 'fleetrun.token';

/** The bearer token of this tab, kept in sessionStorage: it dies with the tab. */
export function token() { return sessionStorage.getItem(tokenKey) || ''; }
export function setToken(t) {
  if (t) sessionStorage.setItem(tokenKey, t); else sessionStorage.removeItem(tokenKey);
}

/** A problem answer (RFC 9457), or a failure to reach the server, as an Error. */
export class Problem extends Error {
  constructor(p) {
    super(p.detail || p.title || 'request failed');
    Object.assign(this, p);
  }
}

/** The same-origin path of an API link (links are absolute URLs; only their path is used). */
export function pathOf(link) {
  const u = new URL(link, location.href);
  return u.pathname + u.search;
}

/** The path of API route p, such as "/tasks". */
export function apiPath(p) { return root + p; }

function headers(extra) {
  const h = new Headers(extra || {});
  const t = token();
  if (t) h.set('Authorization', 'Bearer ' + t);
  return h;
}

async function problemOf(res) {
  let p = { status: res.status, title: res.statusText || 'HTTP ' + res.status };
  const type = res.headers.get('Content-Type') || '';
  if (type.includes('json')) {
    try { p = { ...p, ...(await res.json()) }; } catch { /* a body that is not JSON: keep the status */ }
  }
  const e = new Problem(p);
  if (res.status === 401) window.dispatchEvent(new CustomEvent('fleetrun:unauthorized', { detail: e }));
  return e;
}

/**
 * request sends one API call and returns the decoded JSON body (or the text with text: true).
 * path is a route path ("/tasks") or a link's path (pathOf). Error answers throw a Problem.
 */
export async function request(method, path, { body, signal, header, text } = {}) {
  const h = headers({ Accept: 'application/json, application/problem+json', ...header });
  let payload;
  if (body !== undefined) {
    h.set('Content-Type', 'application/json');
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: payload, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new Problem({ status: 0, title: 'The server cannot be reached', detail: String(err.message || err) });
  }
  if (!res.ok) throw await problemOf(res);
  if (res.status === 204) return null;
  return text ? res.text() : res.json();
}

/** get is request('GET', …). */
export const get = (path, opts) => request('GET', path, opts);

/**
 * stream reads Server-Sent Events from path with fetch, so that the request carries the
 * bearer header (an EventSource cannot), and calls onEvent({id, event, data}) for each. When
 * the response ends (a proxy or API Gateway ends it; a task's stream ends after its last
 * state), it reconnects with Last-Event-ID, unless the server said 204 (nothing more will
 * come) or the signal aborted. A problem answer other than 429 and 503 is thrown;
 * onState('live' | 'reconnecting') reports the connection.
 */
export async function stream(path, { signal, onEvent, onState = () => {} }) {
  const seen = { lastId: '' };
  let delay = 500;
  for (;;) {
    const h = headers({ Accept: 'text/event-stream' });
    if (seen.lastId) h.set('Last-Event-ID', seen.lastId);
    let res;
    try {
      res = await fetch(path, { headers: h, signal, cache: 'no-store' });
    } catch (err) {
      if (signal.aborted) return;
      onState('reconnecting');
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 10000);
      continue;
    }
    if (res.status === 204) return;
    if (!res.ok) {
      const p = await problemOf(res);
      if (res.status !== 429 && res.status !== 503) throw p;
      onState('reconnecting');
      await sleep(Math.max(delay, (Number(res.headers.get('Retry-After')) || 1) * 1000), signal);
      continue;
    }
    onState('live');
    delay = 500;
    try {
      await readEvents(res.body, onEvent, seen);
    } catch (err) {
      if (signal.aborted) return;
      onState('reconnecting');
    }
    if (signal.aborted) return;
    await sleep(100, signal);
  }
}

/** readEvents reads one response's events, keeping the id of the last in seen.lastId. */
async function readEvents(body, onEvent, seen) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { id: '', event: 'message', data: '' };
  let hasData = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (hasData) {
          if (ev.id) seen.lastId = ev.id;
          try {
            onEvent(ev);
          } catch (err) {
            // A bug of the page, not of the stream: say so, and keep reading.
            console.error('handling an event failed', err);
          }
        }
        ev = { id: '', event: 'message', data: '' };
        hasData = false;
        continue;
      }
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'data') { ev.data += (hasData ? '\n' : '') + val; hasData = true; }
      else if (field === 'id') ev.id = val;
      else if (field === 'event') ev.event = val;
    }
  }
}

/** sleep resolves after ms, or at once when signal aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
