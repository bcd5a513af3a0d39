// The tasks page: the caller's tasks, newest first, live through GET /tasks/events.
import { apiPath, get, pathOf, stream, sleep } from './api.js';
import { h, badge, bar, countsText, ago, taskStatuses, label, problemView } from './ui.js';

const pageSize = 25;

export async function tasksPage(main, { signal, setLive, params }) {
  document.title = 'Tasks · fleetrun';
  const status = params.get('status') || '';
  const filter = h('select', {
    id: 'status-filter',
    onchange: () => { location.hash = '#/' + (filter.value ? '?status=' + filter.value : ''); },
  }, h('option', { value: '' }, 'All'), taskStatuses.map((s) => h('option', { value: s, selected: s === status }, label(s))));
  const body = h('tbody', {});
  const older = h('tbody', { class: 'older' });
  const more = h('button', { type: 'button', hidden: true }, 'Show older tasks');
  const empty = h('p', { class: 'muted', hidden: true }, status ? `No ${label(status)} tasks.` : 'No tasks yet. ',
    status ? null : h('a', { href: '#/submit' }, 'Submit one.'));
  main.append(
    h('div', { class: 'heading' }, h('h1', {}, 'Tasks'),
      h('div', { class: 'tools' }, h('label', { for: 'status-filter' }, 'Status'), filter,
        h('a', { class: 'button', href: '#/submit' }, 'New task'))),
    h('div', { class: 'scroll' }, h('table', { class: 'tasks' },
      h('caption', { class: 'sr-only' }, 'Tasks, newest first'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Task'), h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'wide' }, 'Progress'), h('th', { scope: 'col' }, 'Submitted'))),
      body, older)),
    empty, more);

  let next = '';
  const failed = h('div', {});
  more.addEventListener('click', async () => {
    more.disabled = true;
    failed.replaceChildren();
    try {
      const page = await get(pathOf(next), { signal });
      page.items.forEach((t) => older.append(row(t)));
      next = page.next || '';
      more.hidden = !next;
    } catch (err) {
      if (err.name !== 'AbortError' && err.status !== 401) failed.append(problemView(err));
    } finally {
      more.disabled = false;
    }
  });
  main.append(failed);
  const show = (page) => {
    body.replaceChildren(...page.items.map(row));
    older.replaceChildren();
    next = page.next || '';
    more.hidden = !next;
    empty.hidden = page.items.length > 0;
  };

  const q = new URLSearchParams({ limit: pageSize });
  if (status) q.set('status', status);
  try {
    await stream(apiPath('/tasks/events?' + q), {
      signal, onState: setLive,
      onEvent: (ev) => { if (ev.event === 'tasks') show(JSON.parse(ev.data)); },
    });
  } catch (err) {
    if (err.status === 401 || err.status === 400 || signal.aborted) throw err;
    // A server without the list stream: poll, as gently as the list's own answers allow.
    setLive('polling');
    while (!signal.aborted) {
      show(await get(apiPath('/tasks?' + q), { signal }));
      await sleep(5000, signal);
    }
  }
}

function row(t) {
  const c = t.progress.devices;
  const href = '#/tasks/' + encodeURIComponent(t.id);
  return h('tr', { 'data-task': t.id, 'data-status': t.status },
    h('td', {}, h('a', { href, class: 'mono' }, t.id), h('div', { class: 'muted small' }, t.request.scriptUrl,
      t.relaunchOf ? ' · relaunch' : '')),
    h('td', {}, badge(t.status)),
    h('td', { class: 'wide' }, bar(t.progress.percentage, `progress of ${t.id}`),
      h('div', { class: 'small' }, `${t.progress.percentage}% · ${countsText(c)}`)),
    h('td', { class: 'small' }, ago(t.createdAt)));
}
