// app.js - the web console: dashboard, tasks, groups and task detail over /api/v1/ with fetch (vanilla JS, no build step).
'use strict';

(function () {
  const STATUSES = ['pending', 'parked', 'retrying', 'exhausted', 'completed', 'archived'];
  const CATEGORIES = ['transient', 'network', 'resource', 'permission', 'validation', 'permanent'];
  const FILTER_FIELDS = [
    // [request key, label, kind]
    ['status', 'Status', 'status'],
    ['category', 'Category', 'category'],
    ['subject', 'Subject', 'text'],
    ['error', 'Error text', 'text'],
    ['error_type', 'Error type', 'text'],
    ['id_prefix', 'Task id prefix', 'text'],
    ['older_than_s', 'Older than (s)', 'number'],
    ['group', 'Group', 'text'],
  ];
  const PAGE = 25;

  const state = {
    role: null,          // "operator" | "viewer" (X-DLQ-Role of the last API answer)
    filter: {},          // the task list's filter
    cursors: [null],     // cursor of each page seen (stable pagination: list's next_cursor)
    page: 0,
    timer: null,         // the view's refresh timer
    redriveTimer: null,
    gen: 0,              // grows at every route(): a view whose answer comes after a newer route drops it
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers ------------------------------------------------------------------------------

  // el('tag', {attr: v, class: 'x', text: 't', on: {click: fn}}, children...)
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  // A button for an action that changes something: disabled for a viewer.
  function opButton(text, onclick, attrs) {
    const b = el('button', Object.assign({ type: 'button', class: 'op', on: { click: onclick } }, attrs || {}), text);
    b.disabled = state.role !== 'operator';
    if (b.disabled) b.title = 'the viewer role may only read';
    return b;
  }

  // Shows the view; body's data-gen says which route() drew it (the browser test waits on it).
  function setView(...kids) {
    const v = $('view');
    v.replaceChildren(...kids);
    document.body.dataset.gen = String(state.gen);
  }

  // Counts the API calls under way in body's data-pending (0: the page is settled).
  let pendingCalls = 0;
  function pending(d) {
    pendingCalls += d;
    document.body.dataset.pending = String(pendingCalls);
  }

  function flash(text, isError) {
    const f = $('flash');
    f.textContent = text;
    f.className = isError ? 'error' : '';
    clearTimeout(flash.t);
    flash.t = setTimeout(() => f.classList.add('hidden'), 8000);
  }

  function ask(text, okText) {
    return new Promise((resolve) => {
      $('modal-text').textContent = text;
      $('modal-ok').textContent = okText || 'OK';
      $('modal').classList.remove('hidden');
      const done = (v) => {
        $('modal').classList.add('hidden');
        $('modal-ok').onclick = null;
        $('modal-cancel').onclick = null;
        resolve(v);
      };
      $('modal-ok').onclick = () => done(true);
      $('modal-cancel').onclick = () => done(false);
    });
  }

  // "3m ago", "in 12s"
  function rel(iso) {
    if (!iso) return '—';
    const t = Date.parse(iso);
    if (isNaN(t)) return iso;
    let s = Math.round((t - Date.now()) / 1000);
    const future = s > 0;
    s = Math.abs(s);
    let txt;
    if (s < 60) txt = s + 's';
    else if (s < 3600) txt = Math.floor(s / 60) + 'm';
    else if (s < 86400) txt = Math.floor(s / 3600) + 'h';
    else txt = Math.floor(s / 86400) + 'd';
    return future ? 'in ' + txt : txt + ' ago';
  }

  function timeCell(iso) {
    return el('td', { title: iso || '' }, rel(iso));
  }

  // ---- the API ----------------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem('dlqToken');
  }

  function setRole(role) {
    if (!role || role === state.role) return;
    state.role = role;
    const r = $('role');
    r.textContent = role;
    r.className = 'badge ' + role;
    document.querySelectorAll('button.op').forEach((b) => { b.disabled = role !== 'operator'; });
  }

  // Calls verb with body (an object) by POST; resolves to {status, body} (body parsed JSON or null).
  // A 401 shows the sign-in form.
  async function api(verb, body) {
    const headers = { 'Content-Type': 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    let res;
    pending(1);
    try {
      res = await fetch('/api/v1/' + verb, { method: 'POST', headers, body: JSON.stringify(body || {}), cache: 'no-store' });
    } catch (e) {
      pending(-1);
      return { status: 0, body: { error: { code: 0, message: 'the sidecar does not answer: ' + e.message } } };
    }
    setRole(res.headers.get('X-DLQ-Role'));
    let json = null;
    try { json = await res.json(); } catch (e) { json = null; }
    pending(-1);
    if (res.status === 401) showLogin(json && json.error ? json.error.message : '');
    return { status: res.status, body: json };
  }

  function errText(r) {
    return r.body && r.body.error ? r.body.error.message + ' (' + r.status + ')' : 'HTTP ' + r.status;
  }

  function showLogin(msg) {
    stopTimers();
    $('login').classList.remove('hidden');
    $('view').replaceChildren();
    $('login-error').textContent = token() ? 'The token was refused: ' + msg : '';
  }

  // ---- router -----------------------------------------------------------------------------------

  function stopTimers() {
    clearInterval(state.timer);
    state.timer = null;
  }

  function route() {
    state.gen++;
    stopTimers();
    $('login').classList.add('hidden');
    const h = location.hash.replace(/^#/, '') || '/';
    document.querySelectorAll('header nav a').forEach((a) => a.classList.remove('active'));
    if (h.startsWith('/task/')) {
      $('nav-tasks').classList.add('active');
      return viewTask(decodeURIComponent(h.slice(6)));
    }
    if (h.startsWith('/tasks')) {
      $('nav-tasks').classList.add('active');
      const q = new URLSearchParams(h.slice(7));
      const f = {};
      for (const [k] of FILTER_FIELDS) if (q.get(k)) f[k] = q.get(k);
      if (q.toString() && JSON.stringify(f) !== JSON.stringify(state.filter)) {
        state.filter = f;
        state.cursors = [null];
        state.page = 0;
      }
      return viewTasks();
    }
    if (h.startsWith('/groups')) {
      $('nav-groups').classList.add('active');
      return viewGroups();
    }
    $('nav-dashboard').classList.add('active');
    return viewDashboard();
  }

  // ---- dashboard --------------------------------------------------------------------------------

  function card(label, value, cls, id) {
    return el('div', { class: 'card', id },
      el('div', { class: 'label' }, label), el('div', { class: 'value ' + (cls || '') }, value));
  }

  // A bar chart of 60 per-minute counts (oldest first) as inline SVG.
  function chart(name, counts) {
    const NS = 'http://www.w3.org/2000/svg';
    const W = 360, H = 80, bw = W / 60;
    const max = Math.max(1, ...counts);
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('preserveAspectRatio', 'none'); /* the card's width, however wide: every minute shows */
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', name + ' per minute, last hour');
    counts.forEach((n, i) => {
      const h = Math.round((n / max) * (H - 4));
      const r = document.createElementNS(NS, 'rect');
      r.setAttribute('x', (i * bw).toFixed(1));
      r.setAttribute('y', H - h);
      r.setAttribute('width', Math.max(1, bw - 1).toFixed(1));
      r.setAttribute('height', h);
      r.setAttribute('class', 'bar-' + name);
      const t = document.createElementNS(NS, 'title');
      t.textContent = (60 - i - 1) + ' min ago: ' + n;
      r.append(t);
      svg.append(r);
    });
    const total = counts.reduce((a, b) => a + b, 0);
    return el('div', { class: 'chart', id: 'chart-' + name },
      el('div', { class: 'title' }, name + ' per minute (last hour: ' + total + ', peak ' + Math.max(0, ...counts) + '/min)'), svg);
  }

  async function viewDashboard() {
    const gen = state.gen;
    const r = await api('stats');
    if (r.status === 401 || gen !== state.gen) return;
    if (r.status !== 200) {
      setView(el('p', { class: 'error' }, 'stats: ' + errText(r)));
      return;
    }
    const s = r.body;
    const paused = s.retry_processor && !s.retry_processor.enabled;
    const p = s.persistence || {};
    const alerts = s.alerts_firing || [];
    const noWorkers = s.retry_subjects_without_workers;
    const kids = [];
    kids.push(el('h2', {}, 'Dashboard'));
    kids.push(el('div', { class: 'cards' },
      card('Queue size', s.queue_size + ' / ' + s.max_size, '', 'card-queue'),
      card('Utilization', s.utilization_percent + '%', Number(s.utilization_percent) >= 80 ? 'bad' : '', 'card-util'),
      card('Retries', paused ? 'paused' : 'running', paused ? 'bad' : 'ok', 'card-paused'),
      card('Persistence', (p.backend || '?') + ': ' + (p.state || '?'), p.state === 'ok' ? 'ok' : 'bad', 'card-persist'),
      card('NATS', s.nats && s.nats.connected ? 'connected' : 'disconnected', s.nats && s.nats.connected ? 'ok' : 'bad'),
      card('Alerts firing', alerts.length ? alerts.join(', ') : 'none', alerts.length ? 'bad' : 'ok', 'card-alerts'),
      noWorkers !== undefined
        ? card('Retry subjects without workers', noWorkers.length ? noWorkers.join(', ') : 'none', noWorkers.length ? 'bad' : 'ok', 'card-noworkers')
        : null));
    kids.push(el('div', { class: 'actions' },
      paused ? opButton('Resume retries', () => pauseResume('resume'), { id: 'btn-resume' })
        : opButton('Pause retries', () => pauseResume('pause'), { id: 'btn-pause' })));

    // status x category
    const sbc = s.status_by_category || {};
    const tbl = el('table', { id: 'status-table' },
      el('thead', {}, el('tr', {}, el('th', {}, 'status'), CATEGORIES.map((c) => el('th', { class: 'num' }, c)), el('th', { class: 'num' }, 'total'))));
    const tb = el('tbody');
    for (const st of Object.keys(sbc)) {
      const row = sbc[st];
      const total = CATEGORIES.reduce((a, c) => a + (row[c] || 0), 0);
      tb.append(el('tr', {}, el('td', {}, el('a', { href: '#/tasks?status=' + st }, st)),
        CATEGORIES.map((c) => el('td', { class: 'num' },
          row[c] ? el('a', { href: '#/tasks?status=' + st + '&category=' + c }, String(row[c])) : '0')),
        el('td', { class: 'num' }, String(total))));
    }
    tbl.append(tb);
    kids.push(el('h3', {}, 'Tasks by status and category'), tbl);
    if (s.status_breakdown) kids.push(el('p', { class: 'muted' }, 'of which parked: ' + s.status_breakdown.parked));

    const lh = s.last_hour;
    if (lh) {
      kids.push(el('h3', {}, 'Last hour'));
      kids.push(el('div', { class: 'charts' }, ['ingested', 'retried', 'succeeded', 'exhausted'].map((k) => chart(k, lh[k] || []))));
    }
    kids.push(effectPanel(s.retry_effectiveness));
    const audit = el('div', { id: 'audit-panel' });
    kids.push(audit);
    setView(...kids);
    showRedrive(s.retry_processor && s.retry_processor.redrive);
    loadAudit(audit);
    state.timer = setInterval(() => { if (!$('modal').classList.contains('hidden')) return; refreshDashboard(); }, 5000);
  }

  // "3.2 s", "450 ms", "12 min": a duration in ms for people; '—' for null.
  function dur(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 1000) return ms + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    if (ms < 3600000) return (ms / 60000).toFixed(1) + ' min';
    return (ms / 3600000).toFixed(1) + ' h';
  }

  // "Did retrying help": stats' retry_effectiveness (dlq/effect.c) as one table, a row per
  // category and per failure subject that has a retried task that ended (succeeded or exhausted).
  function effectPanel(e) {
    const box = el('div', { id: 'effect-panel' }, el('h3', {}, 'Did retrying help'));
    if (!e) {
      box.append(el('p', { class: 'muted', id: 'effect-empty' }, 'This sidecar does not report retry effectiveness.'));
      return box;
    }
    const rows = [];
    for (const [scope, m] of [['category', e.by_category], ['subject', e.by_subject]])
      for (const [name, c] of Object.entries(m || {})) if (c.succeeded + c.exhausted > 0) rows.push([scope, name, c]);
    if (!rows.length) {
      box.append(el('p', { class: 'muted', id: 'effect-empty' }, 'No retried task has ended yet (succeeded or exhausted): nothing to measure.'));
      return box;
    }
    const buckets = Object.keys(rows[0][2].attempts_to_success || {});
    box.append(el('table', { id: 'effect-table' },
      el('thead', {}, el('tr', {}, el('th', {}, ''), el('th', {}, 'name'),
        ['succeeded', 'exhausted', 'success rate'].map((h) => el('th', { class: 'num' }, h)),
        buckets.map((b) => el('th', { class: 'num', title: 'tasks that succeeded at attempt ' + b }, 'attempt ' + b)),
        el('th', { class: 'num' }, 'recovery p50'), el('th', { class: 'num' }, 'recovery p90'))),
      el('tbody', {}, rows.map(([scope, name, c]) => el('tr', { 'data-scope': scope, 'data-name': name },
        el('td', { class: 'muted' }, scope), el('td', {}, name),
        el('td', { class: 'num' }, String(c.succeeded)), el('td', { class: 'num' }, String(c.exhausted)),
        el('td', { class: 'num rate' }, c.success_rate === null ? '—' : Math.round(Number(c.success_rate) * 1000) / 10 + '%'),
        buckets.map((b) => el('td', { class: 'num', 'data-bucket': b }, String(c.attempts_to_success[b]))),
        el('td', { class: 'num p50' }, dur(c.recovery_p50_ms)), el('td', { class: 'num p90' }, dur(c.recovery_p90_ms)))))),
    el('p', { class: 'muted' }, 'Retried tasks that ended since the sidecar started. Recovery: from the first failure to the retry that succeeded (the upper bound of a histogram bucket).'));
    return box;
  }

  async function refreshDashboard() {
    if ((location.hash || '#/') !== '#/' && location.hash !== '') return;
    const keep = state.timer;
    await viewDashboard();
    if (keep !== state.timer) clearInterval(keep);
  }

  // The recent audit records, when the sidecar has the audit verb (hidden otherwise).
  async function loadAudit(box) {
    const r = await api('audit', { limit: 10 });
    if (r.status !== 200 || !r.body || !Array.isArray(r.body.records)) return;
    box.append(el('h3', {}, 'Recent actions (audit)'),
      el('table', {}, el('thead', {}, el('tr', {}, ['time', 'who', 'verb', 'what', 'count'].map((h) => el('th', {}, h)))),
        el('tbody', {}, r.body.records.map((a) => el('tr', {}, timeCell(a.time), el('td', {}, a.principal || ''), el('td', {}, a.verb || ''),
          el('td', {}, a.task_id || JSON.stringify(a.filter || {})), el('td', { class: 'num' }, String(a.count === undefined ? '' : a.count)))))));
  }

  async function pauseResume(verb) {
    const r = await api(verb);
    if (r.status === 200) flash(verb === 'pause' ? 'Automatic retries paused.' : 'Automatic retries resumed.');
    else flash(verb + ': ' + errText(r), true);
    route();
  }

  // ---- redrive progress -------------------------------------------------------------------------

  function showRedrive(rd) {
    const bar = $('redrive-bar');
    if (!rd || !rd.active) {
      if (!bar.classList.contains('hidden') && state.redriveTimer) {
        bar.replaceChildren(el('span', { id: 'redrive-done' }, rd && rd.cancelled
          ? 'Redrive cancelled: ' + rd.scheduled + ' of ' + rd.matched + ' scheduled.'
          : 'Redrive finished: ' + (rd ? rd.scheduled : 0) + ' scheduled.'));
        clearInterval(state.redriveTimer);
        state.redriveTimer = null;
        setTimeout(() => bar.classList.add('hidden'), 6000);
      }
      return;
    }
    bar.classList.remove('hidden');
    const prog = el('progress', { id: 'redrive-progress', max: '100', value: String(rd.progress_percent) });
    bar.replaceChildren(el('strong', {}, 'Redrive running'), prog,
      el('span', { id: 'redrive-text' }, rd.scheduled + ' of ' + rd.matched + ' scheduled at ' + rd.rate + '/s, ' + rd.remaining + ' left'),
      opButton('Cancel redrive', cancelRedrive, { id: 'btn-cancel-redrive', class: 'op danger' }));
    if (!state.redriveTimer) state.redriveTimer = setInterval(pollRedrive, 700);
  }

  async function pollRedrive() {
    const r = await api('stats');
    if (r.status === 200) showRedrive(r.body.retry_processor && r.body.retry_processor.redrive);
  }

  async function cancelRedrive() {
    const r = await api('retry', { cancel: true });
    if (r.status === 200) flash('Redrive cancelled after ' + r.body.scheduled + ' tasks.');
    else flash('cancel: ' + errText(r), true);
    pollRedrive();
  }

  // ---- tasks ------------------------------------------------------------------------------------

  function filterForm() {
    const f = state.filter;
    const form = el('form', { class: 'filters', id: 'filters' });
    for (const [k, label, kind] of FILTER_FIELDS) {
      let input;
      if (kind === 'status' || kind === 'category') {
        input = el('select', { name: k, id: 'f-' + k }, el('option', { value: '' }, 'any'),
          (kind === 'status' ? STATUSES : CATEGORIES).map((o) => el('option', { value: o, selected: f[k] === o }, o)));
      } else {
        input = el('input', { name: k, id: 'f-' + k, type: kind === 'number' ? 'number' : 'text', min: kind === 'number' ? '0' : null, value: f[k] || '', size: k === 'error' ? 24 : 14 });
      }
      form.append(el('label', {}, label, input));
    }
    form.append(el('button', { type: 'submit', id: 'btn-filter' }, 'Filter'),
      el('button', { type: 'button', class: 'secondary', id: 'btn-reset', on: { click: () => { state.filter = {}; location.hash = '#/tasks'; resetPages(); viewTasks(); } } }, 'Reset'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const nf = {};
      for (const [k] of FILTER_FIELDS) {
        const v = form.elements[k].value.trim();
        if (v !== '') nf[k] = v;
      }
      state.filter = nf;
      resetPages();
      const q = new URLSearchParams(nf).toString();
      if (location.hash !== '#/tasks' + (q ? '?' + q : '')) location.hash = '#/tasks' + (q ? '?' + q : '');
      else viewTasks();
    });
    return form;
  }

  function resetPages() {
    state.cursors = [null];
    state.page = 0;
  }

  // The filter as a request body (older_than_s a number).
  function filterBody() {
    const b = {};
    for (const [k, v] of Object.entries(state.filter)) b[k] = k === 'older_than_s' ? Number(v) : v;
    return b;
  }

  async function viewTasks() {
    const body = Object.assign(filterBody(), { limit: PAGE });
    const cur = state.cursors[state.page];
    if (cur) body.cursor = cur;
    const gen = state.gen;
    const r = await api('list', body);
    if (r.status === 401 || gen !== state.gen) return;
    const kids = [el('h2', {}, 'Tasks'), filterForm()];
    if (r.status !== 200) {
      kids.push(el('p', { class: 'error', id: 'list-error' }, 'list: ' + errText(r)));
      setView(...kids);
      return;
    }
    const tasks = r.body.tasks || [];
    const hasFilter = Object.keys(state.filter).length > 0;
    kids.push(el('div', { class: 'actions', id: 'bulk' },
      el('span', { id: 'total' }, r.body.total + ' matching'),
      opButton('Retry matching', () => bulkRetry(r.body.total), { id: 'btn-retry-all' }),
      el('label', {}, ' at ', el('input', { id: 'redrive-rate', type: 'number', min: '0', step: 'any', size: 6, placeholder: 'rate/s' }), ' per second'),
      opButton('Archive matching', () => bulkArchive(r.body.total), { id: 'btn-archive-all' }),
      opButton('Clear matching…', () => bulkClear(), { id: 'btn-clear-all', class: 'op danger' }),
      hasFilter ? null : el('span', { class: 'muted' }, '(no filter: these act on every task)')));
    const tbl = el('table', { id: 'task-table', 'data-filter': JSON.stringify(state.filter), 'data-page': String(state.page) }, el('thead', {}, el('tr', {},
      ['task id', 'status', 'subject', 'category', 'retries', 'error', 'created', 'next retry'].map((h) => el('th', {}, h)))));
    const tb = el('tbody');
    const needErr = [];
    for (const t of tasks) {
      const errCell = el('td', { class: 'err' }, t.error !== undefined ? (t.error || '') : '…');
      if (t.error === undefined) needErr.push([t.task_id, errCell]);
      tb.append(el('tr', { 'data-task': t.task_id },
        el('td', {}, el('a', { href: '#/task/' + encodeURIComponent(t.task_id) }, t.task_id)),
        el('td', {}, t.status + (t.parked && t.status === 'pending' ? ' (parked)' : '') + (t.no_workers ? ' · no workers' : '')),
        el('td', {}, t.subject), el('td', {}, t.error_category),
        el('td', { class: 'num' }, t.retry_count + '/' + t.max_retries), errCell,
        timeCell(t.created_at), timeCell(t.next_retry_at)));
    }
    tbl.append(tb);
    kids.push(tbl);
    if (!tasks.length) kids.push(el('p', { class: 'muted', id: 'empty' }, 'No task matches.'));
    const prev = el('button', { type: 'button', class: 'secondary', id: 'btn-prev', on: { click: () => { state.page--; viewTasks(); } } }, '← Previous');
    prev.disabled = state.page === 0;
    const next = el('button', { type: 'button', class: 'secondary', id: 'btn-next', on: { click: () => { state.cursors[state.page + 1] = r.body.next_cursor; state.page++; viewTasks(); } } }, 'Next →');
    next.disabled = !r.body.next_cursor;
    kids.push(el('div', { class: 'pager' }, prev, el('span', { id: 'page' }, 'page ' + (state.page + 1)), next));
    setView(...kids);
    // The list summary has no error column on this sidecar: read it from get.
    for (const [id, cell] of needErr) {
      api('get', { task_id: id }).then((g) => { cell.textContent = g.status === 200 ? (g.body.error || '') : ''; });
    }
  }

  function filterOrAll() {
    const b = filterBody();
    return Object.keys(b).length ? b : { all: true };
  }

  async function bulkRetry(total) {
    const rateText = $('redrive-rate').value.trim();
    const rate = rateText === '' ? null : Number(rateText);
    const what = total + ' matching task(s)' + (rate ? ' at ' + rate + ' per second (a background redrive)' : ' now');
    if (!(await ask('Retry ' + what + '? Pending, parked and exhausted ones are scheduled.', 'Retry'))) return;
    const body = filterOrAll();
    if (rate) body.rate = rate;
    const r = await api('retry', body);
    if (r.status !== 200) return flash('retry: ' + errText(r), true);
    if (r.body.background) {
      flash('Redrive started: ' + r.body.scheduled + ' task(s) at ' + r.body.rate + '/s.');
      pollRedrive();
    } else {
      flash('Scheduled ' + r.body.scheduled + ' task(s)' + (r.body.skipped ? ', skipped ' + r.body.skipped : '') + '.');
    }
    viewTasks();
  }

  async function bulkArchive(total) {
    if (!(await ask('Archive ' + total + ' matching task(s)? Archived tasks are no longer retried.', 'Archive'))) return;
    const r = await api('archive', filterOrAll());
    if (r.status !== 200) return flash('archive: ' + errText(r), true);
    flash('Archived ' + r.body.archived + ' task(s).');
    viewTasks();
  }

  // Clear: ask the server first (no confirm: it answers would_clear), show that count, then confirm.
  async function bulkClear() {
    const body = filterOrAll();
    const probe = await api('clear', body);
    if (!probe.body || !probe.body.error || probe.body.error.would_clear === undefined) return flash('clear: ' + errText(probe), true);
    const n = probe.body.error.would_clear;
    if (!(await ask('Clear removes ' + n + ' task(s) for good. Clear them?', 'Clear ' + n))) return;
    const r = await api('clear', Object.assign(body, { confirm: true }));
    if (r.status !== 200) return flash('clear: ' + errText(r), true);
    flash('Cleared ' + r.body.cleared + ' task(s).');
    resetPages();
    viewTasks();
  }

  // ---- groups -----------------------------------------------------------------------------------

  async function viewGroups() {
    const gen = state.gen;
    const r = await api('groups', { limit: 100 });
    if (r.status === 401 || gen !== state.gen) return;
    if (r.status === 404 && r.body && r.body.error && /unknown admin verb|no such path/.test(r.body.error.message)) {
      setView(el('h2', {}, 'Groups'), el('p', { id: 'groups-na', class: 'muted' }, 'Failure groups are not available on this sidecar (no groups verb).'));
      return;
    }
    if (r.status !== 200) {
      setView(el('h2', {}, 'Groups'), el('p', { class: 'error' }, 'groups: ' + errText(r)));
      return;
    }
    const tbl = el('table', { id: 'group-table' }, el('thead', {}, el('tr', {},
      ['group', 'subject', 'category', 'example error', 'count', 'first seen', 'last seen', ''].map((h) => el('th', {}, h)))));
    const tb = el('tbody');
    for (const g of r.body.groups || []) {
      tb.append(el('tr', { 'data-group': g.group },
        el('td', {}, el('a', { href: '#/tasks?group=' + encodeURIComponent(g.group) }, g.group)),
        el('td', {}, g.subject), el('td', {}, g.category), el('td', { class: 'err' }, g.error),
        el('td', { class: 'num' }, String(g.count)), timeCell(g.first_seen), timeCell(g.last_seen),
        el('td', {}, opButton('Retry', () => groupAction('retry', g), { class: 'op small' }), ' ',
          opButton('Archive', () => groupAction('archive', g), { class: 'op small secondary' }))));
    }
    tbl.append(tb);
    setView(el('h2', {}, 'Groups'), el('p', { class: 'muted' }, 'Failures grouped by subject, category and error (numbers, ids and hex normalised away).'), tbl);
  }

  async function groupAction(verb, g) {
    if (!(await ask(verb + ' the ' + g.count + ' task(s) of group ' + g.group + '?', verb))) return;
    const r = await api(verb, { group: g.group });
    if (r.status !== 200) return flash(verb + ': ' + errText(r), true);
    flash(verb + ': ' + JSON.stringify(r.body));
    viewGroups();
  }

  // ---- task detail ------------------------------------------------------------------------------

  function b64bytes(s) {
    const bin = atob(s);
    const u = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return u;
  }

  function hexdump(u) {
    const lines = [];
    for (let i = 0; i < u.length; i += 16) {
      const row = Array.from(u.slice(i, i + 16));
      lines.push(i.toString(16).padStart(6, '0') + '  ' + row.map((b) => b.toString(16).padStart(2, '0')).join(' ').padEnd(48) +
        '  ' + row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join(''));
    }
    return lines.join('\n');
  }

  // The payload as text: JSON when it is MessagePack (decoded by the server) or JSON text; hex otherwise.
  function payloadText(t) {
    if (t.payload_raw) {
      if (typeof t.task === 'string') {
        try { return { kind: 'JSON', text: JSON.stringify(JSON.parse(t.task), null, 2) }; } catch (e) { return { kind: 'text', text: t.task }; }
      }
      if (t.task_base64) return { kind: 'hex', text: hexdump(b64bytes(t.task_base64)) };
      return { kind: 'none', text: t.payload_missing ? '(payload missing)' : '(empty)' };
    }
    return { kind: 'MessagePack, shown as JSON', text: JSON.stringify(t.task, null, 2) };
  }

  function originalText(b64) {
    const u = b64bytes(b64);
    try {
      const s = new TextDecoder('utf-8', { fatal: true }).decode(u);
      return JSON.stringify(JSON.parse(s), null, 2);
    } catch (e) {
      return hexdump(u);
    }
  }

  function fields(pairs) {
    return el('dl', { class: 'fields' }, pairs.filter((p) => p[1] !== undefined).flatMap(([k, v]) =>
      [el('dt', {}, k), el('dd', {}, v === null ? '—' : v instanceof Node ? v : String(v))]));
  }

  // Task ids (depends_on, waiting_for) as links to their detail; undefined when the task has none.
  function taskLinks(ids, id) {
    if (!Array.isArray(ids) || !ids.length) return undefined;
    return el('span', { id }, ids.flatMap((x, i) => [i ? ', ' : null, el('a', { href: '#/task/' + encodeURIComponent(x) }, String(x))]));
  }

  async function viewTask(id) {
    const gen = state.gen;
    const r = await api('get', { task_id: id });
    if (r.status === 401 || gen !== state.gen) return;
    if (r.status !== 200) {
      setView(el('h2', {}, 'Task ' + id), el('p', { class: 'error', id: 'task-error' }, 'get: ' + errText(r)));
      return;
    }
    const t = r.body;
    const pl = payloadText(t);
    const kids = [el('h2', { id: 'task-title' }, 'Task ' + t.task_id)];
    const actionable = ['pending', 'exhausted'].includes(t.status);
    const retryBtn = opButton('Retry now', () => taskAction('retry', t), { id: 'btn-retry' });
    if (!actionable) retryBtn.disabled = true;
    const archBtn = opButton('Archive', () => taskAction('archive', t), { id: 'btn-archive', class: 'op secondary' });
    if (!['pending', 'retrying', 'exhausted'].includes(t.status)) archBtn.disabled = true;
    kids.push(el('div', { class: 'actions' }, retryBtn, archBtn,
      opButton('Edit payload…', () => editPayload(t), { id: 'btn-edit', class: 'op secondary' }),
      el('a', { href: '#/tasks' }, '← back to the list')));
    kids.push(el('div', { id: 'edit-box' }));
    kids.push(el('div', { class: 'two' },
      el('div', {}, el('h3', {}, 'State'), fields([
        ['status', t.status + (t.parked ? ' (parked' + (t.park_reason ? ': ' + t.park_reason : '') + ')' : '')],
        ['subject', t.subject], ['retry subject', t.retry_subject],
        ['attempts', t.retry_count + ' of ' + t.max_retries],
        ['next retry', t.next_retry_at ? rel(t.next_retry_at) + ' (' + t.next_retry_at + ')' : null],
        ['created', rel(t.created_at) + ' (' + t.created_at + ')'],
        ['updated', t.updated_at ? rel(t.updated_at) : null],
        ['last attempt', t.last_attempt_at ? rel(t.last_attempt_at) : null],
        ['episode', t.episode], ['size', t.task_size + ' bytes'],
        ['depends on', taskLinks(t.depends_on, 'depends-on')], ['waiting for', taskLinks(t.waiting_for, 'waiting-for')],
      ]), el('h3', {}, 'Classification'), fields([
        ['error', t.error], ['error type', t.error_type], ['category', t.error_category],
        ['rule', t.classifier_rule], ['retry policy', t.retry_policy],
      ])),
      el('div', {}, el('h3', {}, 'History'), el('ol', { class: 'timeline', id: 'history' },
        (t.history || []).map((h) => el('li', { class: h.outcome },
          el('strong', {}, h.outcome), ' · attempt ' + h.attempt + ' · ', el('span', { title: h.at }, rel(h.at)),
          h.error ? el('div', { class: 'muted' }, h.error) : null))))));
    kids.push(el('h3', {}, 'Payload (' + pl.kind + ')'), el('pre', { id: 'payload' }, pl.text));
    if (t.original_task !== undefined) {
      kids.push(el('h3', {}, 'Original payload (before the first edit)'), el('pre', { id: 'original-payload' },
        t.original_task !== null ? JSON.stringify(t.original_task, null, 2)
          : t.original_payload_b64 !== undefined ? originalText(t.original_payload_b64)
          : '(raw bytes: get with "payload": true shows them, as original_payload_b64)'));
    }
    if (t.headers) kids.push(el('h3', {}, 'Headers'), el('pre', { id: 'headers' }, t.headers.map((h) => h[0] + ': ' + h[1]).join('\n')));
    kids.push(el('h3', {}, 'Metadata'), el('pre', { id: 'metadata' }, t.metadata ? JSON.stringify(t.metadata, null, 2) : '(none)'));
    setView(...kids);
  }

  async function taskAction(verb, t) {
    if (!(await ask(verb === 'retry' ? 'Retry task ' + t.task_id + ' now?' : 'Archive task ' + t.task_id + '?', verb === 'retry' ? 'Retry' : 'Archive'))) return;
    const gen = state.gen;
    const r = await api(verb, { task_id: t.task_id });
    if (r.status !== 200) flash(verb + ': ' + errText(r), true);
    else flash(verb === 'retry' ? 'Retry scheduled (attempt ' + r.body.attempt + ').' : 'Task archived.');
    // Drawn again only if the operator is still on its page: an answer that comes after they
    // opened another task must not draw this one over it (its buttons would act on this task).
    if (gen === state.gen) viewTask(t.task_id);
  }

  function editPayload(t) {
    const box = $('edit-box');
    const asJson = !t.payload_raw || typeof t.task === 'string';
    let initial = '';
    if (!t.payload_raw) initial = JSON.stringify(t.task, null, 2);
    else if (typeof t.task === 'string') initial = t.task;
    else initial = t.task_base64 || '';
    const mode = el('select', { id: 'edit-mode' }, el('option', { value: 'json', selected: asJson }, 'JSON (sent as MessagePack)'),
      el('option', { value: 'b64', selected: !asJson }, 'raw bytes (base64)'));
    const ta = el('textarea', { id: 'edit-text', spellcheck: 'false' });
    ta.value = initial;
    const err = el('p', { class: 'error', id: 'edit-error' });
    const send = async (retry) => {
      const body = { task_id: t.task_id };
      if (mode.value === 'json') {
        try { body.payload_json = JSON.parse(ta.value); } catch (e) { err.textContent = 'Not JSON: ' + e.message; return; }
      } else {
        body.payload_b64 = ta.value.trim();
      }
      if (retry) body.retry = true;
      const gen = state.gen;
      const r = await api('edit', body);
      if (r.status !== 200) { err.textContent = 'edit: ' + errText(r); return; }
      flash(retry ? 'Payload saved; retry scheduled.' : 'Payload saved; the next retry sends it.');
      if (gen === state.gen) viewTask(t.task_id); /* still on its page (see taskAction) */
    };
    box.replaceChildren(el('h3', {}, 'Edit the payload'),
      el('p', { class: 'muted' }, 'The next retry publishes these bytes. The first original is kept and shown below the payload.'),
      el('div', { class: 'actions' }, mode), ta, err,
      el('div', { class: 'actions' },
        opButton('Save', () => send(false), { id: 'btn-edit-save' }),
        opButton('Save and retry', () => send(true), { id: 'btn-edit-retry' }),
        el('button', { type: 'button', class: 'secondary', on: { click: () => box.replaceChildren() } }, 'Cancel')));
  }

  // ---- start ------------------------------------------------------------------------------------

  function start() {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem('dlqToken', $('token').value);
      $('token').value = '';
      $('logout').classList.remove('hidden');
      route();
    });
    $('logout').addEventListener('click', () => {
      sessionStorage.removeItem('dlqToken');
      state.role = null;
      location.reload();
    });
    if (token()) $('logout').classList.remove('hidden');
    window.addEventListener('hashchange', route);
    route();
  }

  document.addEventListener('DOMContentLoaded', start);
}());
