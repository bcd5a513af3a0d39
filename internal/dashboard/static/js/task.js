// The task page: progress, counts, times, the device grid, the device table and each device's
// output, live through the task's event stream; cancel the task or a device, relaunch.
import { apiPath, get, pathOf, request, stream, sleep, token, Problem } from './api.js';
import { h, fill, badge, bar, countsText, deviceStatuses, label, when, duration, problemView, colours } from './ui.js';
import { Grid } from './grid.js';

const terminal = new Set(['completed', 'failed', 'timed_out', 'cancelled']);
const tableSize = 50;

export async function taskPage(main, id, { signal, setLive }) {
  document.title = `Task ${id} · fleetrun`;
  let task = await get(apiPath('/tasks/' + encodeURIComponent(id)), { signal });
  const view = new TaskView(main, signal);
  view.show(task);
  await Promise.all([
    view.refreshDevices(true),
    stream(pathOf(task.links.events), {
      signal, onState: setLive,
      onEvent: (ev) => {
        if (ev.event !== 'task') return;
        task = JSON.parse(ev.data);
        view.show(task);
      },
    }).then(() => { if (!signal.aborted) setLive(''); }),
  ]);
}

class TaskView {
  constructor(main, signal) {
    this.signal = signal;
    this.task = null;
    this.lastDevicesVersion = 0;
    this.refreshing = null;
    this.title = h('h1', {});
    this.actions = h('div', { class: 'tools' });
    this.message = h('div', { 'aria-live': 'polite' });
    this.summary = h('section', { class: 'summary', 'aria-label': 'Progress' });
    this.grid = new Grid((deviceId) => this.open(deviceId));
    this.table = new DeviceTable(this);
    this.output = new OutputPanel(this);
    main.append(
      h('div', { class: 'heading' }, this.title, this.actions),
      this.message,
      this.summary,
      h('section', { class: 'devices', 'aria-labelledby': 'grid-title' },
        h('h2', { id: 'grid-title' }, 'Devices'), this.grid.el),
      this.output.el,
      this.table.el);
    const tick = setInterval(() => this.showTimes(), 1000);
    signal.addEventListener('abort', () => clearInterval(tick));
  }

  show(t) {
    // An answer can arrive after the events that followed it (a cancel's answer after the
    // stream has already said cancelled): a task never goes back to an older version.
    if (this.task && t.version < this.task.version) return;
    const changed = !this.task || t.version !== this.task.version;
    this.task = t;
    this.title.replaceChildren('Task ', h('code', {}, t.id), ' ', badge(t.status));
    this.title.parentElement.dataset.status = t.status;
    this.showActions();
    const c = t.progress.devices;
    const r = t.request;
    fill(this.summary,
      h('p', { class: 'muted' }, h('code', {}, [r.scriptUrl, ...r.args].join(' ')), ` on ${r.deviceCount} devices · `,
        `at most ${r.maxConcurrency} at once, ${r.maxErrors} errors allowed, ${duration(r.timeoutSeconds * 1000)} timeout`,
        t.relaunchOf ? h('span', {}, ' · relaunch of ', h('a', { href: '#/tasks/' + encodeURIComponent(t.relaunchOf.id) }, t.relaunchOf.id)) : null),
      h('div', { class: 'progress-line' }, bar(t.progress.percentage, 'task progress'),
        h('strong', { id: 'percentage' }, t.progress.percentage + '%')),
      h('p', { id: 'step' }, t.progress.currentStep, ' · ', countsText(c)),
      h('dl', { class: 'counts' }, deviceStatuses.map(([s, k]) => h('div', { 'data-status': s },
        h('dt', {}, h('span', { class: 'swatch', style: `background:${colours[s]}` }), label(s)),
        h('dd', {}, String(c[k]))))),
      this.times = h('dl', { class: 'times' }),
      t.result?.reason ? h('p', { class: 'problem' }, t.result.reason) : null);
    this.showTimes();
    if (changed) this.refreshDevices(false);
  }

  showTimes() {
    const t = this.task;
    if (!t || !this.times) return;
    const start = t.startedAt ? new Date(t.startedAt).getTime() : 0;
    const end = t.completedAt ? new Date(t.completedAt).getTime() : Date.now();
    const items = [['Submitted', when(t.createdAt)], ['Started', when(t.startedAt)],
      ['Elapsed', start ? duration(end - start) : '—']];
    if (t.completedAt) items.push(['Finished', when(t.completedAt)]);
    else if (t.estimatedCompletionAt) items.push(['Estimated completion', when(t.estimatedCompletionAt)]);
    this.times.replaceChildren(...items.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
  }

  showActions() {
    const t = this.task;
    const c0 = t.progress.devices;
    // The buttons are made again only when what they offer changes, so that one with the
    // keyboard's focus, or under the pointer, stays while the task runs on.
    const key = `${t.status}|${t.links.relaunch || ''}|${c0.succeeded < c0.total}`;
    if (key === this.actionsKey) return;
    this.actionsKey = key;
    const buttons = [];
    if (!terminal.has(t.status)) {
      buttons.push(h('button', {
        type: 'button', id: 'cancel-task', class: 'danger', disabled: t.status === 'cancelling',
        onclick: () => this.act(async () => this.show(await request('DELETE', pathOf(t.links.self), { signal: this.signal }))),
      }, t.status === 'cancelling' ? 'Cancelling…' : 'Cancel task'));
    }
    const c = t.progress.devices;
    if (t.links.relaunch && terminal.has(t.status) && c.succeeded < c.total) {
      buttons.push(h('button', {
        type: 'button', id: 'relaunch',
        onclick: () => this.act(async () => {
          const created = await request('POST', pathOf(t.links.relaunch), { body: { devices: 'failed' },
            header: { 'Idempotency-Key': `relaunch-${t.id}-${t.version}` }, signal: this.signal });
          location.hash = '#/tasks/' + encodeURIComponent(created.id);
        }),
      }, 'Relaunch failed devices'));
    }
    this.actions.replaceChildren(...buttons);
  }

  /** act runs an action of a button, showing its problem if it fails. */
  async act(fn) {
    this.message.replaceChildren();
    try {
      await fn();
    } catch (err) {
      if (err.name !== 'AbortError' && err.status !== 401) this.message.replaceChildren(problemView(err));
    }
  }

  /**
   * refreshDevices re-reads the grid's statuses and the table's page after a change, at most
   * once per interval that grows with the task's size, and never two at once.
   */
  async refreshDevices(first) {
    if (this.refreshing) { this.again = true; return; }
    this.again = false;
    const version = this.task.version;
    this.refreshing = (async () => {
      const devices = [];
      let next = pathOf(this.task.links.devices) + '?fields=status&limit=1000';
      while (next) {
        const page = await get(next, { signal: this.signal });
        devices.push(...page.items);
        next = page.next ? pathOf(page.next) : '';
      }
      this.grid.set(devices);
      await this.table.load();
      this.output.refresh();
      this.lastDevicesVersion = version;
      if (!first) await sleep(Math.max(500, devices.length / 4), this.signal);
    })();
    try {
      await this.refreshing;
    } catch (err) {
      if (err.name !== 'AbortError' && err.status !== 401) this.message.replaceChildren(problemView(err));
    } finally {
      this.refreshing = null;
    }
    if (this.again && !this.signal.aborted) this.refreshDevices(false);
  }

  open(deviceId) { this.output.open(deviceId); }
}

/** DeviceTable is a page of the task's devices with a status filter and paging. */
class DeviceTable {
  constructor(view) {
    this.view = view;
    this.cursors = [''];
    this.filter = h('select', { id: 'device-filter', onchange: () => { this.cursors = ['']; this.load(); } },
      h('option', { value: '' }, 'All'),
      h('option', { value: 'failed,timed_out,undeliverable' }, 'Not succeeded'),
      deviceStatuses.map(([s]) => h('option', { value: s }, label(s))));
    this.body = h('tbody', {});
    this.prev = h('button', { type: 'button', onclick: () => { this.cursors.pop(); this.load(); } }, 'Previous');
    this.next = h('button', { type: 'button', onclick: () => { this.cursors.push(this.nextCursor); this.load(); } }, 'Next');
    this.where = h('span', { class: 'muted small' });
    this.el = h('section', { class: 'device-table', 'aria-labelledby': 'table-title' },
      h('div', { class: 'heading' }, h('h2', { id: 'table-title' }, 'Device table'),
        h('div', { class: 'tools' }, h('label', { for: 'device-filter' }, 'Status'), this.filter)),
      h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Device', 'Status', 'Exit', 'Started', 'Took', 'Last words', ''].map((c) => h('th', { scope: 'col' }, c)))),
        this.body)),
      h('div', { class: 'pager' }, this.prev, this.where, this.next));
  }

  async load() {
    const q = new URLSearchParams({ limit: tableSize });
    if (this.filter.value) q.set('status', this.filter.value);
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) q.set('cursor', cursor);
    const page = await get(pathOf(this.view.task.links.devices) + '?' + q, { signal: this.view.signal });
    // Keep the keyboard's place across a refresh: the same control of the same device.
    const focused = this.body.contains(document.activeElement) ? document.activeElement : null;
    const place = focused && [focused.closest('tr')?.dataset.device, focused.className];
    this.body.replaceChildren(...page.items.map((d) => this.row(d)));
    if (place) {
      [...this.body.querySelectorAll('tr')].find((tr) => tr.dataset.device === place[0])
        ?.querySelector(`button[class="${place[1]}"]`)?.focus();
    }
    if (!page.items.length) this.body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No devices.')));
    this.nextCursor = page.next ? new URL(page.next, location.href).searchParams.get('cursor') : '';
    this.next.disabled = !this.nextCursor;
    this.prev.disabled = this.cursors.length <= 1;
    this.where.textContent = `Page ${this.cursors.length}`;
  }

  row(d) {
    const took = d.startedAt ? duration((d.completedAt ? new Date(d.completedAt) : Date.now()) - new Date(d.startedAt)) : '';
    const last = (d.stderr || d.reason || d.stdout || '').trim().split('\n').pop();
    return h('tr', { 'data-device': d.id },
      h('td', {}, h('button', { type: 'button', class: 'link mono', onclick: () => this.view.open(d.id) }, d.id)),
      h('td', {}, badge(d.status)),
      h('td', {}, d.exitCode ?? ''),
      h('td', { class: 'small' }, d.startedAt ? new Date(d.startedAt).toLocaleTimeString() : ''),
      h('td', { class: 'small' }, took),
      h('td', { class: 'small clip', title: last }, last),
      h('td', {}, d.links.cancel ? h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Cancel device ${d.id}`,
        onclick: () => this.view.act(async () => {
          await request('DELETE', pathOf(d.links.cancel), { signal: this.view.signal });
          await this.load();
        }),
      }, 'Cancel') : null));
  }
}

/** OutputPanel shows one device: its state and its whole output, followed while it runs. */
class OutputPanel {
  constructor(view) {
    this.view = view;
    this.el = h('section', { id: 'output', class: 'output', 'aria-labelledby': 'output-title', hidden: true });
    this.deviceId = '';
    this.ctl = null;
  }

  open(deviceId) {
    this.deviceId = deviceId;
    this.ctl?.abort();
    this.ctl = new AbortController();
    this.view.signal.addEventListener('abort', () => this.ctl.abort(), { once: true });
    this.el.hidden = false;
    this.stdout = h('pre', { id: 'stdout', tabindex: 0, 'aria-label': 'Standard output' });
    this.stderr = h('pre', { id: 'stderr', tabindex: 0, 'aria-label': 'Standard error' });
    this.head = h('div', {});
    fill(this.el,
      h('div', { class: 'heading' }, h('h2', { id: 'output-title' }, 'Device ', h('code', {}, deviceId)),
        h('button', { type: 'button', class: 'link', onclick: () => this.close() }, 'Close')),
      this.head,
      h('h3', {}, 'Output'), this.stdout, h('h3', {}, 'Errors'), this.stderr);
    this.follow(this.ctl.signal);
    this.el.scrollIntoView({ block: 'nearest' });
    this.el.querySelector('h2').setAttribute('tabindex', '-1');
    this.el.querySelector('h2').focus({ preventScroll: true });
  }

  close() {
    this.ctl?.abort();
    this.el.hidden = true;
    this.deviceId = '';
  }

  /** refresh re-reads the device's state after the task changed. */
  async refresh() {
    if (!this.deviceId || !this.device) return;
    try {
      this.showDevice(await get(pathOf(this.device.links.self || this.deviceURL()), { signal: this.ctl.signal }));
    } catch { /* the next change tries again */ }
  }

  deviceURL() {
    return pathOf(this.view.task.links.devices) + '/' + encodeURIComponent(this.deviceId);
  }

  showDevice(d) {
    this.device = d;
    fill(this.head, h('p', {}, badge(d.status),
      d.exitCode !== null && d.exitCode !== undefined ? ` exit ${d.exitCode}` : '',
      d.reason ? ` · ${d.reason}` : '',
      d.startedAt ? ` · started ${new Date(d.startedAt).toLocaleTimeString()}` : '',
      d.completedAt ? `, took ${duration(new Date(d.completedAt) - new Date(d.startedAt || d.completedAt))}` : ''),
    d.links.cancel ? h('button', {
      type: 'button', class: 'danger', id: 'cancel-device',
      onclick: () => this.view.act(async () => {
        this.showDevice(await request('DELETE', pathOf(d.links.cancel), { signal: this.ctl.signal }));
      }),
    }, 'Cancel this device') : null);
  }

  /**
   * follow shows the device's whole output, and while the device runs keeps it current: each
   * read asks to follow the output, which a server that can streams until the device ends;
   * one that cannot answers with the output so far, and the panel reads again a second later.
   */
  async follow(signal) {
    try {
      this.showDevice(await get(this.deviceURL(), { signal }));
      for (;;) {
        const running = this.device.status === 'running' || this.device.status === 'pending';
        await Promise.all([this.read('stdout', running, signal), this.read('stderr', running, signal)]);
        if (!running || signal.aborted) return;
        this.showDevice(await get(this.deviceURL(), { signal }));
        if (this.device.status === 'running' || this.device.status === 'pending') await sleep(1000, signal);
      }
    } catch (err) {
      if (err.name === 'AbortError' || signal.aborted) return;
      if (err instanceof Problem && err.status === 404 && this.device) {
        // No full output kept here: the device's own copy is what there is.
        this.stdout.textContent = this.device.stdout || '';
        this.stderr.textContent = this.device.stderr || '';
        return;
      }
      this.head.append(problemView(err));
    }
  }

  async read(name, follow, signal) {
    const pre = name === 'stdout' ? this.stdout : this.stderr;
    if (!this.device.links.output) {
      // No full output here (a device that has not started, or a deployment that keeps none):
      // the device's own copy is what there is.
      pre.textContent = this.device[name] || '';
      return;
    }
    const q = new URLSearchParams({ stream: name });
    if (follow) q.set('follow', 'true');
    const headers = new Headers({ Accept: 'text/plain, application/problem+json' });
    if (token()) headers.set('Authorization', 'Bearer ' + token());
    const res = await fetch(pathOf(this.device.links.output) + '?' + q, { headers, signal, cache: 'no-store' });
    if (!res.ok) {
      if (follow && res.status === 409) {
        // This deployment cannot stream the output while the device runs (on AWS without
        // CloudWatch output): read what there is, and read again while the device runs.
        return this.read(name, false, signal);
      }
      if (res.status === 404) { pre.textContent = (name === 'stdout' ? this.device.stdout : this.device.stderr) || ''; return; }
      throw new Problem({ status: res.status, title: res.statusText, ...(await res.json().catch(() => ({}))) });
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      pre.textContent = text;
      pre.scrollTop = pre.scrollHeight;
    }
    pre.textContent = text;
    pre.classList.toggle('empty', text === '');
  }
}
