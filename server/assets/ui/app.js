// The console's shell: hash routes (#/..., so the server serves one
// page), the token form, auto-refresh, and page lifecycles (a page's
// timers and sockets end when the user navigates away).

import { getToken, setToken, describe } from './api.js';
import { h, notify, clearNotices, pageHeader, fill } from './dom.js';
import * as overview from './page-overview.js';
import * as topic from './page-topic.js';
import * as messages from './page-messages.js';
import * as subscription from './page-subscription.js';
import * as deadLetters from './page-dead-letters.js';

const NAME = '([A-Za-z0-9._-]+)';
const ROUTES = [
  [new RegExp('^/$'), overview],
  [new RegExp(`^/topics/${NAME}$`), topic],
  [new RegExp(`^/topics/${NAME}/messages$`), messages],
  [new RegExp(`^/topics/${NAME}/subscriptions/${NAME}$`), subscription],
  [new RegExp(`^/topics/${NAME}/subscriptions/${NAME}/dead-letters$`), deadLetters],
];

const main = document.getElementById('main');
const autoRefresh = document.getElementById('auto-refresh');
let current = null;

function parseHash() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = hash.split('?');
  return { path, query: new URLSearchParams(query) };
}

/** A page's handle on its lifetime. */
function makeContext(path, query) {
  const cleanups = [];
  const ctx = {
    path,
    query,
    main,
    alive: true,
    onCleanup(fn) {
      cleanups.push(fn);
    },
    end() {
      ctx.alive = false;
      for (const fn of cleanups.splice(0)) {
        try {
          fn();
        } catch {
          // A cleanup that fails must not keep the next page from rendering.
        }
      }
    },
    /** Rewrites the query of the current URL without re-rendering. */
    setQuery(params) {
      const q = new URLSearchParams(params).toString();
      history.replaceState(null, '', `#${path}${q ? `?${q}` : ''}`);
    },
    /**
     * Runs `fn` now and then every `ms` while the page lives and
     * auto-refresh is on. Returns a function that runs it at once.
     */
    every(ms, fn) {
      let timer = null;
      let running = false;
      let again = false;
      const tick = async () => {
        clearTimeout(timer);
        if (!ctx.alive) return;
        // Asked while a refresh runs (after an action): run once more
        // when it ends, so the page shows the action's effect.
        if (running) {
          again = true;
          return;
        }
        running = true;
        do {
          again = false;
          try {
            await fn();
          } catch (err) {
            if (ctx.alive) failed(err);
          }
        } while (again && ctx.alive);
        running = false;
        if (ctx.alive) {
          timer = setTimeout(() => {
            if (autoRefresh.checked && !document.hidden) tick();
            else waitForRefresh(tick);
          }, ms);
        }
      };
      cleanups.push(() => clearTimeout(timer));
      tick();
      return tick;
    },
  };
  // A refresh skipped while auto-refresh is off or the tab hidden waits
  // for it to come back.
  function waitForRefresh(tick) {
    const resume = () => {
      if (!ctx.alive || !autoRefresh.checked || document.hidden) return;
      autoRefresh.removeEventListener('change', resume);
      document.removeEventListener('visibilitychange', resume);
      tick();
    };
    autoRefresh.addEventListener('change', resume);
    document.addEventListener('visibilitychange', resume);
    cleanups.push(() => {
      autoRefresh.removeEventListener('change', resume);
      document.removeEventListener('visibilitychange', resume);
    });
  }
  return ctx;
}

/** Shows an error that ended a page or a refresh. */
function failed(err) {
  if (err && err.status === 401) return; // the token form is showing
  notify(describe(err), 'error');
}

async function route() {
  if (current) current.end();
  const { path, query } = parseHash();
  const ctx = makeContext(path, query);
  current = ctx;
  clearNotices();
  main.replaceChildren();
  const match = ROUTES.map(([re, page]) => [re.exec(path), page]).find(([m]) => m);
  if (!match) {
    main.append(pageHeader('Not found'), h('p', { text: 'No such page in the console. ' }, h('a', { href: '#/', text: 'Back to the overview' })));
    return;
  }
  const [m, page] = match;
  try {
    await page.render(ctx, ...m.slice(1).map(decodeURIComponent));
  } catch (err) {
    if (ctx.alive) failed(err);
  }
  if (ctx.alive && focusAfterRender) {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({ preventScroll: false });
  }
  focusAfterRender = true;
}

let focusAfterRender = false; // not on the first load: keep the page's natural start

/** The token form, shown instead of the page when the server says 401. */
function showTokenForm(rejected) {
  if (current) current.end();
  clearNotices();
  const input = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, id: 'token-input' });
  const form = h(
    'form',
    { class: 'token-form' },
    h('div', { class: 'field' }, h('label', { for: 'token-input', text: 'Bearer token' }), input),
    h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    setToken(value);
    route();
  });
  fill(
    main,
    pageHeader('Sign in'),
    h(
      'p',
      {},
      'This server requires authentication. Enter a bearer token (from ',
      h('code', { text: 'weir auth new-token' }),
      ' or your administrator). It is kept in this browser tab only and sent with every API call; the console shows what its principal may see.',
    ),
    rejected ? h('p', { class: 'note error', role: 'alert', text: 'The server rejected that token (401). Check it and try again.' }) : null,
    form,
  );
  input.focus();
}

function renderAuthState() {
  const box = document.getElementById('auth-state');
  if (getToken()) {
    const out = h('button', { type: 'button', class: 'link', text: 'Sign out' });
    out.addEventListener('click', () => {
      setToken('');
      route();
    });
    box.replaceChildren(h('span', { class: 'muted', text: 'Token set · ' }), out);
  } else {
    const enter = h('button', { type: 'button', class: 'link', text: 'Enter token' });
    enter.addEventListener('click', () => showTokenForm(false));
    box.replaceChildren(enter);
  }
}

let lastUnauthorized = 0;
window.addEventListener('weir:unauthorized', (e) => {
  // Several calls of one page fail together: show the form once.
  const now = Date.now();
  if (now - lastUnauthorized < 500 && document.getElementById('token-input')) return;
  lastUnauthorized = now;
  showTokenForm(e.detail.hadToken);
});
window.addEventListener('weir:token', renderAuthState);
window.addEventListener('hashchange', route);
try {
  autoRefresh.checked = sessionStorage.getItem('weir.console.autoRefresh') !== 'off';
  autoRefresh.addEventListener('change', () => {
    sessionStorage.setItem('weir.console.autoRefresh', autoRefresh.checked ? 'on' : 'off');
  });
} catch {
  // No storage: the setting lasts as long as the page.
}
document.getElementById('skip').addEventListener('click', () => main.focus());
renderAuthState();
route();
