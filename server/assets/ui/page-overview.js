// Overview: readiness and storage, topics with message and byte rates,
// every subscription's backlog, lag, in flight and dead letters; create
// a topic.

import { api } from './api.js';
import { h, link, field, table, section, pageHeader, busy, notify, fill } from './dom.js';
import { num, bytes, rate, duration } from './format.js';
import { fetchMetrics } from './metrics.js';

// The previous sample of each topic's counters, kept across visits so
// rates show at once when coming back within a minute.
let previous = { at: 0, topics: new Map() };

/** Messages and bytes appended so far, per topic: the produce counters
 * when /metrics is readable, else the partitions' high offsets and sizes
 * (bytes then shrink with retention; rates are clamped at zero). */
function sampleOf(topic, metrics) {
  const fromMetrics = (name) => (metrics ? metrics.get(name, { topic: topic.name }) : null);
  const messages = fromMetrics('weir_messages_produced_total') ?? topic.partitions.reduce((a, p) => a + p.high_offset, 0);
  const size = fromMetrics('weir_bytes_produced_total') ?? topic.partitions.reduce((a, p) => a + p.bytes, 0);
  return { messages, bytes: size };
}

function rates(topics, metrics) {
  const now = performance.now();
  const elapsed = (now - previous.at) / 1000;
  const fresh = previous.at && elapsed > 0.5 && elapsed < 60;
  const out = new Map();
  const samples = new Map();
  for (const t of topics) {
    const s = sampleOf(t, metrics);
    samples.set(t.name, s);
    const before = previous.topics.get(t.name);
    out.set(
      t.name,
      fresh && before
        ? {
            messages: Math.max(0, s.messages - before.messages) / elapsed,
            bytes: Math.max(0, s.bytes - before.bytes) / elapsed,
          }
        : null,
    );
  }
  if (!previous.at || elapsed > 0.5) previous = { at: now, topics: samples };
  return out;
}

/** Runs `fn` over `items`, `width` at a time. */
async function pool(items, width, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return results;
}

const SUB_TOPICS = 200; // topics whose subscriptions the overview lists

function card(label, value, hint) {
  return h('div', { class: 'card' }, h('span', { class: 'card-label', text: label }), h('strong', { text: value }), hint ? h('small', { text: hint }) : null);
}

function createTopicForm(ctx) {
  const name = h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,199}', autocomplete: 'off', spellcheck: 'false' });
  const partitions = h('input', { type: 'number', min: '1', max: '1024', value: '1', required: true });
  const maxAge = h('input', { type: 'number', min: '1', placeholder: 'unlimited' });
  const submit = h('button', { type: 'submit', class: 'primary', text: 'Create topic' });
  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Create a topic' },
    field('Name', name, 'Letters, digits, . _ -'),
    field('Partitions', partitions),
    field('Retention (hours)', maxAge, 'Empty: keep forever'),
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const topic = name.value.trim();
    const spec = { partitions: Number(partitions.value) };
    if (maxAge.value) spec.retention = { max_age_ms: Math.round(Number(maxAge.value) * 3600000) };
    const created = await busy(submit, async () => {
      // PUT also updates: refuse to "create" over an existing topic.
      const exists = await api.topic(topic).then(
        () => true,
        (err) => (err.status === 404 ? false : Promise.reject(err)),
      );
      if (exists) throw new Error(`topic ${topic} already exists`);
      return api.putTopic(topic, spec);
    });
    if (created && ctx.alive) {
      notify(`Topic ${topic} created with ${created.config.partitions} partition(s).`);
      location.hash = `#/topics/${encodeURIComponent(topic)}`;
    }
  });
  return form;
}

export async function render(ctx) {
  const cards = h('div', { class: 'cards', 'aria-live': 'off' });
  const topicsBox = h('div', { text: 'Loading…' });
  const subsBox = h('div', { text: 'Loading…' });
  ctx.main.append(
    pageHeader('Overview'),
    section('Server', cards),
    section('Topics', topicsBox, h('h3', { text: 'Create a topic' }), createTopicForm(ctx)),
    section('Subscriptions', subsBox),
  );

  ctx.every(5000, async () => {
    const [ready, list, metrics] = await Promise.all([api.readyz(), api.topics(), fetchMetrics()]);
    const topics = list.items;
    const perTopic = rates(topics, metrics);
    const withSubs = topics.slice(0, SUB_TOPICS);
    const subLists = await pool(withSubs, 4, (t) =>
      api.subscriptions(t.name).then(
        (r) => r.items,
        (err) => (err.status === 403 || err.status === 404 ? [] : Promise.reject(err)),
      ),
    );
    if (!ctx.alive) return;
    const subs = subLists.flat();
    const subCount = new Map(withSubs.map((t, i) => [t.name, subLists[i].length]));

    const stored = topics.reduce((a, t) => a + t.partitions.reduce((b, p) => b + p.messages, 0), 0);
    const storedBytes = topics.reduce((a, t) => a + t.partitions.reduce((b, p) => b + p.bytes, 0), 0);
    const known = [...perTopic.values()].filter(Boolean);
    const total = (k) => (known.length ? known.reduce((a, r) => a + r[k], 0) : null);
    const m = (name) => (metrics ? metrics.get(name) : null);
    const diskFree = m('weir_storage_disk_free_bytes');
    const diskTotal = m('weir_storage_disk_total_bytes');
    const stopped = m('weir_storage_write_stopped');
    fill(
      cards,
      card('Readiness', ready.ok ? 'Ready' : 'Not ready', ready.ok ? null : ready.status),
      card('Topics', num(topics.length) + (list.truncated ? '+' : '')),
      card('Messages stored', num(stored)),
      card('Bytes stored', bytes(storedBytes)),
      card('Produce rate', rate(total('messages')), rate(total('bytes'), 'B')),
      card(
        'Storage',
        metrics ? bytes(m('weir_storage_live_data_bytes')) : 'n/a',
        metrics
          ? `disk ${bytes(diskFree)} free of ${bytes(diskTotal)}${stopped ? ' · WRITES STOPPED' : ''}`
          : 'needs the metrics grant',
      ),
    );

    fill(
      topicsBox,
      table(
        'Topics',
        [
          { label: 'Topic', cell: (t) => link(`/topics/${encodeURIComponent(t.name)}`, t.name), head: true },
          { label: 'Partitions', cell: (t) => num(t.config.partitions), num: true },
          { label: 'Messages', cell: (t) => num(t.partitions.reduce((a, p) => a + p.messages, 0)), num: true },
          { label: 'Size', cell: (t) => bytes(t.partitions.reduce((a, p) => a + p.bytes, 0)), num: true },
          { label: 'Messages/s', cell: (t) => rate(perTopic.get(t.name)?.messages), num: true },
          { label: 'Bytes/s', cell: (t) => rate(perTopic.get(t.name)?.bytes, 'B'), num: true },
          { label: 'Subscriptions', cell: (t) => (subCount.has(t.name) ? num(subCount.get(t.name)) : '—'), num: true },
        ],
        topics,
        'No topics yet (or none this token may see).',
      ),
      list.truncated ? h('p', { class: 'muted', text: 'Showing the first 5,000 topics.' }) : null,
    );

    const lag = (s, name) => (metrics ? metrics.get(name, { topic: s.topic, subscription: s.name }) : null);
    fill(
      subsBox,
      table(
        'Subscriptions',
        [
          {
            label: 'Subscription',
            cell: (s) => link(`/topics/${encodeURIComponent(s.topic)}/subscriptions/${encodeURIComponent(s.name)}`, `${s.topic} / ${s.name}`),
            head: true,
          },
          { label: 'Mode', cell: (s) => s.config.mode + (s.paused ? ' (paused)' : '') },
          { label: 'Backlog', cell: (s) => num(s.stats.backlog), num: true },
          { label: 'Lag (msgs)', cell: (s) => num(lag(s, 'weir_subscription_lag_messages')), num: true },
          {
            label: 'Lag (s)',
            cell: (s) => {
              const v = lag(s, 'weir_subscription_lag_seconds');
              return v === null ? '—' : duration(v * 1000);
            },
            num: true,
          },
          { label: 'Oldest unacked', cell: (s) => duration(s.stats.oldest_unacked_age_ms), num: true },
          { label: 'In flight', cell: (s) => num(s.stats.in_flight), num: true },
          { label: 'Delayed', cell: (s) => num(s.stats.delayed), num: true },
          {
            label: 'Dead-lettered',
            cell: (s) =>
              s.stats.dead_lettered
                ? link(`/topics/${encodeURIComponent(s.topic)}/subscriptions/${encodeURIComponent(s.name)}/dead-letters`, num(s.stats.dead_lettered))
                : '0',
            num: true,
          },
        ],
        subs,
        'No subscriptions yet.',
      ),
      metrics ? null : h('p', { class: 'muted', text: 'Lag needs /metrics, which this token may not read.' }),
      topics.length > SUB_TOPICS ? h('p', { class: 'muted', text: `Subscriptions of the first ${SUB_TOPICS} topics.` }) : null,
    );
  });
}
