// Message browser: read a partition from an offset or a time, page
// through it, inspect each message; live tail of the whole topic over
// the WebSocket.

import { api, openTail, describe } from './api.js';
import { h, field, select, section, pageHeader, busy, uid } from './dom.js';
import { num, time, fromLocalInput, toLocalInput } from './format.js';
import { parseJson } from './json.js';
import { messageItem } from './message-view.js';

const enc = encodeURIComponent;
const TAIL_KEEP = 200; // messages the tail keeps on screen

function browser(ctx, name, info) {
  const q = ctx.query;
  const partitions = info.config.partitions;
  const firstP = Math.min(Math.max(Number(q.get('partition') || 0), 0), partitions - 1);
  const partition = select(Array.from({ length: partitions }, (_, i) => [i, String(i)]), firstP);
  const byTime = q.has('timestamp');
  const radioName = uid('pos');
  const posOffset = h('input', { type: 'radio', name: radioName, value: 'offset', checked: !byTime, id: uid() });
  const posTime = h('input', { type: 'radio', name: radioName, value: 'timestamp', checked: byTime, id: uid() });
  const offset = h('input', { type: 'number', min: '0', value: q.get('offset') ?? '' , placeholder: 'oldest' });
  const stamp = h('input', { type: 'datetime-local', step: '1', value: byTime ? toLocalInput(Number(q.get('timestamp'))) : '' });
  const limit = h('input', { type: 'number', min: '1', max: '500', value: q.get('limit') || '20' });
  const read = h('button', { type: 'submit', class: 'primary', text: 'Read' });
  const older = h('button', { type: 'button', text: '← Older', disabled: true });
  const newer = h('button', { type: 'button', text: 'Newer →', disabled: true });
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  const list = h('div', { class: 'msg-list' });
  const syncPosition = () => {
    offset.disabled = !posOffset.checked;
    stamp.disabled = !posTime.checked;
  };
  posOffset.addEventListener('change', syncPosition);
  posTime.addEventListener('change', syncPosition);
  syncPosition();

  let shown = null; // { partition, first, next, low }
  const load = async (query) => {
    const p = Number(partition.value);
    const n = Math.min(Math.max(Number(limit.value) || 20, 1), 500);
    const page = await api.read(name, p, { ...query, limit: String(n) });
    if (!ctx.alive) return;
    const topic = await api.topic(name).catch(() => info);
    const part = topic.partitions.find((x) => x.partition === p) || { low_offset: 0, high_offset: 0 };
    const msgs = page.messages;
    shown = {
      partition: p,
      first: msgs.length ? msgs[0].offset : page.next_offset,
      next: page.next_offset,
      low: part.low_offset,
      limit: n,
    };
    ctx.setQuery({ partition: p, ...query, limit: n });
    list.replaceChildren(...msgs.map((m) => messageItem(m, { open: msgs.length === 1 })));
    summary.textContent = msgs.length
      ? `Partition ${p}: offsets ${num(msgs[0].offset)}–${num(msgs[msgs.length - 1].offset)} of ${num(part.low_offset)}–${num(Math.max(part.high_offset - 1, 0))}.`
      : `Partition ${p}: no messages from there (stored offsets ${num(part.low_offset)}–${num(Math.max(part.high_offset - 1, 0))}${part.high_offset === part.low_offset ? ', empty' : ''}).`;
    older.disabled = shown.first <= shown.low;
    newer.disabled = shown.next >= part.high_offset;
  };

  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Read messages' },
    field('Partition', partition),
    h(
      'fieldset',
      { class: 'position' },
      h('legend', { text: 'From' }),
      h('div', { class: 'choice' }, posOffset, h('label', { for: posOffset.id, text: 'Offset' }), offset),
      h('div', { class: 'choice' }, posTime, h('label', { for: posTime.id, text: 'Time' }), stamp),
    ),
    field('Limit', limit),
    read,
  );
  offset.setAttribute('aria-label', 'Offset');
  stamp.setAttribute('aria-label', 'Time (local)');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    let query;
    if (posTime.checked) {
      const ms = fromLocalInput(stamp.value);
      query = ms === null ? { offset: '0' } : { timestamp: String(ms) };
    } else {
      query = { offset: offset.value === '' ? '0' : String(Number(offset.value)) };
    }
    busy(read, () => load(query));
  });
  older.addEventListener('click', () => {
    if (!shown) return;
    const from = Math.max(shown.low, shown.first - shown.limit);
    offset.value = String(from);
    posOffset.checked = true;
    syncPosition();
    busy(older, () => load({ offset: String(from) }));
  });
  newer.addEventListener('click', () => {
    if (!shown) return;
    offset.value = String(shown.next);
    posOffset.checked = true;
    syncPosition();
    busy(newer, () => load({ offset: String(shown.next) }));
  });

  // A link with a position reads at once.
  if (q.has('offset') || q.has('timestamp')) {
    const initial = byTime ? { timestamp: q.get('timestamp') } : { offset: q.get('offset') };
    load(initial).catch((err) => {
      summary.textContent = describe(err);
    });
  }
  return [form, h('div', { class: 'pager' }, older, newer), summary, list];
}

function tail(ctx, name) {
  const from = select([['latest', 'new messages (latest)'], ['earliest', 'from the beginning (earliest)']], 'latest');
  const toggle = h('button', { type: 'button', class: 'primary', 'aria-pressed': 'false', text: 'Start live tail' });
  const clear = h('button', { type: 'button', text: 'Clear' });
  const state = h('span', { class: 'muted', role: 'status', text: 'Stopped.' });
  const list = h('div', { class: 'msg-list tail', 'aria-label': 'Live messages' });
  let socket = null;
  let received = 0;

  const stop = () => {
    if (socket) {
      socket.onclose = null;
      socket.close(1000);
      socket = null;
    }
    toggle.textContent = 'Start live tail';
    toggle.setAttribute('aria-pressed', 'false');
    from.disabled = false;
    state.textContent = received ? `Stopped after ${num(received)} message(s).` : 'Stopped.';
  };
  const start = () => {
    received = 0;
    try {
      socket = openTail(name, from.value);
    } catch (err) {
      state.textContent = `Cannot open the socket: ${describe(err)}`;
      return;
    }
    toggle.textContent = 'Stop live tail';
    toggle.setAttribute('aria-pressed', 'true');
    from.disabled = true;
    state.textContent = 'Connecting…';
    socket.onopen = () => {
      state.textContent = 'Live: waiting for messages…';
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = parseJson(String(event.data));
      } catch {
        return;
      }
      if (frame.type === 'error') {
        state.textContent = `Server error: ${frame.code}: ${frame.detail}`;
        return;
      }
      if (frame.type !== 'message') return;
      received++;
      list.prepend(messageItem(frame));
      while (list.childElementCount > TAIL_KEEP) list.lastElementChild.remove();
      state.textContent = `Live: ${num(received)} received, last at ${time(frame.timestamp)}.`;
    };
    socket.onclose = (event) => {
      socket = null;
      stop();
      // A refused handshake (401/403/404) closes with 1006 and no reason:
      // browsers do not expose the HTTP answer.
      state.textContent =
        event.code === 1006
          ? 'The socket could not open or was cut (1006). Check the token and that the topic exists.'
          : `Closed (${event.code}${event.reason ? `: ${event.reason}` : ''}).`;
    };
  };
  toggle.addEventListener('click', () => (socket ? stop() : start()));
  clear.addEventListener('click', () => {
    list.replaceChildren();
  });
  ctx.onCleanup(stop);
  return [h('div', { class: 'inline-form' }, field('Tail', from), toggle, clear), h('p', {}, state), list];
}

export async function render(ctx, name) {
  const info = await api.topic(name);
  if (!ctx.alive) return;
  ctx.main.append(
    pageHeader(`Messages of ${name}`, [['/', 'Overview'], [`/topics/${enc(name)}`, name], [null, 'Messages']]),
    section('Browse a partition', browser(ctx, name, info)),
    section('Live tail (all partitions)', tail(ctx, name)),
  );
}
