// console.test.js - browser test of the web console: headless Debian chromium (playwright-core) against a real nats-server, sidecar and a worker (nats sub).
'use strict';

// Usage: node console.test.js   (environment, set by tests/browser/CMakeLists.txt:)
//   SIDECAR_BIN   the daemon          NATS_SERVER_BIN  nats-server     NATS_CLI  the nats CLI
//   BROWSER_ARTIFACTS     where screenshots and logs go (build/browser-artifacts)
//   CHROMIUM          the browser (default /usr/bin/chromium)
// Exits 0 when every step passed, 1 on the first failure, chromium or playwright-core missing
// included (scripts/install-deps.sh installs both): the suite never counts a browser test it
// could not run.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = process.env.BROWSER_ARTIFACTS || path.resolve('browser-artifacts');
const OP_TOKEN = 'op-token-for-the-browser-test';
const VIEW_TOKEN = 'viewer-token-for-the-browser-test';
const WAIT_MS = 20000;

let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error('FAIL: playwright-core is not installed (scripts/install-deps.sh runs npm ci in tests/browser)');
  process.exit(1);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error('FAIL: ' + CHROMIUM + ' is missing (apt-get install chromium; scripts/install-deps.sh)');
  process.exit(1);
}
for (const k of ['SIDECAR_BIN', 'NATS_SERVER_BIN', 'NATS_CLI']) {
  if (!process.env[k]) {
    console.error('FAIL: ' + k + ' is not set');
    process.exit(1);
  }
}

const children = [];
let step = '';

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function log(msg) {
  console.log('[' + new Date().toISOString().slice(11, 23) + '] ' + msg);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

function start(bin, args, logName) {
  const out = fs.openSync(path.join(ART, logName), 'w');
  // The sidecar reads DLQ_* variables as configuration: the children get none.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DLQ_')));
  const c = spawn(bin, args, { stdio: ['ignore', out, out], env });
  children.push(c);
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn) {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

let natsUrl, httpBase;

// Calls an admin verb over HTTP as the operator (the test's own view of the sidecar).
async function admin(verb, body, tok) {
  const r = await fetch(httpBase + '/api/v1/' + verb, {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + (tok || OP_TOKEN), 'Content-Type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

// Files a failure (a JSON envelope) through the nats CLI, as a service would.
function file(subject, env) {
  const out = execFileSync(process.env.NATS_CLI, ['--server', natsUrl, 'request', '--timeout', '5s', subject, JSON.stringify(env)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  check(out.includes('"ok":true'), 'ingest of ' + env.task_id + ': ' + out);
}

function worker() {
  return fs.readFileSync(path.join(ART, 'worker.log'), 'latin1');
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ART, name + '.png'), fullPage: true });
}

async function login(page, tok) {
  await page.goto(httpBase + '/');
  await page.waitForSelector('#login:not(.hidden)');
  await page.fill('#token', tok);
  await page.click('#login-form button[type=submit]');
}

// Opens a task's page and waits for its own render: from another task's page only the hash
// changes, and that page's buttons (#btn-edit ...) stay until the new one replaces them.
async function openTask(page, id) {
  await page.goto(httpBase + '/#/task/' + encodeURIComponent(id));
  await page.waitForFunction((want) => {
    const t = document.querySelector('#task-title');
    return t && t.textContent.includes(want);
  }, id);
}

// Confirms the console's modal and returns its text.
async function confirmModal(page) {
  await page.waitForSelector('#modal:not(.hidden)');
  const text = await page.textContent('#modal-text');
  await page.click('#modal-ok');
  return text;
}

async function rows(page) {
  return page.$$eval('#task-table tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-task')));
}

// Clicks the navigation link sel and waits until the view it leads to is drawn and settled.
async function nav(page, sel) {
  const g = await page.evaluate(() => Number(document.body.dataset.gen || 0));
  await page.click(sel);
  await page.waitForFunction((g0) => Number(document.body.dataset.gen || 0) > g0 && document.body.dataset.pending === '0', g);
}

// Sets the filter form to fields (every other field emptied), submits it, and waits for the list
// of exactly that filter (the table's data-filter: the filter it was listed with).
const FILTER_KEYS = ['status', 'category', 'subject', 'error', 'error_type', 'id_prefix', 'older_than_s', 'group'];
async function filterBy(page, fields) {
  await page.waitForSelector('#filters');
  await page.waitForFunction(() => document.body.dataset.pending === '0');
  const want = {};
  for (const k of FILTER_KEYS) {
    const v = fields[k] || '';
    if (k === 'status' || k === 'category') await page.selectOption('#f-' + k, v);
    else await page.fill('#f-' + k, v);
    if (v) want[k] = v;
  }
  await page.click('#btn-filter');
  await page.waitForSelector('#task-table[data-page="0"][data-filter=' + JSON.stringify(JSON.stringify(want)) + ']');
}

async function main() {
  fs.mkdirSync(ART, { recursive: true });
  const np = await freePort();
  const hp = await freePort();
  natsUrl = 'nats://127.0.0.1:' + np;
  httpBase = 'http://127.0.0.1:' + hp;
  start(process.env.NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(np)], 'nats-server.log');
  await sleep(300);
  start(process.env.SIDECAR_BIN, ['--nats.url', natsUrl, '--http.listen', '127.0.0.1:' + hp,
    '--http.auth.operator_token', OP_TOKEN, '--http.auth.viewer_token', VIEW_TOKEN,
    '--retry.timeout_ms', '1000'], 'sidecar.log');
  await until('the sidecar', async () => {
    try { return (await fetch(httpBase + '/readyz')).status === 200; } catch (e) { return false; }
  });
  // The worker: a real subscriber on every retry subject, its raw payloads in worker.log.
  start(process.env.NATS_CLI, ['--server', natsUrl, 'sub', '--raw', 'dlq.retry.>'], 'worker.log');
  // A worker that succeeds: every retry on dlq.retry.ok is answered {"ok":true} (DESIGN §6).
  start(process.env.NATS_CLI, ['--server', natsUrl, 'reply', 'dlq.retry.ok', '{"ok":true}'], 'worker-ok.log');
  await sleep(500);

  step = 'filing failures';
  // validation errors park (policy never): nothing is retried until the test asks.
  for (let i = 1; i <= 4; i++)
    file('dlq.failed.invoices', { task_id: 'inv-' + i, task: { invoice: 'inv-' + i + '-body' }, error: 'invalid amount -' + i, error_type: 'ValueError', error_category: 'validation' });
  for (let i = 1; i <= 3; i++)
    file('dlq.failed.orders', { task_id: 'ord-' + i, task: { order: 'ord-' + i + '-original' }, error: 'schema mismatch in field ' + i, error_type: 'SchemaError', error_category: 'validation' });

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const consoleErrors = [];
    // Expected refusals (401 before signing in, 404 for verbs this sidecar lacks, clear's 400
    // with its count) show as "Failed to load resource"; anything else is a bug in the page.
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(e.message));

    step = 'dashboard';
    await login(page, OP_TOKEN);
    await page.waitForSelector('#card-queue');
    check((await page.textContent('#card-queue')).includes('7 / '), 'queue size 7 on the dashboard');
    check((await page.textContent('#role')) === 'operator', 'role badge says operator');
    check(await page.$('#chart-ingested svg rect'), 'the last-hour chart is drawn');
    await until('7 ingested in the last hour', async () => {
      const s = await admin('stats');
      return s.body.last_hour.ingested.reduce((a, b) => a + b, 0) === 7;
    });
    check((await page.textContent('#status-table')).includes('pending'), 'status table');
    check((await page.textContent('#effect-empty')).includes('No retried task has ended yet'), 'did-retrying-help panel without data says so');
    check(!(await page.$('#effect-table')), 'no effectiveness table without data');
    await shot(page, 'dashboard');
    log('ok: dashboard');

    step = 'filter the list';
    await nav(page, '#nav-tasks');
    await page.waitForSelector('#task-table');
    check((await rows(page)).length === 7, 'all 7 tasks listed');
    await filterBy(page, { error: 'invalid amount' });
    let r = await rows(page);
    check(r.length === 4 && r.every((id) => id.startsWith('inv-')), 'error filter: 4 invoices, got ' + r);
    await filterBy(page, { id_prefix: 'ord-' });
    r = await rows(page);
    check(r.length === 3 && r.every((id) => id.startsWith('ord-')), 'id_prefix filter: 3 orders, got ' + r);
    await filterBy(page, { error_type: 'SchemaError', subject: 'dlq.failed.orders' });
    check((await rows(page)).length === 3, 'error_type + subject filter');
    check((await page.textContent('#task-table')).includes('schema mismatch in field 1'), 'error column');
    await shot(page, 'tasks');
    log('ok: filter the list');

    step = 'open a task';
    await page.click('a[href="#/task/ord-1"]');
    await page.waitForSelector('#task-title');
    check((await page.textContent('#task-title')).includes('ord-1'), 'task title');
    check((await page.textContent('#payload')).includes('ord-1-original'), 'payload shown as JSON');
    check((await page.textContent('#history')).includes('failed'), 'history timeline');
    check(!(await page.textContent('#view')).includes('[object'), 'no object rendered as text');
    check((await page.textContent('#view')).includes('SchemaError'), 'classification shows the error type');
    check(!(await page.$('#depends-on')) && !(await page.$('#waiting-for')), 'no dependency fields on a task without them');
    await shot(page, 'task');
    log('ok: open a task');

    step = 'retry one';
    // The retry's answer is held back 1.5 s, and the operator opens ord-2 meanwhile: the late
    // answer must not draw ord-1 over ord-2 (its buttons would then act on ord-1).
    await page.route('**/api/v1/retry', async (route) => {
      const resp = await route.fetch();
      await sleep(1500);
      await route.fulfill({ response: resp });
    });
    await page.click('#btn-retry');
    await confirmModal(page);
    await until('the worker receives ord-1', async () => worker().includes('ord-1-original'));
    await openTask(page, 'ord-2');
    await page.waitForFunction(() => document.body.dataset.pending === '0');
    await sleep(300);
    check((await page.textContent('#task-title')).includes('ord-2'), 'a late retry answer drew ord-1 over ord-2: ' + (await page.textContent('#task-title')));
    await page.unroute('**/api/v1/retry');
    log('ok: retry one (the worker got it; a late answer leaves the page opened since)');

    step = 'edit a payload and retry';
    await openTask(page, 'ord-2');
    await page.waitForSelector('#btn-edit');
    await page.click('#btn-edit');
    await page.fill('#edit-text', JSON.stringify({ order: 'ord-2-EDITED', fixed: true }));
    await page.click('#btn-edit-retry');
    await until('the worker receives the edited ord-2', async () => worker().includes('ord-2-EDITED'));
    check(!worker().includes('ord-2-original'), 'the worker never got the original of ord-2');
    await page.waitForSelector('#original-payload');
    check((await page.textContent('#original-payload')).includes('ord-2-original'), 'the original payload is kept');
    check((await page.textContent('#payload')).includes('ord-2-EDITED'), 'the payload shows the edit');
    check((await page.textContent('#history')).includes('edited'), 'history has the edit');
    const g = await admin('get', { task_id: 'ord-2', payload: true });
    check(Buffer.from(g.body.original_payload_b64, 'base64').toString('latin1').includes('ord-2-original'), 'get: original_payload_b64');
    check(g.body.history.some((h) => h.outcome === 'edited'), 'get: history entry edited');
    await shot(page, 'task-edited');
    log('ok: edit a payload and retry');

    step = 'clear with the count confirmation';
    await nav(page, '#nav-tasks');
    await page.waitForSelector('#task-table');
    await filterBy(page, { subject: 'dlq.failed.invoices' });
    await page.click('#btn-clear-all');
    await page.waitForSelector('#modal:not(.hidden)');
    await shot(page, 'clear-confirm');
    const text = await confirmModal(page);
    check(/removes 4 task/.test(text), 'the confirmation shows the count 4: ' + text);
    await until('the invoices gone', async () => (await admin('list', { subject: 'dlq.failed.invoices' })).body.total === 0);
    await page.waitForSelector('#empty');
    log('ok: clear with the count confirmation');

    step = 'start and cancel a redrive';
    for (let i = 1; i <= 20; i++)
      file('dlq.failed.redrive', { task_id: 'rd-' + i, task: { n: 'rd-' + i + '-body' }, error: 'bad row', error_category: 'validation' });
    await nav(page, '#nav-tasks');
    await filterBy(page, { subject: 'dlq.failed.redrive' });
    await page.fill('#redrive-rate', '1');
    await page.click('#btn-retry-all');
    check(/20 matching/.test(await confirmModal(page)), 'redrive confirmation names 20 tasks');
    await page.waitForSelector('#redrive-bar:not(.hidden) #btn-cancel-redrive');
    await page.waitForSelector('#redrive-progress');
    await shot(page, 'redrive');
    await page.click('#btn-cancel-redrive');
    await page.waitForSelector('#redrive-done');
    check((await page.textContent('#redrive-done')).includes('cancelled'), 'the bar says cancelled');
    const st = await admin('stats');
    const rd = st.body.retry_processor.redrive;
    check(!rd.active && rd.cancelled && rd.scheduled < 20, 'redrive cancelled before the end: ' + JSON.stringify(rd));
    log('ok: start and cancel a redrive (' + rd.scheduled + ' of 20 sent)');

    step = 'stable pagination';
    for (let i = 1; i <= 12; i++)
      file('dlq.failed.paging', { task_id: 'pg-' + i, task: { n: i }, error: 'bad page', error_category: 'validation' });
    await nav(page, '#nav-tasks');
    await filterBy(page, {});
    const total = Number((await page.textContent('#total')).split(' ')[0]);
    check(total > 25, 'more than one page: ' + total);
    const page1 = await rows(page);
    check(page1.length === 25, 'page 1 holds 25: ' + page1.length);
    // a failure that arrives meanwhile must not shift the pages
    file('dlq.failed.paging', { task_id: 'pg-late', task: { n: 0 }, error: 'bad page', error_category: 'validation' });
    await page.click('#btn-next');
    await until('page 2', async () => (await page.textContent('#page')) === 'page 2');
    const page2 = await rows(page);
    check(page2.every((id) => !page1.includes(id)), 'page 2 repeats none of page 1');
    check(page1.length + page2.length === total + 1, 'the two pages hold every task (and the late one): ' + (page1.length + page2.length) + ' of ' + (total + 1));
    await page.click('#btn-prev');
    await until('page 1 again', async () => (await page.textContent('#page')) === 'page 1');
    check(JSON.stringify(await rows(page)) === JSON.stringify(page1), 'page 1 again is the same');
    log('ok: stable pagination (' + page1.length + ' + ' + page2.length + ')');

    step = 'groups';
    await nav(page, '#nav-groups');
    await page.waitForSelector('#group-table, #groups-na');
    await shot(page, 'groups');
    log('ok: groups view');

    step = 'did retrying help';
    // A transient failure retried at once (policy immediate) that the worker on dlq.retry.ok answers ok:
    // failed once, then succeeded at attempt 1.
    file('dlq.failed.ok', { task_id: 'ok-1', task: { n: 'ok-1-body' }, error: 'flaky backend', error_category: 'transient', retry_policy: 'immediate' });
    await until('ok-1 counted as a retry that succeeded', async () => {
      const e = (await admin('stats')).body.retry_effectiveness;
      return e.by_category.transient.succeeded === 1;
    });
    await nav(page, '#nav-dashboard');
    const cat = '#effect-table tr[data-scope="category"][data-name="transient"]';
    await page.waitForSelector(cat);
    check((await page.textContent(cat + ' td.rate')) === '100%', 'transient: success rate 100%');
    check((await page.textContent(cat + ' td[data-bucket="1"]')) === '1', 'transient: 1 task succeeded at attempt 1');
    check((await page.textContent(cat + ' td[data-bucket="2"]')) === '0', 'transient: none at attempt 2');
    check(/\d/.test(await page.textContent(cat + ' td.p50')) && /\d/.test(await page.textContent(cat + ' td.p90')), 'transient: recovery p50/p90 shown');
    const sub = '#effect-table tr[data-scope="subject"][data-name="dlq.failed.ok"]';
    check((await page.textContent(sub + ' td.rate')) === '100%', 'subject dlq.failed.ok: success rate 100%');
    check(!(await page.$('#effect-empty')), 'the no-data text is gone');
    await shot(page, 'effectiveness');
    log('ok: did retrying help');

    step = 'dependencies in the task detail (injected get answer)';
    // get's depends_on / waiting_for come from another branch: the answer for ord-3 is extended here.
    await page.route('**/api/v1/get', async (route) => {
      const resp = await route.fetch();
      const j = await resp.json();
      if (JSON.parse(route.request().postData() || '{}').task_id === 'ord-3') {
        j.depends_on = ['ord-1', 'ord-2'];
        j.waiting_for = ['ord-2'];
      }
      const headers = Object.assign({}, resp.headers());
      delete headers['content-length'];
      await route.fulfill({ status: resp.status(), headers, body: JSON.stringify(j) });
    });
    await page.goto(httpBase + '/#/task/ord-3');
    await page.waitForSelector('#depends-on');
    check((await page.textContent('#depends-on')) === 'ord-1, ord-2', 'depends on: ' + (await page.textContent('#depends-on')));
    check((await page.textContent('#waiting-for')) === 'ord-2', 'waiting for: ord-2');
    check((await page.getAttribute('#waiting-for a', 'href')) === '#/task/ord-2', 'waiting for links to the task');
    await page.unroute('**/api/v1/get');
    log('ok: dependencies in the task detail');

    step = 'pause and resume';
    await nav(page, '#nav-dashboard');
    await page.waitForSelector('#btn-pause');
    await page.click('#btn-pause');
    await page.waitForSelector('#btn-resume');
    check((await admin('health')).body.paused === true, 'paused');
    await page.click('#btn-resume');
    await page.waitForSelector('#btn-pause');
    check((await admin('health')).body.paused === false, 'resumed');
    log('ok: pause and resume');

    check(consoleErrors.length === 0, 'no errors in the browser console: ' + consoleErrors.join(' | '));

    step = 'a viewer is refused every action';
    const vctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const vp = await vctx.newPage();
    await login(vp, VIEW_TOKEN);
    await vp.waitForSelector('#card-queue');
    check((await vp.textContent('#role')) === 'viewer', 'role badge says viewer');
    check(await vp.$eval('#btn-pause', (b) => b.disabled), 'pause disabled for a viewer');
    await nav(vp, '#nav-tasks');
    await vp.waitForSelector('#task-table');
    for (const id of ['#btn-retry-all', '#btn-archive-all', '#btn-clear-all'])
      check(await vp.$eval(id, (b) => b.disabled), id + ' disabled for a viewer');
    await vp.goto(httpBase + '/#/task/ord-3');
    await vp.waitForSelector('#btn-edit');
    for (const id of ['#btn-retry', '#btn-archive', '#btn-edit'])
      check(await vp.$eval(id, (b) => b.disabled), id + ' disabled for a viewer');
    await shot(vp, 'viewer-task');
    // Forced calls from the page with the viewer's token: every mutating verb is refused.
    const forced = await vp.evaluate(async () => {
      const calls = [['retry', { task_id: 'ord-3' }], ['archive', { task_id: 'ord-3' }], ['clear', { all: true, confirm: true }],
        ['pause', {}], ['resume', {}], ['edit', { task_id: 'ord-3', payload_json: { x: 1 } }]];
      const out = {};
      for (const [v, b] of calls) {
        const r = await fetch('/api/v1/' + v, { method: 'POST', headers: { Authorization: 'Bearer ' + sessionStorage.getItem('dlqToken'), 'Content-Type': 'application/json' }, body: JSON.stringify(b) });
        out[v] = r.status;
      }
      return out;
    });
    for (const [v, s] of Object.entries(forced)) check(s === 403, 'viewer ' + v + ' -> ' + s + ' (want 403)');
    check((await admin('get', { task_id: 'ord-3' })).body.status === 'pending', 'ord-3 untouched');
    log('ok: a viewer is refused every action ' + JSON.stringify(forced));
  } finally {
    await browser.close();
  }
}

main().then(() => {
  log('PASS: browser_console');
  for (const c of children) c.kill('SIGTERM');
  process.exit(0);
}, (e) => {
  console.error('FAIL at "' + step + '": ' + (e && e.stack ? e.stack : e));
  for (const c of children) c.kill('SIGTERM');
  process.exit(1);
});
