// One message, shown without trusting it: key, headers and payload are
// text nodes; the payload as pretty JSON, text, hex or base64 of its
// stored bytes.

import { h, facts, select, table, uid } from './dom.js';
import { time, preview, bytes as sizeOf } from './format.js';
import { rawValueOf, prettyJson, utf8, fromBase64, toBase64, hexDump, utf8Text } from './json.js';

/** The payload: its stored bytes, and its JSON text when it is JSON. */
export function payloadOf(message) {
  if (message.value_b64 !== undefined && message.value_b64 !== null) {
    return { json: null, bytes: fromBase64(message.value_b64) || new Uint8Array() };
  }
  if (message.value === undefined) return { json: null, bytes: new Uint8Array() };
  const raw = rawValueOf(message) ?? JSON.stringify(message.value);
  return { json: raw, bytes: utf8(raw) };
}

/** One line summarizing a payload. */
export function payloadPreview(message, max = 120) {
  const { json, bytes } = payloadOf(message);
  if (json !== null) return preview(json, max);
  const text = utf8Text(bytes);
  return text !== null ? preview(text, max) : `${sizeOf(bytes.length)} of binary`;
}

const VIEWS = [
  ['pretty', 'Pretty'],
  ['text', 'Text'],
  ['hex', 'Hex'],
  ['base64', 'Base64'],
];

function render(view, { json, bytes }) {
  if (view === 'pretty') {
    if (json !== null) return prettyJson(json);
    const text = utf8Text(bytes);
    return text !== null ? text : hexDump(bytes);
  }
  if (view === 'text') return json !== null ? json : (utf8Text(bytes) ?? '(not UTF-8 text: see Hex)');
  if (view === 'hex') return hexDump(bytes);
  return toBase64(bytes);
}

/** The payload with a chooser of views. */
export function payloadView(message) {
  const payload = payloadOf(message);
  const pre = h('pre', { class: 'payload', tabindex: '0' });
  const chooser = select(VIEWS, 'pretty', { class: 'compact' });
  const show = () => {
    pre.textContent = render(chooser.value, payload);
    pre.setAttribute('aria-label', `Payload (${chooser.selectedOptions[0].textContent})`);
  };
  chooser.addEventListener('change', show);
  show();
  const id = uid('pv');
  chooser.id = id;
  return h(
    'div',
    { class: 'payload-box' },
    h(
      'div',
      { class: 'payload-bar' },
      h('label', { for: id, text: 'Show payload as' }),
      chooser,
      h('span', { class: 'muted', text: `${payload.json !== null ? 'JSON' : 'bytes'}, ${sizeOf(payload.bytes.length)}` }),
    ),
    pre,
  );
}

/** The headers as a table (weir-* ones, set by the server, marked). */
export function headersTable(headers) {
  const rows = Object.entries(headers || {}).sort(([a], [b]) => a.localeCompare(b));
  return table(
    'Headers',
    [
      { label: 'Header', cell: ([name]) => h('code', { class: name.startsWith('weir-') ? 'weir' : null, text: name }), head: true },
      { label: 'Value', cell: ([, value]) => h('span', { class: 'wrap', text: value }) },
    ],
    rows,
    'No headers.',
  );
}

/**
 * A collapsible message. The details render when first opened.
 * `extra`: more [term, value] pairs (attempt, ack id, ...).
 */
export function messageItem(message, { extra = [], summaryExtra = null, open = false } = {}) {
  const details = h('details', { class: 'msg', open });
  const keyText = message.key === null || message.key === undefined ? null : message.key;
  const summary = h(
    'summary',
    {},
    h('span', { class: 'pos', text: `p${message.partition} · ${message.offset}` }),
    h('span', { class: 'ts', text: time(message.timestamp) }),
    keyText !== null ? h('span', { class: 'key', title: 'key', text: preview(keyText, 40) }) : null,
    summaryExtra,
    h('span', { class: 'preview', text: payloadPreview(message) }),
  );
  details.append(summary);
  let filled = false;
  const fill = () => {
    if (filled || !details.open) return;
    filled = true;
    details.append(
      h(
        'div',
        { class: 'msg-body' },
        facts([
          ['Topic', message.topic],
          ['Partition', String(message.partition)],
          ['Offset', String(message.offset)],
          ['Timestamp', `${time(message.timestamp)} (${message.timestamp})`],
          ['Key', keyText === null ? h('span', { class: 'muted', text: '(none)' }) : h('code', { class: 'wrap', text: keyText })],
          ...extra,
        ]),
        h('h3', { text: 'Headers' }),
        headersTable(message.headers),
        h('h3', { text: 'Payload' }),
        payloadView(message),
      ),
    );
  };
  details.addEventListener('toggle', fill);
  if (open) queueMicrotask(fill);
  return details;
}
