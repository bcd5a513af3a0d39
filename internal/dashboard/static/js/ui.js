// Small helpers for building the page: elements, status labels, times.

/** h creates an element: h('a', {href: '#/'}, 'Tasks'). Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (k === 'style') el.style.cssText = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** fill replaces el's children with those given, leaving out null, undefined and false. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** The statuses of a task, in the order the API documents them. */
export const taskStatuses = ['pending', 'running', 'cancelling', 'completed', 'failed', 'timed_out', 'cancelled'];

/** The statuses of a device, and the key of each in a task's progress counts. */
export const deviceStatuses = [
  ['pending', 'pending'], ['running', 'running'], ['succeeded', 'succeeded'], ['failed', 'failed'],
  ['timed_out', 'timedOut'], ['cancelled', 'cancelled'], ['undeliverable', 'undeliverable'],
];

/** The colour of each status, as the style sheet has it; the grid draws with these. */
export const colours = {
  pending: '#8a9099', running: '#1a6fd6', cancelling: '#b7791f', completed: '#1e7e34',
  succeeded: '#1e7e34', failed: '#c5221f', timed_out: '#c05600', cancelled: '#5f6368',
  undeliverable: '#8430ce',
};

export function label(status) { return String(status).replace('_', ' '); }

/** badge is a status as text with its colour beside it, never colour alone. */
export function badge(status) {
  return h('span', { class: 'badge s-' + status }, label(status));
}

/** bar is a progress bar that says its value in words too. */
export function bar(pct, name) {
  return h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-valuenow': pct, 'aria-label': name || 'progress' },
  h('div', { class: 'fill', style: `width:${pct}%` }));
}

/** duration says a length of time in ms shortly: 42s, 3m 5s, 2h 10m. */
export function duration(ms) {
  if (!(ms >= 0)) return '';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs}h ${m % 60}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** when says a time as the local date and time, with the full instant in a tooltip. */
export function when(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: d.toISOString() }, d.toLocaleString());
}

/** ago says how long ago iso was. */
export function ago(iso) {
  if (!iso) return '';
  return duration(Date.now() - new Date(iso).getTime()) + ' ago';
}

/** countsText says a task's device counts: "3/10 done: 2 succeeded, 1 failed". */
export function countsText(c) {
  const done = c.total - c.pending - c.running;
  const parts = deviceStatuses.slice(2).filter(([, k]) => c[k] > 0).map(([s, k]) => `${c[k]} ${label(s)}`);
  return `${done}/${c.total} done` + (parts.length ? ': ' + parts.join(', ') : '') +
    (c.running ? ` · ${c.running} running` : '');
}

/** problemView shows a Problem: its title, detail and the fields it names. */
export function problemView(p) {
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, `${p.status ? p.status + ' ' : ''}${p.title || 'Error'}`),
    p.detail && p.detail !== p.title ? h('p', {}, p.detail) : null,
    p.errors?.length ? h('ul', {}, p.errors.map((e) => h('li', {}, h('code', {}, e.pointer), ' ', e.detail))) : null);
}
