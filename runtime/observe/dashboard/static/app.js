// Petrel's dashboard: reads the runtime's HTTP API every few seconds and renders the five
// pages; every change is a JSON POST to the same API with the operator's key (kept in this
// tab's sessionStorage) or the session cookie of a login with an SMTP user's password (the
// browser sends it; the page never sees it: HttpOnly). No data is in the page itself;
// nothing is written as HTML — text goes in through textContent only.
'use strict';

const POLL_MS = 3000;
const KEY = 'petrel.apiKey';
const PAGES = ['overview', 'destinations', 'sources', 'policy', 'search'];
const $ = (id) => document.getElementById(id);

// ---- the API ----------------------------------------------------------------------

function headers(json) {
  const h = json ? { 'content-type': 'application/json' } : {};
  const key = sessionStorage.getItem(KEY);
  if (key) h.authorization = 'Bearer ' + key;
  return h;
}

/** GET or POST (with `body`) an API path; resolves with the parsed answer or throws with its error text. */
async function api(path, body) {
  const res = await fetch(path, body === undefined ? { headers: headers(false) } : { method: 'POST', headers: headers(true), body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(path + ': ' + res.status + ' ' + (answer.error || res.statusText));
  return answer;
}

/** Says what came of an action: kept until the next one. */
function notice(text, error) {
  const n = $('notice');
  n.textContent = text;
  n.className = error ? 'error' : '';
}

/** Says when the page was last read from the API, or why it could not be. */
function polled(text, error) {
  const n = $('updated');
  n.textContent = text;
  n.className = error ? 'error' : 'muted';
}

/** Runs a change, says what came of it, and refreshes. */
async function act(label, path, body) {
  try {
    await api(path, body);
    notice(label + ': done');
  } catch (e) {
    notice(label + ' refused: ' + e.message, true);
  }
  refresh();
}

// ---- rendering helpers -------------------------------------------------------------

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function button(label, onClick) {
  const b = el('button', label);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

/**
 * Fills `table` with a header row and one row per item; a cell is text or a Node. A table
 * whose text is unchanged is left alone, so a poll does not replace a button under the
 * operator's pointer or focus.
 */
function fillTable(table, columns, rows, empty) {
  const sig = JSON.stringify([columns, rows.map((r) => (r.cells || r).map((c) => (c instanceof Node ? c.textContent + JSON.stringify(c.dataset || {}) : c)))]);
  if (table.dataset.sig === sig) return;
  table.dataset.sig = sig;
  table.replaceChildren();
  const head = el('tr');
  for (const c of columns) head.append(el('th', c));
  table.append(head);
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', empty || 'none', 'muted');
    td.colSpan = columns.length;
    tr.append(td);
    table.append(tr);
  }
  for (const row of rows) {
    const tr = el('tr');
    if (row.cls) tr.className = row.cls;
    for (const cell of row.cells || row) {
      const td = el('td');
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell === null || cell === undefined ? '' : String(cell);
      tr.append(td);
    }
    table.append(tr);
  }
}

const limitText = (l) => [...l.rate, ...l.connections, ...l.connectRate, ...l.dataRate].join(', ') || 'no limit';
const rule = (r) => el('span', r || 'operator', 'rule');
const time = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC') : '');

// ---- pages ---------------------------------------------------------------------------

function renderOverview(s) {
  const cards = $('totals');
  cards.replaceChildren();
  for (const k of ['accepted', 'delivered', 'deferred', 'bounced', 'queued', 'inFlight']) {
    const d = el('div');
    d.append(el('dt', k === 'inFlight' ? 'in flight' : k));
    const v = el('dd', s[k]);
    v.id = 'total-' + k;
    d.append(v);
    cards.append(d);
  }
  $('paused').textContent = s.paused.length ? s.paused.join(', ') : 'none';
}

function renderDestinations(s) {
  const rows = [];
  for (const q of s.queues) {
    rows.push({ cls: 'queue', cells: [q.queue, q.route || '', q.queued, q.inFlight, q.sentLastMinute + '/min', limitText(q.limits), q.paused ? 'paused' : ''] });
    for (const src of q.sources) {
      const state = src.stopped || (src.backoff ? 'backoff' : src.ramp !== null ? 'ramp ' + Math.round(src.ramp * 100) + '%' : '');
      rows.push({ cls: 'source', cells: [el('span', '↳ ' + src.source, 'sub'), '', '', '', '', limitText(src.limits), el('span', state, state ? 'state-' + state.split(' ')[0] : '')] });
    }
  }
  fillTable($('queues'), ['Queue / source', 'Route', 'Queued', 'In flight', 'Sent now', 'Limit in force', 'State'], rows, 'no queue yet');
  fillTable($('backoffs'), ['Queue', 'Source', 'Since', 'Until', 'Limits then', 'Reason', 'Rule'], s.backoffs.map((b) => [b.queue, b.source, time(b.since), time(b.until), limitText(b.limits), b.reason, rule(b.rule)]));
  fillTable($('suspensions'), ['Queue', 'Target', 'Who', 'Since', 'Until', 'Reason', 'Rule'], s.suspensions.map((x) => [x.queue, x.target, x.who || '', time(x.since), time(x.until), x.reason, rule(x.rule)]));
}

/** Every source the status names, with its disables (queue `*`: every route). */
function sourcesOf(s) {
  const all = new Map();
  const of = (name) => all.get(name) || all.set(name, { name, queues: new Set(), disabled: [], stopped: new Set() }).get(name);
  for (const q of s.queues) for (const src of q.sources) {
    of(src.source).queues.add(q.queue);
    if (src.stopped) of(src.source).stopped.add(src.stopped);
  }
  for (const d of s.disabled) of(d.source).disabled.push(d);
  for (const w of s.warmup) of(w.source);
  return [...all.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function renderSources(s) {
  const rows = [];
  for (const src of sourcesOf(s)) {
    if (src.disabled.length === 0) {
      const state = src.stopped.size ? [...src.stopped].join(', ') : 'sending';
      rows.push({ cls: 'src', cells: [src.name, [...src.queues].join(', ') || '', el('span', state, src.stopped.size ? 'state-suspended' : 'state-ok'), '', '', '', button('Disable', () => act('disable ' + src.name, '/api/v1/sources/disable', { source: src.name }))] });
    }
    for (const d of src.disabled) {
      const route = d.queue === '*' ? undefined : d.queue;
      const enable = button('Enable', () => act('enable ' + src.name, '/api/v1/sources/enable', route ? { source: src.name, route } : { source: src.name }));
      enable.dataset.source = src.name;
      rows.push({ cls: 'src', cells: [src.name, d.queue === '*' ? 'every route' : d.queue, el('span', 'disabled', 'state-disabled'), time(d.since), d.reason, rule(d.rule), enable] });
    }
  }
  fillTable($('source-list'), ['Source', 'Queues', 'State', 'Since', 'Reason', 'Rule', ''], rows, 'no source has sent yet');
  const warm = [];
  for (const w of s.warmup) for (const r of w.routes) warm.push([w.source, w.ramp, w.day, r.route, r.sentToday + ' of ' + r.limitToday, el('span', r.capped ? 'capped' : 'under the cap', r.capped ? 'state-capped' : 'state-ok')]);
  fillTable($('warmup'), ['Source', 'Ramp', 'Day', 'Route', 'Today', ''], warm, 'no source is warming up');
}

function renderPolicy(p) {
  const facts = $('policy-current');
  facts.replaceChildren();
  const c = p.current;
  const add = (k, v) => facts.append(el('dt', k), el('dd', v));
  if (c) {
    add('Live', c.name + ' ' + c.version);
    add('Hash', c.hash);
    add('Since', time(c.activatedAt));
  }
  add('Source', p.source.kind === 'git' ? p.source.repo + ' ' + p.source.ref : p.source.paths.join(', '));
  const history = [c, ...p.previous].filter(Boolean);
  fillTable($('policy-history'), ['Version', 'Hash', 'Went live', 'Replaced', 'Origin', ''], history.map((v, i) => [v.name + ' ' + v.version, v.hash.slice(0, 12), time(v.activatedAt), time(v.replacedAt), v.trigger || v.commit || '', i === 0 ? el('span', 'live', 'state-ok') : c && v.hash === c.hash ? el('span', 'same as live', 'muted') : button('Roll back to this', () => confirm('Roll back to ' + v.version + ' (' + v.hash.slice(0, 12) + ')?') && act('rollback', '/api/v1/policy/rollback', { to: v.hash }))]));
  fillTable($('policy-refusals'), ['When', 'Stage', 'Why'], (p.refusals || []).map((r) => [time(r.at), r.stage, (r.report || '').split('\n')[0]]));
  diffChoices(history);
}

/** The two version lists of the diff form, from the history (live first): the previous version against the live one until the operator picks others; a new history starts over. */
function diffChoices(history) {
  const sig = history.map((v) => v.hash).join(',');
  for (const [id, pick] of [['diff-from', 1], ['diff-to', 0]]) {
    const select = $(id);
    if (select.dataset.sig === sig) continue;
    select.replaceChildren(...history.map((v, i) => {
      const o = el('option', v.version + ' ' + v.hash.slice(0, 12) + (i === 0 ? ' (live)' : ''));
      o.value = v.hash;
      return o;
    }));
    select.dataset.sig = sig;
    select.value = (history[Math.min(pick, history.length - 1)] || {}).hash || '';
  }
}

/** Shows the line diff of each source file between two kept versions. */
async function showDiff(from, to) {
  const box = $('policy-diff');
  box.replaceChildren();
  try {
    const d = await api('/dashboard/api/policy-diff?from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to));
    box.append(el('p', 'From ' + d.from.name + ' ' + d.from.version + ' (' + d.from.hash.slice(0, 12) + ') to ' + d.to.name + ' ' + d.to.version + ' (' + d.to.hash.slice(0, 12) + ')'));
    const changed = d.files.filter((f) => f.change !== 'same');
    if (changed.length === 0) box.append(el('p', 'no source file changed', 'muted'));
    for (const f of changed) {
      const section = el('div', undefined, 'file-diff');
      section.dataset.path = f.path;
      section.append(el('h4', f.path + ' — ' + f.change));
      if (f.note) section.append(el('p', f.note, 'muted'));
      if (f.hunks) {
        const pre = el('pre', undefined, 'diff');
        for (const h of f.hunks) {
          pre.append(el('span', '@@ -' + h.oldStart + ',' + h.oldLines + ' +' + h.newStart + ',' + h.newLines + ' @@', 'hunk'));
          for (const line of h.lines) pre.append(el('span', line, line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : 'ctx'), line[0] === '+' || line[0] === '-' ? '' : '\n');
        }
        section.append(pre);
      }
      box.append(section);
    }
    const same = d.files.filter((f) => f.change === 'same').map((f) => f.path);
    if (same.length) box.append(el('p', 'unchanged: ' + same.join(', '), 'muted'));
  } catch (e) {
    box.append(el('p', e.message, 'state-disabled'));
  }
}

// ---- charts (uPlot) -----------------------------------------------------------------------

const charts = {};

function chart(id, title, names, data) {
  const width = Math.max(320, Math.min(1100, document.body.clientWidth - 60));
  if (!charts[id]) {
    const colors = ['#1f5fbf', '#1f7a3a', '#c58a00', '#b3261e'];
    const series = [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i], width: 2 }))];
    charts[id] = new uPlot({ title, width, height: 220, series, axes: [{}, { label: id === 'chart-queue' ? 'recipients' : 'per minute' }] }, data, $(id));
  } else charts[id].setData(data);
}

function renderCharts(points) {
  // uPlot spreads a lone point over years: an empty point ten minutes before gives the axis a span.
  if (points.length === 1) points = [{ t: points[0].t - 600, accepted: null, delivered: null, deferred: null, bounced: null, queued: null }, ...points];
  const t = points.map((p) => p.t);
  const col = (k) => points.map((p) => p[k]);
  chart('chart-rates', 'Per minute', ['accepted', 'delivered', 'deferred', 'bounced'], [t, col('accepted'), col('delivered'), col('deferred'), col('bounced')]);
  chart('chart-queue', 'Queue depth', ['queued'], [t, col('queued')]);
}

// ---- message search ---------------------------------------------------------------------

/** Shows a message: from the queue API while queued (with its actions), else as finished from the message index. */
async function showMessage(id) {
  const box = $('search-message');
  box.replaceChildren();
  try {
    const m = await api('/api/v1/queue/' + encodeURIComponent(id)).catch((e) => (/: 404 /.test(e.message) ? null : Promise.reject(e)));
    if (!m) return showFinished(box, await api('/dashboard/api/messages/' + encodeURIComponent(id)));
    box.append(el('h3', 'Message ' + m.id + ' (queued)'), el('p', 'from ' + m.from + ', tenant ' + (m.tenant || '(none)') + ', received ' + new Date(m.receivedAt).toISOString() + ', ' + m.size + ' bytes'));
    const table = el('table');
    fillTable(table, ['Recipient', 'Attempts', 'Next attempt', 'Queue'], m.recipients.map((r) => [r.rcpt, r.attempts, r.nextAttemptAt ? new Date(r.nextAttemptAt).toISOString() : '', r.queue || '']));
    box.append(table, queueActions(m.id), el('h3', 'Accounting trail'), el('pre', m.accounting.length ? m.accounting.join('\n') : 'no accounting record yet'));
  } catch (e) {
    box.append(el('p', e.message, 'state-disabled'));
  }
}

/** A message the spool no longer holds: each recipient's outcome and the accounting trail. */
function showFinished(box, m) {
  box.append(el('h3', 'Message ' + m.id + ' (' + m.state + ')'), el('p', 'Message-ID ' + (m.messageId ? '<' + m.messageId + '>' : '(none)') + ', from ' + m.from + ', tenant ' + (m.tenant || '(none)') + ', received ' + new Date(m.receivedAt).toISOString()));
  const table = el('table');
  fillTable(table, ['Recipient', 'Outcome'], m.to.map((r) => [r, m.outcomes[r] || 'no final record']));
  box.append(table, el('h3', 'Accounting trail'), el('pre', m.accounting.length ? m.accounting.join('\n') : 'no accounting record'));
}

/** Retry now, delete or bounce (with a DSN) one queued message; the last two ask first. */
function queueActions(id) {
  const p = el('p', undefined, 'inline');
  const op = (name, label, ask) => button(label, async () => {
    if (ask && !confirm(label + ' message ' + id + '?')) return;
    await act(name + ' ' + id, '/api/v1/queue/' + name, { ids: [id] });
    showMessage(id);
  });
  p.append(op('retry', 'Retry now', false), op('delete', 'Delete', true), op('bounce', 'Bounce', true));
  return p;
}

/**
 * By queue id: that message. By Message-ID: the message index (the last days' messages,
 * queued or finished). By recipient: the queue (any age) and the index's finished ones.
 */
async function search(kind, text) {
  $('search-message').replaceChildren();
  if (kind === 'id') return $('search-results').replaceChildren(), showMessage(text);
  try {
    const indexed = (await api('/dashboard/api/messages?limit=100&' + kind + '=' + encodeURIComponent(text))).messages;
    const queued = kind === 'rcpt' ? (await api('/api/v1/queue?limit=100&rcpt=' + encodeURIComponent(text))).messages : [];
    const rows = queued.map((m) => ({ id: m.id, messageId: '', from: m.from, to: m.recipients.map((r) => r.rcpt), receivedAt: m.receivedAt, state: 'queued' }));
    for (const m of indexed) if (!rows.some((r) => r.id === m.id)) rows.push(m);
    fillTable($('search-results'), ['Queue id', 'Message-ID', 'From', 'Recipients', 'Received', 'State', ''], rows.map((m) => [m.id, m.messageId, m.from, m.to.join(', '), new Date(m.receivedAt).toISOString(), m.state, button('Show', () => showMessage(m.id))]), 'no message matches');
  } catch (e) {
    notice(e.message, true);
  }
}

// ---- login ---------------------------------------------------------------------------------

/** Says who is logged in (the session cookie is HttpOnly: the server says). */
async function sessionState() {
  const s = await api('/dashboard/api/session').catch(() => null);
  $('login-state').textContent = s ? 'logged in as ' + s.user : 'not logged in';
  $('login-state').className = s ? 'state-ok' : 'muted';
}

// ---- wiring --------------------------------------------------------------------------------

function showPage() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'overview';
  for (const p of PAGES) $(p).classList.toggle('shown', p === page);
  for (const a of document.querySelectorAll('nav a')) a.toggleAttribute('aria-current', a.getAttribute('href') === '#' + page);
  if (page === 'overview') for (const c of Object.values(charts)) c.setSize({ width: Math.max(320, Math.min(1100, document.body.clientWidth - 60)), height: 220 });
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [status, policy, history] = await Promise.all([api('/api/v1/status'), api('/api/v1/policy').catch(() => null), api('/dashboard/api/history')]);
    $('policy-name').textContent = status.policy.name + ' ' + status.policy.version;
    renderOverview(status);
    renderDestinations(status);
    renderSources(status);
    if (policy) renderPolicy(policy);
    if ($('overview').classList.contains('shown')) renderCharts(history.points);
    document.body.dataset.updated = new Date().toISOString();
    polled('updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    polled(e.message + (sessionStorage.getItem(KEY) ? '' : ' — enter an API key or log in above'), true);
  } finally {
    busy = false;
  }
}

function wire() {
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('api-key').value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    $('api-key').value = '';
    notice(key ? 'key kept for this tab' : '');
    refresh();
  });
  $('key-forget').addEventListener('click', () => {
    sessionStorage.removeItem(KEY);
    notice('key forgotten');
  });
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const user = $('login-user').value.trim();
    const password = $('login-password').value;
    $('login-password').value = '';
    try {
      await api('/dashboard/api/login', { user, password });
      notice('logged in as ' + user);
    } catch (err) {
      notice('login refused: ' + err.message, true);
    }
    await sessionState();
    refresh();
  });
  $('logout').addEventListener('click', async () => {
    await api('/dashboard/api/logout', {}).catch(() => null);
    notice('logged out');
    await sessionState();
  });
  $('diff-form').addEventListener('submit', (e) => {
    e.preventDefault();
    showDiff($('diff-from').value, $('diff-to').value);
  });
  $('pause-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const on = e.submitter && e.submitter.dataset.on === 'true';
    const kind = $('pause-kind').value;
    act((on ? 'pause ' : 'resume ') + kind, on ? '/api/v1/pause' : '/api/v1/resume', { [kind]: $('pause-name').value.trim() });
  });
  $('disable-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const route = $('disable-route').value.trim();
    act('disable ' + $('disable-source').value, '/api/v1/sources/disable', route ? { source: $('disable-source').value.trim(), route } : { source: $('disable-source').value.trim() });
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    search($('search-kind').value, $('search-text').value.trim());
  });
  window.addEventListener('hashchange', () => {
    showPage();
    refresh();
  });
  showPage();
  sessionState();
  refresh();
  setInterval(refresh, POLL_MS);
}

wire();
