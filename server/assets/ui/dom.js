// Building the page safely. Every piece of text, and above all message
// contents (untrusted), goes into the DOM as text: elements come from
// createElement, strings become text nodes. Nothing here parses HTML.

import { describe } from './api.js';

/**
 * h('a', { href: '#/', class: 'x', onclick: fn }, 'text', child, [more])
 * `text` sets textContent; `on<event>` takes a function; links may only
 * point inside the console or the server.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, val] of Object.entries(props || {})) {
    if (val === undefined || val === null || val === false) continue;
    if (key.startsWith('on')) {
      if (typeof val !== 'function') throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2), val);
    } else if (key === 'text') {
      el.textContent = String(val);
    } else if (key === 'class') {
      el.className = val;
    } else if (key === 'value' || key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = val;
    } else if (key === 'style' || key === 'srcdoc') {
      throw new TypeError(`${key} is not allowed`);
    } else {
      if (key === 'href' && !/^[#/]/.test(String(val))) throw new TypeError('external link');
      el.setAttribute(key, val === true ? '' : String(val));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An in-console link to `#<path>`. */
export function link(path, text, props = {}) {
  return h('a', { ...props, href: `#${path}` }, text);
}

let ids = 0;
/** A fresh element id. */
export const uid = (prefix = 'f') => `${prefix}${++ids}`;

/** Replaces the children of `el`, skipping null / false / undefined. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** A labelled form control. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid();
  const hintEl = hint ? h('small', { id: uid('h'), text: hint }) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id, text: label }), control, hintEl);
}

/** A <select> of [value, label] pairs. */
export function select(options, value, props = {}) {
  return h(
    'select',
    props,
    options.map(([v, label]) => h('option', { value: String(v), selected: String(v) === String(value) }, label)),
  );
}

/** A definition list from [term, description] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([term, desc]) => [h('dt', { text: term }), h('dd', {}, desc)]));
}

/**
 * A table. columns: [{ label, cell: (row) => text | Node, num, head }];
 * `head` makes the cell a row header.
 */
export function table(label, columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'empty', text: empty });
  const headRow = h(
    'tr',
    {},
    columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)),
  );
  const body = rows.map((row) =>
    h(
      'tr',
      {},
      columns.map((c) =>
        h(c.head ? 'th' : 'td', { scope: c.head ? 'row' : null, class: c.num ? 'num' : null }, c.cell(row)),
      ),
    ),
  );
  // The wrapper scrolls wide tables; focusable so keyboards can scroll it.
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `${label} (table)` },
    h('table', {}, h('caption', { class: 'sr-only', text: label }), h('thead', {}, headRow), h('tbody', {}, body)),
  );
}

/** Shows a message in the polite status region (errors: the alert region). */
export function notify(text, kind = 'ok') {
  const polite = document.getElementById('status');
  const alert = document.getElementById('alert');
  const target = kind === 'error' ? alert : polite;
  (kind === 'error' ? polite : alert).replaceChildren();
  const dismiss = h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss message', text: '×' });
  const note = h('p', { class: `note ${kind}` }, h('span', { text }), dismiss);
  dismiss.addEventListener('click', () => note.remove());
  target.replaceChildren(note);
}

export function clearNotices() {
  document.getElementById('status').replaceChildren();
  document.getElementById('alert').replaceChildren();
}

/**
 * A modal confirmation. With `typeToConfirm`, the user must type that
 * text first (deletes). Resolves to true when confirmed.
 */
export function confirmAction({ title, message, confirm = 'Confirm', danger = false, typeToConfirm = null }) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    const titleId = uid('dlg');
    const input = typeToConfirm ? h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' }) : null;
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', text: confirm });
    const cancel = h('button', { type: 'button', text: 'Cancel' });
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', { id: titleId, text: title }),
      h('p', { text: message }),
      input ? field(`Type “${typeToConfirm}” to confirm`, input) : null,
      h('div', { class: 'actions' }, cancel, ok),
    );
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': titleId }, form);
    let confirmed = false;
    if (input) {
      ok.disabled = true;
      input.addEventListener('input', () => {
        ok.disabled = input.value !== typeToConfirm;
      });
    }
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (input && input.value !== typeToConfirm) return;
      confirmed = true;
      dialog.close();
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (previous && previous.isConnected) previous.focus();
      resolve(confirmed);
    });
    document.body.append(dialog);
    dialog.showModal();
    (input || cancel).focus();
  });
}

/**
 * Runs `action` for a button: disables it meanwhile, reports success
 * with `done(result)`'s text and failures in the alert region.
 */
export async function busy(button, action, done) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    const result = await action();
    if (done) {
      const text = done(result);
      if (text) notify(text);
    }
    return result;
  } catch (err) {
    notify(describe(err), 'error');
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/** A section with a heading. */
export function section(title, ...children) {
  const id = uid('s');
  return h('section', { 'aria-labelledby': id }, h('h2', { id, text: title }), children);
}

/** A page's title and breadcrumbs; the heading takes focus on navigation. */
export function pageHeader(title, crumbs = [], extra = null) {
  document.title = `${title} · Weir console`;
  return h(
    'div',
    { class: 'page-head' },
    crumbs.length
      ? h(
          'nav',
          { 'aria-label': 'Breadcrumb', class: 'crumbs' },
          h('ol', {}, crumbs.map(([path, text]) => h('li', {}, path ? link(path, text) : h('span', { 'aria-current': 'page', text })))),
        )
      : null,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1', text: title }), extra),
  );
}
