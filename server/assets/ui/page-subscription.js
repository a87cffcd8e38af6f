// A subscription: stats and cursors, its policy, the leases this console
// holds (pull, then ack / nack / dead-letter), seek, pause when the
// server supports it, delete.

import { api } from './api.js';
import { h, link, field, select, facts, table, section, pageHeader, busy, notify, confirmAction, uid } from './dom.js';
import { num, duration, time, fromLocalInput } from './format.js';
import { fetchMetrics } from './metrics.js';
import { messageItem } from './message-view.js';

const enc = encodeURIComponent;

function card(label, value) {
  return h('div', { class: 'card' }, h('span', { class: 'card-label', text: label }), h('strong', {}, value));
}

function policyFacts(sub) {
  const c = sub.config;
  const b = c.retry.backoff;
  return facts([
    ['Mode', c.mode],
    ['Ordering', c.ordering],
    ['Ack timeout (lease)', duration(c.ack_timeout_ms)],
    ['Max attempts', c.retry.max_attempts === null || c.retry.max_attempts === undefined ? 'forever' : num(c.retry.max_attempts)],
    ['Backoff', `${duration(b.initial_ms)} × ${b.multiplier} up to ${duration(b.max_ms)}, jitter ${b.jitter}`],
    [
      'Dead-letter topic',
      c.dead_letter_topic ? link(`/topics/${enc(c.dead_letter_topic)}`, c.dead_letter_topic) : 'none (dead letters are only marked)',
    ],
  ]);
}

/** The leases this console took: pull, then settle them. */
function consumePanel(ctx, topic, name, getSub, refresh) {
  const consumer = h('input', { type: 'text', value: 'console', pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,199}', spellcheck: 'false' });
  const max = h('input', { type: 'number', min: '1', max: '100', value: '10' });
  const pull = h('button', { type: 'submit', class: 'primary', text: 'Pull' });
  const reason = h('input', { type: 'text', maxlength: '1024', placeholder: 'why it failed', spellcheck: 'false' });
  const ack = h('button', { type: 'button', text: 'Ack selected' });
  const nack = h('button', { type: 'button', text: 'Nack selected (retry)' });
  const dead = h('button', { type: 'button', class: 'danger', text: 'Dead-letter selected' });
  const leasesBox = h('div', { class: 'msg-list' });
  let leases = []; // { message, consumer, deadline, checkbox }

  const renderLeases = () => {
    const now = Date.now();
    leases = leases.filter((l) => l.deadline > now - 60000); // forget long-expired ones
    leasesBox.replaceChildren(
      ...leases.map((l) => {
        const left = l.deadline - now;
        const tag = h('span', {
          class: left > 0 ? 'badge' : 'badge warn',
          text: `${l.consumer || 'no consumer'} · ${left > 0 ? `lease ${duration(left)} left` : 'lease expired'}`,
        });
        return h(
          'div',
          { class: 'lease' },
          l.checkbox,
          h('label', { for: l.checkbox.id, class: 'sr-only', text: `Select offset ${l.message.offset} of partition ${l.message.partition}` }),
          messageItem(l.message, {
            summaryExtra: [h('span', { class: 'badge', text: `attempt ${l.message.attempt}` }), tag],
            extra: [
              ['Consumer', l.consumer],
              ['Attempt', String(l.message.attempt)],
              ['Lease deadline', time(l.deadline)],
              ['Ack id', h('code', { class: 'wrap', text: l.message.ack_id })],
            ],
          }),
        );
      }),
    );
    const none = !leases.length;
    for (const b of [ack, nack, dead]) b.disabled = none;
    if (none) leasesBox.append(h('p', { class: 'empty', text: 'No leases held by this console.' }));
  };

  const selected = () => leases.filter((l) => l.checkbox.checked);
  const settle = async (button, verb, call) => {
    const chosen = selected();
    if (!chosen.length) {
      notify('Select at least one message first.', 'error');
      return;
    }
    const done = await busy(button, () => call(chosen.map((l) => l.message.ack_id)), (r) => {
      const unknown = r.unknown.length ? ` (${r.unknown.length} unknown: expired or already settled)` : '';
      return `${verb} ${r.acked} message(s)${unknown}.`;
    });
    if (done) {
      const gone = new Set(chosen.map((l) => l.message.ack_id));
      leases = leases.filter((l) => !gone.has(l.message.ack_id));
      renderLeases();
      refresh();
    }
  };

  ack.addEventListener('click', () => settle(ack, 'Acked', (ids) => api.ack(topic, name, ids)));
  nack.addEventListener('click', () =>
    settle(nack, 'Nacked', (ids) => api.nack(topic, name, { ack_ids: ids, reason: reason.value || null })),
  );
  dead.addEventListener('click', async () => {
    const chosen = selected();
    if (!chosen.length) {
      notify('Select at least one message first.', 'error');
      return;
    }
    const ok = await confirmAction({
      title: `Dead-letter ${chosen.length} message(s)?`,
      message: `They will not be retried${getSub().config.dead_letter_topic ? ` and are copied to ${getSub().config.dead_letter_topic}` : ''}, with reason “${reason.value || 'none'}”.`,
      confirm: 'Dead-letter',
      danger: true,
    });
    if (!ok) return;
    settle(dead, 'Dead-lettered', (ids) => api.nack(topic, name, { ack_ids: ids, reason: reason.value || null, retry: false }));
  });

  const form = h(
    'form',
    { class: 'inline-form', 'aria-label': 'Pull messages' },
    field('Consumer', consumer),
    field('Max messages', max),
    pull,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const pulledAt = Date.now();
    const r = await busy(pull, () =>
      api.pull(topic, name, { max_messages: Number(max.value) || 10, wait_ms: 0, consumer: consumer.value || null }),
    );
    if (!r || !ctx.alive) return;
    const timeout = getSub().config.ack_timeout_ms;
    for (const message of r.messages) {
      leases.push({ message, consumer: consumer.value, deadline: pulledAt + timeout, checkbox: h('input', { type: 'checkbox', id: uid('lease'), class: 'pick' }) });
    }
    notify(r.messages.length ? `Leased ${r.messages.length} message(s) for ${duration(timeout)}.` : 'Nothing to deliver right now.');
    renderLeases();
    refresh();
  });
  renderLeases();
  ctx.onCleanup(() => {
    leases = [];
  });
  return {
    tick: renderLeases,
    nodes: [
      form,
      h('h3', { text: 'Leases held by this console' }),
      leasesBox,
      h('div', { class: 'inline-form' }, field('Nack / dead-letter reason', reason), ack, nack, dead),
      h('p', { class: 'muted', text: 'Every consumer’s leases are listed under “Leases” above.' }),
    ],
  };
}

function seekForm(topic, name, getSub, refresh) {
  const group = uid('seek');
  const choices = [
    ['earliest', 'Earliest (replay everything stored)'],
    ['latest', 'Latest (skip the backlog)'],
    ['timestamp', 'Time'],
    ['offsets', 'Offsets'],
  ];
  const radios = choices.map(([v], i) => h('input', { type: 'radio', name: group, value: v, id: uid(), checked: i === 0 }));
  const stamp = h('input', { type: 'datetime-local', step: '1', 'aria-label': 'Seek time (local)' });
  const offsets = h('input', { type: 'text', placeholder: '0=10, 1=5', 'aria-label': 'Seek offsets (partition=offset, …)', spellcheck: 'false' });
  const submit = h('button', { type: 'submit', text: 'Seek' });
  const form = h(
    'form',
    { class: 'stack-form', 'aria-label': 'Seek' },
    h(
      'fieldset',
      {},
      h('legend', { text: 'Move the subscription to' }),
      choices.map(([v, label], i) =>
        h('div', { class: 'choice' }, radios[i], h('label', { for: radios[i].id, text: label }), v === 'timestamp' ? stamp : v === 'offsets' ? offsets : null),
      ),
    ),
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const how = radios.find((r) => r.checked).value;
    let to;
    let text;
    try {
      if (how === 'timestamp') {
        const ms = fromLocalInput(stamp.value);
        if (ms === null) throw new Error('choose a time');
        to = { timestamp: ms };
        text = `the first message at or after ${time(ms)}`;
      } else if (how === 'offsets') {
        const map = {};
        for (const part of offsets.value.split(',')) {
          if (!part.trim()) continue;
          const m = /^\s*(\d+)\s*=\s*(\d+)\s*$/.exec(part);
          if (!m) throw new Error(`“${part.trim()}” is not partition=offset`);
          map[m[1]] = Number(m[2]);
        }
        if (!Object.keys(map).length) throw new Error('give at least one partition=offset');
        to = { offsets: map };
        text = `offsets ${Object.entries(map).map(([p, o]) => `${p}=${o}`).join(', ')}`;
      } else {
        to = how;
        text = how;
      }
    } catch (err) {
      notify(err.message, 'error');
      return;
    }
    const ok = await confirmAction({
      title: `Seek ${getSub().name} to ${text}?`,
      message: 'Everything from there is delivered again (or skipped); leases held now become unknown.',
      confirm: 'Seek',
      danger: true,
    });
    if (!ok) return;
    const done = await busy(submit, () => api.seek(topic, name, to).then(() => true), () => `Seeked to ${text}.`);
    if (done) refresh();
  });
  return form;
}

function pauseControl(topic, name, sub, refresh) {
  const reason = h('input', { type: 'text', placeholder: 'reason (optional)', spellcheck: 'false' });
  const button = h('button', { type: 'button', text: sub.paused ? 'Resume delivery' : 'Pause delivery' });
  button.addEventListener('click', async () => {
    const pausing = !sub.paused;
    const ok = await confirmAction({
      title: `${pausing ? 'Pause' : 'Resume'} ${name}?`,
      message: pausing ? 'Consumers get no new deliveries until it is resumed.' : 'Deliveries start again.',
      confirm: pausing ? 'Pause' : 'Resume',
    });
    if (!ok) return;
    const done = await busy(button, () => (pausing ? api.pause(topic, name, reason.value) : api.resume(topic, name)), () => (pausing ? 'Paused.' : 'Resumed.'));
    if (done) refresh();
  });
  return h(
    'div',
    { class: 'inline-form' },
    h('p', { text: sub.paused ? `Paused${sub.paused_reason ? `: ${sub.paused_reason}` : ''}.` : 'Delivering.' }),
    sub.paused ? null : field('Pause reason', reason),
    button,
  );
}

export async function render(ctx, topic, name) {
  let sub = await api.subscription(topic, name);
  if (!ctx.alive) return;
  const getSub = () => sub;
  const del = h('button', { type: 'button', class: 'danger', text: 'Delete subscription' });
  del.addEventListener('click', async () => {
    const ok = await confirmAction({
      title: `Delete subscription ${name}?`,
      message: 'Its cursors, leases and retry state are removed; the topic and its dead-letter topic stay.',
      confirm: 'Delete subscription',
      danger: true,
      typeToConfirm: name,
    });
    if (!ok) return;
    const done = await busy(del, () => api.deleteSubscription(topic, name).then(() => true), () => `Subscription ${name} deleted.`);
    if (done) location.hash = `#/topics/${enc(topic)}`;
  });
  const cards = h('div', { class: 'cards' });
  const cursors = h('div');
  const allLeases = h('div');
  const policy = h('div');
  const pauseBox = h('div');
  let refresh = () => {};
  const panel = consumePanel(ctx, topic, name, getSub, () => refresh());
  const deadLink = link(`/topics/${enc(topic)}/subscriptions/${enc(name)}/dead-letters`, 'Dead letters', { class: 'button' });
  ctx.main.append(
    pageHeader(`${topic} / ${name}`, [['/', 'Overview'], [`/topics/${enc(topic)}`, topic], [null, name]], h('div', { class: 'actions' }, deadLink, del)),
    section('State', cards, pauseBox),
    section('Partitions', cursors),
    section('Leases', allLeases),
    section('Consume', ...panel.nodes),
    section('Policy', policy),
    section('Seek', seekForm(topic, name, getSub, () => refresh())),
  );

  refresh = ctx.every(3000, async () => {
    const [fresh, metrics, leaseList] = await Promise.all([
      api.subscription(topic, name),
      fetchMetrics(),
      api.leases(topic, name),
    ]);
    if (!ctx.alive) return;
    sub = fresh;
    const s = sub.stats;
    // Lag comes with the stats on current servers, else from /metrics.
    const lag = (metric) => (metrics ? metrics.get(metric, { topic, subscription: name }) : null);
    const lagMessages = 'lag_messages' in s ? s.lag_messages : lag('weir_subscription_lag_messages');
    const lagSeconds = 'lag_ms' in s ? s.lag_ms / 1000 : lag('weir_subscription_lag_seconds');
    cards.replaceChildren(
      card('Backlog', h('span', { 'data-stat': 'backlog', text: num(s.backlog) })),
      card('Lag (messages)', num(lagMessages)),
      card('Lag (time)', lagSeconds === null ? '—' : duration(lagSeconds * 1000)),
      card('Oldest unacked', duration(s.oldest_unacked_age_ms)),
      card('In flight', h('span', { 'data-stat': 'in_flight', text: num(s.in_flight) })),
      card('Delayed', num(s.delayed)),
      card('Dead-lettered', h('span', { 'data-stat': 'dead_lettered', text: num(s.dead_lettered) })),
      card('Expired by retention', num(s.expired_by_retention)),
    );
    // Pause exists only on servers whose subscriptions report `paused`.
    pauseBox.replaceChildren('paused' in sub ? pauseControl(topic, name, sub, () => refresh()) : '');
    cursors.replaceChildren(
      table(
        'Partition cursors',
        [
          { label: 'Partition', cell: (p) => String(p.partition), head: true, num: true },
          { label: 'Cursor', cell: (p) => num(p.cursor), num: true },
          { label: 'High offset', cell: (p) => num(p.high_offset), num: true },
          { label: 'Behind', cell: (p) => num(Math.max(0, p.high_offset - p.cursor)), num: true },
          { label: 'Owner (stream)', cell: (p) => p.consumer ?? '—' },
        ],
        s.partitions,
      ),
    );
    allLeases.replaceChildren(
      leaseList === null
        ? h('p', { class: 'muted', text: 'This server does not list leases; see “In flight”.' })
        : h(
            'div',
            {},
            table(
              'Leases out now',
              [
                { label: 'Partition', cell: (l) => String(l.partition), head: true, num: true },
                { label: 'Offset', cell: (l) => (l.count > 1 ? `${num(l.offset)} (+${num(l.count - 1)})` : num(l.offset)), num: true },
                { label: 'Attempt', cell: (l) => String(l.attempt), num: true },
                { label: 'Consumer', cell: (l) => l.consumer ?? '—' },
                { label: 'Expires', cell: (l) => `${time(l.deadline)} (${duration(Math.max(0, l.deadline - Date.now()))})` },
              ],
              leaseList.leases,
              'No leases out.',
            ),
            leaseList.truncated ? h('p', { class: 'muted', text: 'Showing the first 200.' }) : '',
          ),
    );
    policy.replaceChildren(policyFacts(sub));
    panel.tick();
  });
}
