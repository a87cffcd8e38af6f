// The web console (/ui) driven in a real headless Chromium against a real
// weir-server. Run by scripts/check-ui.sh:
//
//   node tests/ui/console.test.mjs BASE_URL open|auth
//
// Environment: WEIR_UI_TOOLS (directory whose node_modules holds
// playwright-core), CHROMIUM (default /usr/bin/chromium); in `auth` mode
// WEIR_UI_TOKEN (an admin token) and WEIR_UI_VIEWER_TOKEN (consume on
// topic ui-orders only). Every wait is bounded (STEP_MS); the script
// prints "ok - ..." per step and exits 1 on the first failure, leaving a
// screenshot and the page text in $WEIR_UI_TOOLS/report/.

import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [base, mode] = process.argv.slice(2);
if (!base || !['open', 'auth'].includes(mode)) {
  console.error('usage: console.test.mjs BASE_URL open|auth');
  process.exit(2);
}
const TOOLS = process.env.WEIR_UI_TOOLS || path.resolve('.tools/ui');
const require = createRequire(path.join(TOOLS, 'package.json'));
const { chromium } = require('playwright-core');

const STEP_MS = 15000;
const ADMIN = process.env.WEIR_UI_TOKEN || '';
const VIEWER = process.env.WEIR_UI_VIEWER_TOKEN || '';
const TOPIC = 'ui-orders';
const SUB = 'billing';
const XSS_VALUE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
const XSS_KEY = '<b onmouseover="window.__xss=3">k</b>';
const XSS_HEADER = '<svg onload="window.__xss=4"></svg>';
const XSS_TAIL = '<iframe srcdoc="<script>parent.__xss=5</script>"></iframe>';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, at most `ms`. */
async function until(what, check, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last = null;
  while (Date.now() < end) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (${last.message})` : ''}`);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** The API itself, from outside the browser (setup and cross-checks). */
async function apiCall(method, p, body) {
  const headers = { 'content-type': 'application/json' };
  if (ADMIN) headers.authorization = `Bearer ${ADMIN}`;
  const r = await fetch(base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(STEP_MS) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } }); // a laptop screen
const page = await context.newPage();
page.setDefaultTimeout(STEP_MS);
page.setDefaultNavigationTimeout(STEP_MS);

// Uncaught exceptions and CSP refusals fail the run. (Chromium also logs
// every 4xx answer as "Failed to load resource"; the console expects some:
// 401 before the token, 404 when checking that a name is free.)
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (msg) => {
  if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console error: ${msg.text()}`);
});

const main = page.locator('main');
const h1 = (name) => page.getByRole('heading', { level: 1, name, exact: true });
const form = (name) => page.getByRole('form', { name });
const statusText = () => page.locator('#status').textContent();
const stat = async (name) => Number((await page.locator(`[data-stat="${name}"]`).first().textContent()).replace(/,/g, ''));

async function noXss(where) {
  assert((await page.evaluate(() => window.__xss)) === undefined, `${where}: an injected script ran`);
  for (const sel of ['main img', 'main script', 'main svg', 'main iframe', 'main b']) {
    assert((await page.locator(sel).count()) === 0, `${where}: payload markup became an element (${sel})`);
  }
}

let step = 0;
async function run(name, fn) {
  step++;
  const started = Date.now();
  try {
    await fn();
    if (problems.length) throw new Error(problems.join('\n'));
    console.log(`ok   - [${mode}] ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    console.log(`FAIL - [${mode}] ${name}: ${err.message}`);
    const report = path.join(TOOLS, 'report');
    mkdirSync(report, { recursive: true });
    await page.screenshot({ path: path.join(report, `${mode}-step${step}.png`), fullPage: true }).catch(() => {});
    writeFileSync(path.join(report, `${mode}-step${step}.txt`), (await page.locator('body').innerText().catch(() => '')) || '');
    console.log(`       screenshot and page text in ${report}/${mode}-step${step}.*`);
    await browser.close();
    process.exit(1);
  }
}

async function signIn(token) {
  await h1('Sign in').waitFor();
  await page.getByLabel('Bearer token').fill(token);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

// ---------------------------------------------------------------- steps

await run('GET /ui is served under a strict CSP', async () => {
  const response = await page.goto(`${base}/ui`);
  assert(response.status() === 200, `status ${response.status()}`);
  const csp = response.headers()['content-security-policy'] || '';
  assert(csp.includes("default-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes('unsafe'), `CSP: ${csp}`);
  assert(response.headers()['x-content-type-options'] === 'nosniff', 'nosniff missing');
});

if (mode === 'auth') {
  await run('asks for a token, rejects a wrong one, accepts the right one', async () => {
    await h1('Sign in').waitFor();
    await signIn('wrong-token');
    await page.getByText('The server rejected that token').waitFor();
    await page.getByLabel('Bearer token').fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await h1('Overview').waitFor();
    await page.getByRole('button', { name: 'Sign out', exact: true }).waitFor();
  });
} else {
  await run('overview loads without a token', async () => {
    await h1('Overview').waitFor();
    await page.getByText('Ready', { exact: true }).waitFor();
  });
}

await run('keyboard: skip link focuses the content', async () => {
  await page.reload();
  await h1('Overview').waitFor();
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement.textContent);
  assert(focused === 'Skip to content', `first Tab stop is "${focused}"`);
  await page.keyboard.press('Enter');
  assert((await page.evaluate(() => document.activeElement.id)) === 'main', 'main not focused');
});

await run('create a topic', async () => {
  const f = form('Create a topic');
  await f.getByLabel('Name').fill(TOPIC);
  await f.getByLabel('Partitions').fill('2');
  await f.getByRole('button', { name: 'Create topic', exact: true }).click();
  await h1(TOPIC).waitFor();
  await until('two partitions listed', async () => (await page.getByRole('table', { name: 'Partitions' }).locator('tbody tr').count()) === 2);
  const topic = await apiCall('GET', `/v1/topics/${TOPIC}`);
  assert(topic.config.partitions === 2, 'topic not created with 2 partitions');
});

await run('produce from the topic page', async () => {
  const f = form('Produce a message');
  const payloads = ['{"order": 1, "big": 12345678901234567890}', '{"order":2}', '{"order":3}'];
  for (const [i, payload] of payloads.entries()) {
    await f.getByLabel('Key').fill('customer-7');
    await f.getByLabel('Partition').selectOption('0');
    await f.getByLabel('Payload', { exact: true }).fill(payload);
    await f.getByLabel('Headers').fill('trace-id: abc\ncolor: blue');
    await f.getByRole('button', { name: 'Produce', exact: true }).click();
    await f.getByText(`Produced to partition 0 at offset ${i}.`).waitFor();
  }
  await until('high offset 3 shown', async () => (await page.getByRole('table', { name: 'Partitions' }).locator('tbody tr').first().textContent()).includes('3'));
});

await run('browse the message: pretty JSON, headers, hex and base64', async () => {
  await page.goto(`${base}/ui#/topics/${TOPIC}/messages?partition=0&offset=0`);
  await h1(`Messages of ${TOPIC}`).waitFor();
  const items = main.locator('details.msg');
  await until('three messages listed', async () => (await items.count()) === 3);
  const first = items.first();
  await first.locator('summary').click();
  const pre = first.locator('pre.payload');
  // Pretty-printed from the stored text: the 20-digit number keeps its digits.
  await until('pretty JSON', async () => (await pre.textContent()) === '{\n  "order": 1,\n  "big": 12345678901234567890\n}');
  const headers = await first.getByRole('table', { name: 'Headers' }).textContent();
  assert(headers.includes('trace-id') && headers.includes('abc') && headers.includes('color'), `headers: ${headers}`);
  const choose = first.getByLabel('Show payload as');
  await choose.selectOption('hex');
  const hex = await pre.textContent();
  assert(hex.startsWith('00000000  7b 22 6f 72 64 65 72 22 3a 20 31 2c'), `hex: ${hex}`);
  await choose.selectOption('base64');
  const raw = '{"order": 1, "big": 12345678901234567890}';
  assert((await pre.textContent()) === Buffer.from(raw).toString('base64'), 'base64 differs from the stored bytes');
  // Paging: "Newer" after reading 1 from offset 0.
  await page.getByLabel('Limit').fill('1');
  await page.getByRole('button', { name: 'Read', exact: true }).click();
  await until('one message', async () => (await items.count()) === 1);
  await page.getByRole('button', { name: 'Newer →', exact: true }).click();
  await until('offset 1 shown', async () => (await items.first().locator('.pos').textContent()) === 'p0 · 1');
});

await run('browse by time', async () => {
  await page.getByLabel('Limit').fill('20');
  await page.getByRole('radio', { name: 'Time' }).check();
  await page.getByLabel('Time (local)').fill('2000-01-01T00:00:00');
  await page.getByRole('button', { name: 'Read', exact: true }).click();
  await until('three messages from 2000-01-01', async () => (await main.locator('details.msg').count()) === 3);
});

await run('create a subscription; backlog goes down after a consume', async () => {
  await page.goto(`${base}/ui#/topics/${TOPIC}`);
  const f = form('Create a subscription');
  await f.getByLabel('Name').fill(SUB);
  await f.getByLabel('Start at').selectOption('earliest');
  await f.getByLabel('Max attempts').fill('5');
  await f.getByRole('button', { name: 'Create subscription', exact: true }).click();
  await h1(`${TOPIC} / ${SUB}`).waitFor();
  await until('backlog 3', async () => (await stat('backlog')) === 3);
  const pull = form('Pull messages');
  await pull.getByLabel('Max messages').fill('1');
  await pull.getByRole('button', { name: 'Pull', exact: true }).click();
  await until('in flight 1', async () => (await stat('in_flight')) === 1);
  await page.locator('.lease input.pick').first().check();
  await page.getByRole('button', { name: 'Ack selected', exact: true }).click();
  await until('backlog 2 after the ack', async () => (await stat('backlog')) === 2);
  assert((await statusText()).includes('Acked 1 message'), await statusText());
});

await run('dead-letter two messages from the console', async () => {
  await form('Pull messages').getByLabel('Max messages').fill('10');
  await form('Pull messages').getByRole('button', { name: 'Pull', exact: true }).click();
  await until('two leases', async () => (await page.locator('.lease input.pick').count()) === 2);
  for (const box of await page.locator('.lease input.pick').all()) await box.check();
  await page.getByLabel('Nack / dead-letter reason').fill('bad-order');
  await page.getByRole('button', { name: 'Dead-letter selected', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Dead-letter', exact: true }).click();
  await until('dead-lettered 2', async () => (await stat('dead_lettered')) === 2);
  await until('backlog 0', async () => (await stat('backlog')) === 0);
});

await run('pause and resume, when the server supports it', async () => {
  const pause = page.getByRole('button', { name: 'Pause delivery', exact: true });
  if (!(await pause.count())) {
    console.log('       (this server has no pause: the control is hidden)');
    return;
  }
  await page.getByLabel('Pause reason').fill('maintenance <b>now</b>');
  await pause.click();
  await page.getByRole('dialog').getByRole('button', { name: 'Pause', exact: true }).click();
  await page.getByText('Paused: maintenance <b>now</b>.').waitFor();
  assert((await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}`)).paused === true, 'not paused');
  await page.getByRole('button', { name: 'Resume delivery', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Resume', exact: true }).click();
  await page.getByText('Delivering.').waitFor();
  assert((await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}`)).paused === false, 'not resumed');
});

await run('browse dead letters with reasons and weir-* headers; redrive one, then all', async () => {
  await page.getByRole('link', { name: 'Dead letters', exact: true }).click();
  await h1(`Dead letters of ${TOPIC} / ${SUB}`).waitFor();
  const entries = main.locator('details.msg');
  await until('two dead letters', async () => (await entries.count()) === 2);
  const summary = await entries.first().locator('summary').textContent();
  assert(summary.includes('bad-order') && summary.includes('1 attempt(s)'), `summary: ${summary}`);
  // The copies in the dead-letter topic carry the weir-* headers.
  const source = page.getByLabel('Source');
  const records = (await source.locator('option[value="records"]').count()) === 1;
  await source.selectOption('copies');
  await until('two copies', async () => (await entries.count()) === 2 && (await page.getByText('newest first').count()) === 1);
  await entries.first().locator('summary').click();
  const headers = await entries.first().getByRole('table', { name: 'Headers' }).textContent();
  for (const h of ['weir-dead-letter-reason', 'bad-order', 'weir-original-topic', 'weir-original-partition', 'weir-original-offset', 'weir-attempts', 'weir-subscription', 'trace-id']) {
    assert(headers.includes(h), `missing ${h}: ${headers}`);
  }
  // Escape cancels the confirmation: nothing is redriven.
  await page.getByRole('button', { name: 'Redrive all', exact: true }).click();
  await page.getByRole('dialog').waitFor();
  await page.keyboard.press('Escape');
  await until('dialog closed', async () => (await page.getByRole('dialog').count()) === 0);
  assert((await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}`)).stats.dead_lettered === 2, 'Escape redrove');
  if (records) {
    // Select the second record (original offset 2) and redrive only it.
    await source.selectOption('records');
    await until('two waiting records', async () => (await page.locator('input.pick').count()) === 2);
    await page.locator('input.pick').nth(1).check();
    await page.getByRole('button', { name: 'Redrive selected', exact: true }).click();
  } else {
    console.log('       (this server lists no dead-letter records: redriving the oldest one)');
    await page.getByLabel('N', { exact: true }).fill('1');
    await page.getByRole('button', { name: 'Redrive oldest N', exact: true }).click();
  }
  await page.getByRole('dialog').getByRole('button', { name: 'Redrive', exact: true }).click();
  await until('redriven notice', async () => (await statusText()).includes('Redriven: 1.'));
  await until('one waiting', async () => (await stat('dead_lettered')) === 1);
  if (records) {
    const left = await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}/dead-letters?state=waiting`);
    assert(left.dead_letters.length === 1 && left.dead_letters[0].offset === 1, `the wrong one was redriven: ${JSON.stringify(left)}`);
  }
  await page.getByRole('button', { name: 'Redrive all', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Redrive', exact: true }).click();
  await until('nothing waiting', async () => (await stat('dead_lettered')) === 0);
  const sub = await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}`);
  assert(sub.stats.dead_lettered === 0 && sub.stats.backlog === 2, `after redrive: ${JSON.stringify(sub.stats)}`);
});

await run('an XSS payload in a message is shown as text', async () => {
  await page.goto(`${base}/ui#/topics/${TOPIC}`);
  const f = form('Produce a message');
  await f.getByLabel('Key').fill(XSS_KEY);
  await f.getByLabel('Partition').selectOption('1');
  await f.getByLabel('Payload format').selectOption('text');
  await f.getByLabel('Payload', { exact: true }).fill(XSS_VALUE);
  await f.getByLabel('Headers').fill(`x-evil: ${XSS_HEADER}`);
  await f.getByRole('button', { name: 'Produce', exact: true }).click();
  await f.getByText('Produced to partition 1 at offset 0.').waitFor();
  await f.getByRole('link', { name: 'View it' }).click();
  await h1(`Messages of ${TOPIC}`).waitFor();
  const item = main.locator('details.msg').first();
  await item.waitFor();
  // A single message opens by itself.
  await until('payload shown', async () => (await item.locator('pre.payload').textContent()) === JSON.stringify(XSS_VALUE));
  const text = await main.textContent();
  assert(text.includes(XSS_HEADER) && text.includes(XSS_KEY), 'payload text not shown literally');
  await item.getByLabel('Show payload as').selectOption('text');
  await sleep(300);
  await noXss('message browser');
});

await run('live tail over the WebSocket shows new messages as text', async () => {
  await page.getByRole('button', { name: 'Start live tail', exact: true }).click();
  await page.getByText('Live: waiting for messages').waitFor();
  await apiCall('POST', `/v1/topics/${TOPIC}/messages`, { messages: [{ key: 'tail', value: { html: XSS_TAIL }, headers: { h: XSS_HEADER } }] });
  const tail = page.locator('.msg-list.tail');
  await until('tailed message', async () => (await page.locator('.msg-list.tail details.msg').count()) === 1);
  const item = page.locator('.msg-list.tail details.msg').first();
  await item.locator('summary').click();
  await until('tail payload', async () => (await item.locator('pre.payload').textContent()).includes(JSON.stringify(XSS_TAIL)));
  assert((await tail.textContent()).includes('tail'), 'key not shown');
  await page.getByText('Live: 1 received').waitFor();
  await page.getByRole('button', { name: 'Stop live tail', exact: true }).click();
  await page.getByText('Stopped after 1 message(s).').waitFor();
  await noXss('live tail');
});

await run('overview: rates, backlog and lag of the subscription', async () => {
  await page.goto(`${base}/ui#/`);
  await h1('Overview').waitFor();
  const topics = page.getByRole('table', { name: 'Topics' });
  await until('topic row', async () => (await topics.textContent()).includes(TOPIC));
  const subs = page.getByRole('table', { name: 'Subscriptions' });
  const { backlog } = (await apiCall('GET', `/v1/topics/${TOPIC}/subscriptions/${SUB}`)).stats;
  await until(`subscription row with backlog ${backlog}`, async () => {
    const row = subs.locator('tbody tr', { hasText: `${TOPIC} / ${SUB}` });
    const cells = await row.locator('td').allTextContents();
    return cells[1] === String(backlog);
  });
  // Rates come from two samples, 5 s apart.
  await apiCall('POST', `/v1/topics/${TOPIC}/messages`, { messages: [{ value: 1 }, { value: 2 }] });
  await until('a message rate', async () => {
    const row = topics.locator('tbody tr', { hasText: TOPIC }).first();
    const cells = await row.locator('td').allTextContents();
    return /\/s$/.test(cells[3]) && cells[3] !== '—';
  }, 15000);
});

await run('create and delete a subscription and a topic, with confirmation', async () => {
  const f = form('Create a topic');
  await f.getByLabel('Name').fill('ui-scratch');
  await f.getByRole('button', { name: 'Create topic', exact: true }).click();
  await h1('ui-scratch').waitFor();
  // Creating it again is refused, not silently turned into an update.
  await page.goto(`${base}/ui#/`);
  await form('Create a topic').getByLabel('Name').fill('ui-scratch');
  await form('Create a topic').getByRole('button', { name: 'Create topic', exact: true }).click();
  await page.locator('#alert').getByText('already exists').waitFor();
  await page.goto(`${base}/ui#/topics/ui-scratch`);
  await h1('ui-scratch').waitFor();
  const s = form('Create a subscription');
  await s.getByLabel('Name').fill('temp');
  await s.getByRole('button', { name: 'Create subscription', exact: true }).click();
  await h1('ui-scratch / temp').waitFor();
  await page.getByRole('button', { name: 'Delete subscription', exact: true }).click();
  const dialog = page.getByRole('dialog');
  const confirm = dialog.getByRole('button', { name: 'Delete subscription', exact: true });
  assert(await confirm.isDisabled(), 'delete enabled before typing the name');
  await dialog.getByLabel('Type “temp” to confirm').fill('temp');
  await confirm.click();
  await h1('ui-scratch').waitFor();
  await page.getByRole('button', { name: 'Delete topic', exact: true }).click();
  await page.getByRole('dialog').getByLabel('Type “ui-scratch” to confirm').fill('ui-scratch');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete topic', exact: true }).click();
  await h1('Overview').waitFor();
  const r = await fetch(`${base}/v1/topics/ui-scratch`, { headers: ADMIN ? { authorization: `Bearer ${ADMIN}` } : {} });
  assert(r.status === 404, `ui-scratch still exists (${r.status})`);
});

if (mode === 'auth') {
  await run('a restricted token sees only its topic', async () => {
    await apiCall('PUT', '/v1/topics/ui-hidden', { partitions: 1 });
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await signIn(VIEWER);
    await h1('Overview').waitFor();
    const topics = page.getByRole('table', { name: 'Topics' });
    await until('own topic listed', async () => (await topics.textContent()).includes(TOPIC));
    assert(!(await topics.textContent()).includes('ui-hidden'), 'viewer sees ui-hidden');
    // Not allowed to delete: the refusal is shown, nothing changes.
    await page.goto(`${base}/ui#/topics/${TOPIC}`);
    await h1(TOPIC).waitFor();
    await page.getByRole('button', { name: 'Delete topic', exact: true }).click();
    await page.getByRole('dialog').getByLabel(`Type “${TOPIC}” to confirm`).fill(TOPIC);
    await page.getByRole('dialog').getByRole('button', { name: 'Delete topic', exact: true }).click();
    await page.locator('#alert').getByText('403 forbidden').waitFor();
    await apiCall('GET', `/v1/topics/${TOPIC}`);
  });
}

await browser.close();
console.log(`[${mode}] ${step} steps passed`);
