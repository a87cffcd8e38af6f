// A topic: partitions with offsets and sizes, configuration (and its
// update), a produce form, its subscriptions (and creating one), delete.

import { api } from './api.js';
import { h, link, field, select, facts, table, section, pageHeader, busy, notify, confirmAction } from './dom.js';
import { num, bytes, duration } from './format.js';

const enc = encodeURIComponent;

function retentionText(r) {
  const parts = [];
  if (r.max_age_ms) parts.push(`age ${duration(r.max_age_ms)}`);
  if (r.max_bytes) parts.push(`${bytes(r.max_bytes)} per partition`);
  if (r.max_messages) parts.push(`${num(r.max_messages)} messages per partition`);
  return parts.length ? parts.join(', ') : 'unlimited';
}

/** "name: value" lines → headers object. */
export function parseHeaders(text) {
  const headers = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const at = line.indexOf(':');
    if (at <= 0) throw new Error(`header line “${line}” is not name: value`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function produceForm(ctx, name, partitionCount, refresh) {
  const key = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const partition = select([['', 'by key / round robin'], ...Array.from({ length: partitionCount }, (_, i) => [i, String(i)])], '');
  const format = select(
    [
      ['json', 'JSON'],
      ['text', 'Text (sent as a JSON string)'],
      ['base64', 'Bytes (base64)'],
    ],
    'json',
  );
  const value = h('textarea', { rows: '5', required: true, spellcheck: 'false', class: 'mono' });
  const headers = h('textarea', { rows: '2', spellcheck: 'false', class: 'mono', placeholder: 'trace-id: abc' });
  const submit = h('button', { type: 'submit', class: 'primary', text: 'Produce' });
  const result = h('p', { class: 'result', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'stack-form', 'aria-label': 'Produce a message' },
    h('div', { class: 'row' }, field('Key', key, 'Optional'), field('Partition', partition), field('Payload format', format)),
    field('Payload', value),
    field('Headers', headers, 'One “name: value” per line; names must not start with weir-'),
    h('div', { class: 'row' }, submit),
    result,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const produced = await busy(submit, async () => {
      const message = {};
      let raw = null;
      if (format.value === 'json') {
        try {
          JSON.parse(value.value);
        } catch (err) {
          throw new Error(`the payload is not JSON: ${err.message}`);
        }
        raw = value.value.trim();
      } else if (format.value === 'text') {
        message.value = value.value;
      } else {
        message.value_b64 = value.value.replace(/\s+/g, '');
      }
      if (key.value) message.key = key.value;
      if (partition.value !== '') message.partition = Number(partition.value);
      const hdrs = parseHeaders(headers.value);
      if (Object.keys(hdrs).length) message.headers = hdrs;
      return raw === null ? api.produce(name, [message]) : api.produceRaw(name, message, raw);
    });
    if (!produced || !ctx.alive) return;
    const r = produced.results[0];
    result.replaceChildren(
      `Produced to partition ${r.partition} at offset ${r.offset}${r.duplicate ? ' (duplicate)' : ''}. `,
      link(`/topics/${enc(name)}/messages?partition=${r.partition}&offset=${r.offset}`, 'View it'),
    );
    notify(`Produced to partition ${r.partition} at offset ${r.offset}.`);
    refresh();
  });
  return form;
}

function configForm(ctx, name, config, refresh) {
  const partitions = h('input', { type: 'number', min: String(config.partitions), max: '1024', value: String(config.partitions) });
  const r = config.retention || {};
  const age = h('input', { type: 'number', min: '1', placeholder: 'unlimited', value: r.max_age_ms ?? '' });
  const maxBytes = h('input', { type: 'number', min: '1', placeholder: 'unlimited', value: r.max_bytes ?? '' });
  const maxMessages = h('input', { type: 'number', min: '1', placeholder: 'unlimited', value: r.max_messages ?? '' });
  const submit = h('button', { type: 'submit', text: 'Update configuration' });
  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Update the configuration' },
    field('Partitions', partitions, 'Can only grow'),
    field('Max age (ms)', age),
    field('Max bytes / partition', maxBytes),
    field('Max messages / partition', maxMessages),
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const opt = (input) => (input.value === '' ? null : Number(input.value));
    const spec = {
      partitions: Number(partitions.value),
      retention: { max_age_ms: opt(age), max_bytes: opt(maxBytes), max_messages: opt(maxMessages) },
    };
    const ok = await confirmAction({
      title: `Update ${name}?`,
      message: `Partitions: ${spec.partitions}; retention: ${retentionText(spec.retention)}. Retention removes old messages for every reader.`,
      confirm: 'Update',
    });
    if (!ok) return;
    const done = await busy(submit, () => api.putTopic(name, spec), () => `Topic ${name} updated.`);
    if (done && ctx.alive) refresh();
  });
  return form;
}

function createSubscriptionForm(ctx, topic) {
  const name = h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,199}', autocomplete: 'off', spellcheck: 'false' });
  const mode = select([['queue', 'queue (competing consumers)'], ['stream', 'stream (ordered, per partition)']], 'queue');
  const start = select([['latest', 'latest'], ['earliest', 'earliest']], 'latest');
  const ackTimeout = h('input', { type: 'number', min: '10', max: '43200000', value: '30000' });
  const maxAttempts = h('input', { type: 'number', min: '1', value: '5', placeholder: 'forever' });
  const ordering = select([['none', 'none'], ['key', 'by key (queue)']], 'none');
  const dlq = select([['default', 'default (<topic>.<sub>.dlq)'], ['none', 'none']], 'default');
  const submit = h('button', { type: 'submit', class: 'primary', text: 'Create subscription' });
  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Create a subscription' },
    field('Name', name),
    field('Mode', mode),
    field('Start at', start),
    field('Ack timeout (ms)', ackTimeout),
    field('Max attempts', maxAttempts, 'Empty: retry forever'),
    field('Ordering', ordering),
    field('Dead-letter topic', dlq),
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const sub = name.value.trim();
    const spec = {
      mode: mode.value,
      start: start.value,
      ack_timeout_ms: Number(ackTimeout.value),
      ordering: ordering.value,
      retry: {
        max_attempts: maxAttempts.value === '' ? null : Number(maxAttempts.value),
        backoff: { initial_ms: 1000, max_ms: 60000, multiplier: 2.0, jitter: 0.1 },
      },
    };
    if (dlq.value === 'none') spec.dead_letter_topic = null;
    const created = await busy(submit, async () => {
      const exists = await api.subscription(topic, sub).then(
        () => true,
        (err) => (err.status === 404 ? false : Promise.reject(err)),
      );
      if (exists) throw new Error(`subscription ${sub} already exists`);
      return api.putSubscription(topic, sub, spec);
    });
    if (created && ctx.alive) {
      notify(`Subscription ${sub} created.`);
      location.hash = `#/topics/${enc(topic)}/subscriptions/${enc(sub)}`;
    }
  });
  return form;
}

export async function render(ctx, name) {
  const info = await api.topic(name);
  if (!ctx.alive) return;
  const del = h('button', { type: 'button', class: 'danger', text: 'Delete topic' });
  del.addEventListener('click', async () => {
    const ok = await confirmAction({
      title: `Delete topic ${name}?`,
      message: 'Every message and every subscription of this topic is removed. This cannot be undone.',
      confirm: 'Delete topic',
      danger: true,
      typeToConfirm: name,
    });
    if (!ok) return;
    const done = await busy(del, () => api.deleteTopic(name).then(() => true), () => `Topic ${name} deleted.`);
    if (done) location.hash = '#/';
  });
  const partitionsBox = h('div');
  const configBox = h('div');
  const subsBox = h('div');
  let refresh = () => {};
  ctx.main.append(
    pageHeader(name, [['/', 'Overview'], [null, name]], h('div', { class: 'actions' }, link(`/topics/${enc(name)}/messages`, 'Browse messages', { class: 'button' }), del)),
    section('Partitions', partitionsBox),
    section('Produce', produceForm(ctx, name, info.config.partitions, () => refresh())),
    section('Subscriptions', subsBox, h('h3', { text: 'Create a subscription' }), createSubscriptionForm(ctx, name)),
    section('Configuration', configBox, h('h3', { text: 'Update' }), configForm(ctx, name, info.config, () => refresh())),
  );

  refresh = ctx.every(5000, async () => {
    const [topic, subs] = await Promise.all([
      api.topic(name),
      api.subscriptions(name).catch((err) => (err.status === 403 ? null : Promise.reject(err))),
    ]);
    if (!ctx.alive) return;
    partitionsBox.replaceChildren(
      table(
        'Partitions',
        [
          { label: 'Partition', cell: (p) => String(p.partition), head: true, num: true },
          { label: 'Low offset', cell: (p) => num(p.low_offset), num: true },
          { label: 'High offset', cell: (p) => num(p.high_offset), num: true },
          { label: 'Messages', cell: (p) => num(p.messages), num: true },
          { label: 'Size', cell: (p) => bytes(p.bytes), num: true },
          {
            label: 'Browse',
            cell: (p) => link(`/topics/${enc(name)}/messages?partition=${p.partition}&offset=${p.low_offset}`, `Partition ${p.partition}`),
          },
        ],
        topic.partitions,
      ),
    );
    const c = topic.config;
    configBox.replaceChildren(
      facts([
        ['Partitions', num(c.partitions)],
        ['Retention', retentionText(c.retention || {})],
        ['Max message size', bytes(c.max_message_bytes)],
        ['Dedupe window', duration(c.dedupe_window_ms)],
      ]),
    );
    subsBox.replaceChildren(
      subs === null
        ? h('p', { class: 'muted', text: 'This token may not list the subscriptions.' })
        : table(
            'Subscriptions of this topic',
            [
              { label: 'Name', cell: (s) => link(`/topics/${enc(name)}/subscriptions/${enc(s.name)}`, s.name), head: true },
              { label: 'Mode', cell: (s) => s.config.mode },
              { label: 'Backlog', cell: (s) => num(s.stats.backlog), num: true },
              { label: 'In flight', cell: (s) => num(s.stats.in_flight), num: true },
              { label: 'Dead-lettered', cell: (s) => num(s.stats.dead_lettered), num: true },
            ],
            subs.items,
            'No subscriptions.',
          ),
    );
  });
}
