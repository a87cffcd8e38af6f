// Dead letters of a subscription: browse them with their reasons and
// weir-* headers, redrive selected ones, the oldest N or all (always
// after a confirmation).
//
// Two sources: the dead-letter records (`GET .../dead-letters`, with
// their state; servers without it answer 404 `not_found`) and the copies
// in the dead-letter topic, which carry the weir-* headers, filtered by
// `weir-subscription` and `weir-original-topic`.

import { api, describe } from './api.js';
import { h, link, field, select, facts, section, pageHeader, busy, notify, confirmAction, uid } from './dom.js';
import { num, time } from './format.js';
import { messageItem } from './message-view.js';

const enc = encodeURIComponent;
const PAGE = 200; // dead-letter topic messages read per partition and step

function entryItem(entry, pick) {
  const { message, info } = entry;
  const item = messageItem(message, {
    summaryExtra: [
      h('span', { class: 'badge warn', text: info.reason || 'no reason' }),
      h('span', { class: 'badge', text: `${info.attempts ?? '?'} attempt(s)` }),
      info.state ? h('span', { class: 'badge', text: info.state }) : null,
      h('span', { class: 'muted', text: `from p${info.partition ?? '?'} · ${info.offset ?? '?'}` }),
    ],
    extra: [
      ['Reason', h('span', { class: 'wrap', text: info.reason || '(none)' })],
      ['Attempts', String(info.attempts ?? '?')],
      ['Original position', `partition ${info.partition ?? '?'}, offset ${info.offset ?? '?'}`],
      ['Dead-lettered at', info.at ? time(info.at) : '?'],
      info.state ? ['State', info.state] : null,
      info.gone ? ['Original message', 'removed by retention'] : null,
    ].filter(Boolean),
  });
  if (!pick) return item;
  return h('div', { class: 'lease' }, pick, h('label', { for: pick.id, class: 'sr-only', text: `Select the dead letter from partition ${info.partition}, offset ${info.offset}` }), item);
}

/** Reads the dead-letter topic backwards, PAGE messages per partition per step. */
function copiesReader(topic, sub, dlq) {
  let windows = null; // per partition: { partition, low, end }
  return async function older() {
    if (!windows) {
      // The dead-letter topic is created with the first dead letter.
      const info = await api.topic(dlq).catch((err) => (err.status === 404 ? { partitions: [] } : Promise.reject(err)));
      windows = info.partitions.map((p) => ({ partition: p.partition, low: p.low_offset, end: p.high_offset }));
    }
    const found = [];
    for (const w of windows) {
      if (w.end <= w.low) continue;
      const start = Math.max(w.low, w.end - PAGE);
      const page = await api.read(dlq, w.partition, { offset: String(start), limit: String(w.end - start) });
      w.end = start;
      for (const m of page.messages) {
        const hd = m.headers || {};
        if (hd['weir-subscription'] !== sub || hd['weir-original-topic'] !== topic) continue;
        found.push({
          message: m,
          info: {
            reason: hd['weir-dead-letter-reason'],
            attempts: hd['weir-attempts'],
            partition: hd['weir-original-partition'],
            offset: hd['weir-original-offset'],
            at: Number(hd['weir-dead-lettered-at']) || m.timestamp,
          },
        });
      }
    }
    found.sort((a, b) => b.info.at - a.info.at);
    return { entries: found, more: windows.some((w) => w.end > w.low), order: 'newest first' };
  };
}

/** Reads the dead-letter records, page by page. */
function recordsReader(topic, sub, state) {
  let cursor = null;
  return async function older() {
    const query = { limit: '100' };
    if (state) query.state = state;
    if (cursor) query.cursor = cursor;
    const page = await api.deadLetters(topic, sub, query);
    cursor = page.next;
    return {
      entries: page.dead_letters.map((d) => ({
        record: d,
        message: d.message || { topic, partition: d.partition, offset: d.offset, timestamp: d.dead_lettered_at, key: null, headers: {} },
        info: { reason: d.reason, attempts: d.attempts, partition: d.partition, offset: d.offset, at: d.dead_lettered_at, state: d.state, gone: !d.message },
      })),
      more: Boolean(cursor),
      order: 'by original partition and offset',
    };
  };
}

/** Whether the server lists dead-letter records. */
async function hasRecords(topic, sub) {
  try {
    await api.deadLetters(topic, sub, { limit: '1' });
    return true;
  } catch (err) {
    if ((err.status === 404 && err.code === 'not_found') || err.status === 405) return false;
    throw err;
  }
}

/**
 * Redrives exactly one dead letter: the API selects by filter, so a dry
 * run first checks that the filter matches this one and no other.
 */
async function redriveOne(topic, sub, record) {
  const filter = { partition: record.partition, offset: record.offset, from_ms: record.dead_lettered_at, to_ms: record.dead_lettered_at + 1, reason: record.reason };
  if (record.message && record.message.key !== null && record.message.key !== undefined) filter.key = record.message.key;
  const dry = await api.redriveFiltered(topic, sub, { filter, dry_run: true });
  const same = dry.sample && dry.sample[0] && dry.sample[0].partition === record.partition && dry.sample[0].offset === record.offset;
  if (dry.matched !== 1 || !same) {
    throw new Error(`the dead letter from partition ${record.partition}, offset ${record.offset} cannot be told apart from ${dry.matched - 1} other(s); not redriven`);
  }
  return api.redriveFiltered(topic, sub, { filter, max: 1 });
}

export async function render(ctx, topic, name) {
  let sub = await api.subscription(topic, name);
  const records = await hasRecords(topic, name);
  if (!ctx.alive) return;
  const dlq = sub.config.dead_letter_topic;
  const waiting = h('strong', { 'data-stat': 'dead_lettered', text: num(sub.stats.dead_lettered) });
  const list = h('div', { class: 'msg-list' });
  const more = h('button', { type: 'button', text: 'Load more', disabled: true });
  const status = h('p', { class: 'muted', 'aria-live': 'polite', text: 'Loading…' });
  const redriveAll = h('button', { type: 'button', class: 'primary', text: 'Redrive all' });
  const count = h('input', { type: 'number', min: '1', value: '1' });
  const redriveSome = h('button', { type: 'button', text: 'Redrive oldest N' });
  const redriveSelected = h('button', { type: 'button', text: 'Redrive selected', disabled: true });

  const sources = [];
  if (records) sources.push(['records', 'Dead-letter records (with state)']);
  if (dlq) sources.push(['copies', `Copies in ${dlq} (weir-* headers)`]);
  const source = select(sources, sources.length ? sources[0][0] : '');
  const state = select([['waiting', 'waiting'], ['redriven', 'redriven'], ['purged', 'purged'], ['', 'any state']], 'waiting');
  const stateField = field('State', state);

  let picks = []; // { box, record }
  const refreshStats = async () => {
    sub = await api.subscription(topic, name);
    waiting.textContent = num(sub.stats.dead_lettered);
  };
  let reload = async () => {};
  const afterRedrive = async () => {
    if (!ctx.alive) return;
    await refreshStats();
    await reload();
  };
  const redrive = async (button, max) => {
    const what = max === null ? `all ${num(sub.stats.dead_lettered)} dead letter(s)` : `the oldest ${num(max)} dead letter(s)`;
    const ok = await confirmAction({
      title: `Redrive ${what}?`,
      message: `They become deliverable to ${name} again with their attempts reset. Their copies stay in the dead-letter topic.`,
      confirm: 'Redrive',
    });
    if (!ok) return;
    const r = await busy(button, () => api.redrive(topic, name, max), (res) => `Redriven: ${num(res.redriven)}.`);
    if (r) await afterRedrive();
  };
  redriveAll.addEventListener('click', () => redrive(redriveAll, null));
  redriveSome.addEventListener('click', () => redrive(redriveSome, Math.max(1, Number(count.value) || 1)));
  redriveSelected.addEventListener('click', async () => {
    const chosen = picks.filter((p) => p.box.checked).map((p) => p.record);
    if (!chosen.length) {
      notify('Select at least one waiting dead letter first.', 'error');
      return;
    }
    const ok = await confirmAction({
      title: `Redrive ${chosen.length} selected dead letter(s)?`,
      message: `Each becomes deliverable to ${name} again with its attempts reset.`,
      confirm: 'Redrive',
    });
    if (!ok) return;
    const r = await busy(redriveSelected, async () => {
      let n = 0;
      for (const record of chosen) n += (await redriveOne(topic, name, record)).redriven;
      return n;
    }, (n) => `Redriven: ${num(n)}.`);
    if (r !== undefined) await afterRedrive();
  });

  ctx.main.append(
    pageHeader(`Dead letters of ${topic} / ${name}`, [
      ['/', 'Overview'],
      [`/topics/${enc(topic)}`, topic],
      [`/topics/${enc(topic)}/subscriptions/${enc(name)}`, name],
      [null, 'Dead letters'],
    ]),
    section(
      'Redrive',
      facts([
        ['Waiting for redrive', waiting],
        ['Dead-letter topic', dlq ? link(`/topics/${enc(dlq)}/messages`, dlq) : 'none (dead letters are only marked, no copies)'],
      ]),
      h('div', { class: 'inline-form' }, redriveAll, field('N', count), redriveSome, records ? redriveSelected : null),
      h('p', {
        class: 'muted',
        text: records
          ? 'Redrive all / oldest N take dead letters by original partition and offset. To redrive chosen ones, select them among the waiting dead-letter records.'
          : 'Redrive takes the oldest dead letters first (by original partition and offset); this server cannot redrive chosen ones.',
      }),
    ),
    section('Browse', sources.length ? h('div', { class: 'inline-form' }, field('Source', source), stateField) : null, status, list, h('div', { class: 'pager' }, more)),
  );

  let older = null;
  const show = ({ entries, more: hasMore, order }, append) => {
    if (!ctx.alive) return;
    if (!append) {
      list.replaceChildren();
      picks = [];
    }
    for (const entry of entries) {
      let pick = null;
      if (entry.record && entry.record.state === 'waiting') {
        pick = h('input', { type: 'checkbox', class: 'pick', id: uid('dl') });
        picks.push({ box: pick, record: entry.record });
      }
      list.append(entryItem(entry, pick));
    }
    redriveSelected.disabled = !picks.length;
    more.disabled = !hasMore;
    const shown = list.childElementCount;
    status.textContent = shown
      ? `${num(shown)} dead letter(s) shown, ${order}${hasMore ? '; more remain' : ''}.`
      : hasMore
        ? 'None in this part; load more.'
        : 'No dead letters here.';
  };
  reload = async () => {
    stateField.hidden = source.value !== 'records';
    if (source.value === 'records') older = recordsReader(topic, name, state.value);
    else if (source.value === 'copies') older = copiesReader(topic, name, dlq);
    else {
      status.textContent = 'This subscription has no dead-letter topic, so there are no copies to browse.';
      return;
    }
    status.textContent = 'Loading…';
    show(await older(), false);
  };
  more.addEventListener('click', () => busy(more, async () => show(await older(), true)));
  const reloadOrSay = () => reload().catch((err) => notify(describe(err), 'error'));
  source.addEventListener('change', reloadOrSay);
  state.addEventListener('change', reloadOrSay);
  await reload();
  ctx.every(5000, refreshStats);
}
