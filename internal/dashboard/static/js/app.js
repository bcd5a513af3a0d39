// The dashboard's entry point: a router over the location's hash (#/, #/tasks/ID, #/submit),
// and the token form a server with tokens needs.
import { setToken, token } from './api.js';
import { h, problemView } from './ui.js';
import { tasksPage } from './tasks.js';
import { taskPage } from './task.js';
import { submitPage } from './submit.js';

const main = document.getElementById('main');
const live = document.getElementById('live');
const signout = document.getElementById('signout');
let stop = null;

/** setLive says whether the page's event stream is connected. */
function setLive(state) {
  live.textContent = state === 'live' ? 'Live' : state === 'reconnecting' ? 'Reconnecting…' : state === 'polling' ? 'Polling' : '';
  live.dataset.state = state || '';
}

function leave() {
  if (stop) stop.abort();
  stop = null;
  setLive('');
}

/** route shows the page the hash names, ending whatever the last page was doing. */
function route() {
  leave();
  stop = new AbortController();
  main.replaceChildren();
  signout.hidden = !token();
  const path = (location.hash.replace(/^#/, '') || '/');
  const [p, query] = path.split('?');
  const ctx = { signal: stop.signal, setLive, params: new URLSearchParams(query || '') };
  const task = p.match(/^\/tasks\/([^/]+)$/);
  const run = task ? taskPage(main, decodeURIComponent(task[1]), ctx)
    : p === '/submit' ? submitPage(main, ctx)
      : tasksPage(main, ctx);
  Promise.resolve(run).catch((err) => {
    if (err?.name === 'AbortError' || ctx.signal.aborted) return;
    if (err?.status === 401) return; // the token form has taken over
    main.append(problemView(err));
  });
}

/** signIn asks for the token, showing the 401 problem that brought the page here. */
function signIn(problem) {
  leave();
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    'aria-describedby': 'token-help' });
  main.replaceChildren(h('section', { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    problemView(problem),
    h('form', {
      onsubmit: (e) => {
        e.preventDefault();
        setToken(input.value.trim());
        route();
      },
    },
    h('label', { for: 'token' }, 'Token'),
    input,
    h('p', { id: 'token-help', class: 'muted' }, 'The secret of your --token. It is kept for this browser tab only.'),
    h('button', { type: 'submit' }, 'Sign in'))));
  document.title = 'Sign in · fleetrun';
  input.focus();
}

window.addEventListener('fleetrun:unauthorized', (e) => {
  if (!main.querySelector('.signin')) signIn(e.detail);
});
window.addEventListener('hashchange', route);
signout.addEventListener('click', () => {
  setToken('');
  route();
});
route();
