// The submit page: a form for POST /tasks. A validation problem's errors are shown next to
// the fields their JSON pointers name.
import { apiPath, get, request } from './api.js';
import { h, problemView } from './ui.js';

/** fields maps each form field to the pointer of the submit body member it fills. */
const fields = [
  { name: 'deviceIds', label: 'Devices', help: 'Device ids, separated by spaces, commas or new lines.', kind: 'textarea' },
  { name: 'targets', label: 'Targets', help: 'Or select devices by tag: one tag:Name=value1,value2 a line (all lines must match).', kind: 'textarea', targets: true },
  { name: 'scriptUrl', label: 'Script', help: 'A path under the server\'s script root, or an s3:// object on AWS.', kind: 'input', required: true },
  { name: 'args', label: 'Arguments', help: 'One argument a line, passed as they are (never through a shell).', kind: 'textarea' },
  { name: 'timeoutSeconds', label: 'Timeout (seconds)', help: 'The whole task\'s deadline; 3600 when empty.', kind: 'number' },
  { name: 'maxConcurrency', label: 'Concurrency', help: 'Devices at once: a count or a percentage, such as 10%; 50 when empty.', kind: 'input' },
  { name: 'maxErrors', label: 'Error budget', help: 'Failures allowed before no further device starts: a count or a percentage; 100% when empty.', kind: 'input' },
];

export async function submitPage(main, { signal }) {
  document.title = 'New task · fleetrun';
  // Targets appear where the server has an inventory to resolve them against.
  let targets = false;
  try {
    await get(apiPath('/devices?limit=1'), { signal });
    targets = true;
  } catch (err) {
    if (err.status === 401) throw err;
  }
  const top = h('div', { 'aria-live': 'assertive' });
  const controls = {};
  const errors = {};
  const form = h('form', { class: 'submit', novalidate: true },
    fields.filter((f) => targets || !f.targets).map((f) => {
      const id = 'f-' + f.name;
      errors[f.name] = h('p', { id: id + '-error', class: 'field-error', hidden: true });
      const attrs = { id, name: f.name, 'aria-describedby': `${id}-help ${id}-error`, 'data-pointer': '/' + f.name };
      const control = f.kind === 'textarea' ? h('textarea', { ...attrs, rows: f.name === 'deviceIds' ? 5 : 3 })
        : h('input', { ...attrs, type: f.kind === 'number' ? 'number' : 'text', required: f.required, min: f.kind === 'number' ? 1 : undefined });
      controls[f.name] = control;
      return h('div', { class: 'field' }, h('label', { for: id }, f.label), control,
        h('p', { id: id + '-help', class: 'muted small' }, f.help), errors[f.name]);
    }),
    h('button', { type: 'submit' }, 'Submit'));
  main.append(h('h1', {}, 'New task'), top, form);
  controls.deviceIds.focus();

  // One key per filled-in form: a double click, or a retry after a lost answer, is one task.
  let key = newKey();
  form.addEventListener('input', () => { key = newKey(); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const body = read(controls);
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const t = await request('POST', apiPath('/tasks'), { body, header: { 'Idempotency-Key': key }, signal });
      location.hash = '#/tasks/' + encodeURIComponent(t.id);
    } catch (err) {
      if (err.name === 'AbortError' || err.status === 401) return;
      show(err);
    } finally {
      button.disabled = false;
    }
  });

  function clear() {
    top.replaceChildren();
    for (const [name, p] of Object.entries(errors)) {
      p.hidden = true;
      p.textContent = '';
      controls[name].removeAttribute('aria-invalid');
    }
  }

  /** show puts each error next to the field its pointer names, and the rest above the form. */
  function show(problem) {
    const rest = [];
    let first = null;
    for (const fe of problem.errors || []) {
      const name = (fe.pointer || '').split('/')[1];
      const target = name === 'devices' ? 'targets' : name;
      if (!errors[target]) { rest.push(fe); continue; }
      const p = errors[target];
      p.hidden = false;
      p.textContent += (p.textContent ? ' ' : '') + fe.detail;
      controls[target].setAttribute('aria-invalid', 'true');
      first ||= controls[target];
    }
    if (!problem.errors?.length || rest.length) top.append(problemView({ ...problem, errors: rest }));
    first?.focus();
  }
}

/** newKey is a fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** read builds the submit body from the form, leaving out what was left empty. */
function read(c) {
  const body = {};
  const list = (s, sep) => s.split(sep).map((x) => x.trim()).filter(Boolean);
  const ids = list(c.deviceIds.value, /[\s,]+/);
  if (ids.length) body.deviceIds = ids;
  if (c.targets && c.targets.value.trim()) {
    body.targets = list(c.targets.value, /\n/).map((line) => {
      const [key, values = ''] = line.split('=');
      return { key: key.trim(), values: list(values, ',') };
    });
  }
  body.scriptUrl = c.scriptUrl.value.trim();
  const args = c.args.value.split('\n').filter((a) => a !== '');
  if (args.length) body.args = args;
  if (c.timeoutSeconds.value !== '') body.timeoutSeconds = Number(c.timeoutSeconds.value);
  if (c.maxConcurrency.value.trim()) body.maxConcurrency = c.maxConcurrency.value.trim();
  if (c.maxErrors.value.trim()) body.maxErrors = c.maxErrors.value.trim();
  if (!body.deviceIds && !body.targets) body.deviceIds = [];
  return body;
}
