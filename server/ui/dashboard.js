// The server dashboard. Reads, relative to the page (/_restpipe/ui):
//   clients   → /_restpipe/clients   (the connected clients)
//   status    → /_restpipe/status    (the node's state and counters)
//   ui/data   → /_restpipe/ui/data   (recent answers, per-client counters, connection events)
//   events    → /_restpipe/events    (Server-Sent Events: connected / disconnected)
// and the "try it" box calls ../client/<name>/<noun>. Every value from the
// network goes into the page as text (textContent), never as markup.
import { clock, drawChart } from './charts.js';

const POLL_MS = 2000;

const state = {
  /** @type {Array<Record<string, any>>} */
  clients: [],
  /** @type {Record<string, any> | null} */
  data: null,
  /** @type {Record<string, any> | null} */
  status: null,
  sort: { key: 'name', dir: 1 },
  filter: '',
  /** @type {string | null} the client whose detail is open */
  detail: null,
};

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

// ---- data ---------------------------------------------------------------

async function getJson(url, anyStatus = false) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok && !anyStatus) throw new Error(`${url} answered HTTP ${res.status}`);
  return res.json();
}

let refreshing = null;
let refreshAgain = false;

/** Reads everything and redraws; calls made while one runs are folded into one more. */
function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const [clients, data, status] = await Promise.all([getJson('clients'), getJson('ui/data'), getJson('status', true)]);
      state.clients = clients;
      state.data = data;
      state.status = status;
      render();
    } catch (err) {
      byId('summary').textContent = `The gateway does not answer (${err.message}); showing the last data.`;
    }
  })();
  return refreshing.finally(() => {
    refreshing = null;
    if (refreshAgain) {
      refreshAgain = false;
      refresh();
    }
  });
}

function poll() {
  refresh().finally(() => setTimeout(poll, POLL_MS));
}

function listen() {
  const live = byId('live');
  const source = new EventSource('events');
  source.addEventListener('open', () => {
    live.textContent = 'Live: connection events arrive as they happen';
    live.classList.add('on');
  });
  source.addEventListener('error', () => {
    live.textContent = 'Event stream interrupted; reconnecting…';
    live.classList.remove('on');
  });
  source.addEventListener('connected', () => refresh());
  source.addEventListener('disconnected', (message) => {
    greyOut(JSON.parse(message.data));
    refresh();
  });
}

/** Greys the row of a client that just dropped, before the next read moves it. */
function greyOut(event) {
  for (const row of byId('clients').tBodies[0].rows) {
    if (row.dataset.name === event.name && row.dataset.address === String(event.address ?? '')) {
      row.classList.add('gone');
      row.setAttribute('aria-label', `${event.name}, disconnected at ${clock(Date.parse(event.time))}`);
    }
  }
}

// ---- formatting -----------------------------------------------------------

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function ms(value) {
  if (value === null || value === undefined) return '–';
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  return `${value.toFixed(2)} ms`;
}

function rate(perSecond) {
  return `${perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1)}/s`;
}

function codeLabel(code) {
  const name = state.data?.codeNames?.[code];
  return name ? `${code} ${name}` : String(code);
}

function timeCell(iso) {
  const t = document.createElement('time');
  if (!iso) {
    t.textContent = '–';
    return t;
  }
  const at = Date.parse(iso);
  t.dateTime = iso;
  t.title = new Date(at).toLocaleString();
  t.textContent = `${clock(at)} (${duration((Date.now() - at) / 1000)} ago)`;
  return t;
}

/** "2027-03-01 (in 120 days)", warning colours when it is near or past. */
function certCell(td, notAfter) {
  td.className = '';
  if (!notAfter) {
    td.textContent = '–';
    return;
  }
  const at = Date.parse(notAfter);
  const days = Math.floor((at - Date.now()) / 86_400_000);
  td.textContent = `${new Date(at).toISOString().slice(0, 10)} (${days < 0 ? 'expired' : `in ${days} days`})`;
  if (days < 0) td.className = 'bad';
  else if (days < 30) td.className = 'warn';
}

function text(value) {
  return value === null || value === undefined || value === '' ? '–' : String(value);
}

// ---- rendering ------------------------------------------------------------

function render() {
  renderSummary();
  renderClients();
  renderDisconnected();
  renderCharts();
  renderEvents();
  if (state.detail !== null) renderDetail();
}

function renderSummary() {
  const s = state.status;
  const totals = state.data?.totals;
  const parts = [];
  if (s) {
    const at = s.listening ? ` on ${s.listening.address}:${s.listening.port}` : '';
    parts.push(`Pipe ${s.pipe}${at}`, `${s.clients} connected`, `up ${duration(s.uptimeS)}`);
  }
  if (totals) parts.push(`${totals.requests} answers, ${totals.errors} errors in 15 min`);
  byId('summary').textContent = parts.join(' · ');
}

const COLUMNS = ['name', 'address', 'connectedSince', 'rttMs', 'inFlight', 'requests', 'errors', 'protocolVersion', 'agent', 'certNotAfter', 'instance'];

/** `inFlight` is `{ outgoing, incoming, streams }`: sorted by requests both ways, shown in full. */
function inFlightText(value) {
  if (value === null || value === undefined || typeof value !== 'object') return text(value);
  const parts = [`${value.outgoing ?? 0} out`, `${value.incoming ?? 0} in`];
  if (value.streams) parts.push(`${value.streams} streams`);
  return parts.join(', ');
}

function inFlightCount(value) {
  return value !== null && typeof value === 'object' ? (value.outgoing ?? 0) + (value.incoming ?? 0) : value;
}

function clientRows() {
  const counters = state.data?.clients ?? {};
  return state.clients.map((c) => ({
    ...c,
    inFlight: inFlightCount(c.inFlight),
    inFlightText: inFlightText(c.inFlight),
    requests: counters[c.name]?.requests ?? 0,
    errors: counters[c.name]?.errors ?? 0,
  }));
}

function compare(a, b, key) {
  const x = a[key];
  const y = b[key];
  if (x === y) return 0;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  if (typeof x === 'number' && typeof y === 'number') return x - y;
  return String(x).localeCompare(String(y), undefined, { numeric: true });
}

function renderClients() {
  const table = /** @type {HTMLTableElement} */ (byId('clients'));
  const tbody = table.tBodies[0];
  const all = clientRows();
  const showInstance = all.some((c) => c.instance !== undefined && c.instance !== null);
  for (const th of table.tHead.rows[0].cells) {
    if (th.dataset.key === 'instance') th.hidden = !showInstance;
    th.setAttribute('aria-sort', th.dataset.key === state.sort.key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
  const needle = state.filter.toLowerCase();
  const rows = all.filter((c) => String(c.name).toLowerCase().includes(needle));
  rows.sort((a, b) => state.sort.dir * compare(a, b, state.sort.key) || compare(a, b, 'name'));

  const focused = document.activeElement instanceof HTMLTableRowElement ? document.activeElement.dataset.name : undefined;
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.name, row]));
  rows.forEach((c, i) => {
    let row = existing.get(c.name);
    existing.delete(c.name);
    if (!row) row = newRow(c.name, COLUMNS.length);
    fillClientRow(row, c, showInstance);
    if (tbody.rows[i] !== row) tbody.insertBefore(row, tbody.rows[i] ?? null);
  });
  for (const row of existing.values()) row.remove();
  if (focused !== undefined && !(document.activeElement instanceof HTMLTableRowElement)) {
    for (const row of tbody.rows) if (row.dataset.name === focused) row.focus();
  }
  byId('client-count').textContent = needle ? `(${rows.length} of ${all.length})` : `(${all.length})`;
  const empty = byId('no-clients');
  empty.hidden = rows.length > 0;
  empty.textContent = all.length === 0 ? 'No client is connected.' : 'No connected client matches the filter.';
}

/** A focusable row that opens the client's detail on click, Enter or Space. */
function newRow(name, cells) {
  const row = document.createElement('tr');
  row.tabIndex = 0;
  row.dataset.name = name;
  for (let i = 0; i < cells; i++) row.insertCell();
  row.addEventListener('click', () => openDetail(name));
  row.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      openDetail(name);
    }
  });
  return row;
}

function fillClientRow(row, c, showInstance) {
  row.classList.remove('gone');
  row.removeAttribute('aria-label');
  row.dataset.address = String(c.address ?? '');
  const cells = row.cells;
  cells[0].textContent = c.name;
  cells[1].textContent = text(c.address);
  cells[2].replaceChildren(timeCell(c.connectedSince));
  cells[3].textContent = ms(c.rttMs);
  cells[3].className = 'num';
  cells[4].textContent = c.inFlightText;
  cells[4].className = 'num';
  cells[5].textContent = String(c.requests);
  cells[5].className = 'num';
  cells[6].textContent = String(c.errors);
  cells[6].className = c.errors > 0 ? 'num bad' : 'num';
  cells[7].textContent = text(c.protocolVersion);
  cells[8].textContent = text(c.agent);
  certCell(cells[9], c.certNotAfter);
  cells[10].textContent = text(c.instance);
  cells[10].hidden = !showInstance;
}

function renderDisconnected() {
  const tbody = /** @type {HTMLTableElement} */ (byId('disconnected')).tBodies[0];
  const gone = state.data?.disconnected ?? [];
  const focused = document.activeElement instanceof HTMLTableRowElement ? document.activeElement.dataset.name : undefined;
  const rows = gone.map((g) => {
    const row = newRow(g.name, 3);
    row.cells[0].textContent = g.name;
    row.cells[1].textContent = text(g.address);
    row.cells[2].replaceChildren(timeCell(g.time));
    return row;
  });
  tbody.replaceChildren(...rows);
  if (focused !== undefined && document.activeElement === document.body) {
    for (const row of rows) if (row.dataset.name === focused) row.focus();
  }
  byId('gone-count').textContent = `(${gone.length})`;
  byId('no-gone').hidden = gone.length > 0;
}

/** Colours of error codes on white, at least 3:1; the legend names each. */
const CODE_COLORS = {
  240: '#7a4a00',
  241: '#5c5c00',
  242: '#6a3d9a',
  243: '#a3006e',
  244: '#b35900',
  245: '#00707a',
  246: '#4d4d4d',
  247: '#8a5a00',
  251: '#a3001b',
  255: '#1f5fa8',
};
const OTHER_COLORS = ['#2e6b00', '#7d2e68', '#005f99', '#8c3b00'];

function colorFor(code) {
  return CODE_COLORS[code] ?? OTHER_COLORS[Number(code) % OTHER_COLORS.length];
}

function renderCharts() {
  const data = state.data;
  if (!data) return;
  const series = data.series;
  const times = series.map((b) => b.t);
  const perS = data.bucketS;

  const requests = series.map((b) => b.requests / perS);
  const peak = Math.max(0, ...requests);
  const lastMinute = series.slice(-Math.round(60 / perS)).reduce((n, b) => n + b.requests, 0);
  const reqSummary = `${data.totals.requests} in 15 min · ${lastMinute} in the last minute · peak ${rate(peak)}`;
  const reqChart = byId('chart-requests');
  reqChart.querySelector('.chart-summary').textContent = reqSummary;
  drawChart(reqChart.querySelector('.chart-body'), [{ name: 'requests', color: '#1f5fa8', values: requests, kind: 'bar' }], {
    label: `Requests per second, per 10 seconds: ${reqSummary}`,
    format: rate,
    bucketTimes: times,
  });

  const errorTotals = data.totals.errorCodes;
  const codes = Object.keys(errorTotals);
  const share = data.totals.requests > 0 ? ((100 * data.totals.errors) / data.totals.requests).toFixed(1) : '0.0';
  const errSummary = codes.length
    ? `${data.totals.errors} in 15 min (${share} % of answers): ${codes.map((c) => `${c} ×${errorTotals[c]}`).join(', ')}`
    : 'none in 15 min';
  const errChart = byId('chart-errors');
  errChart.querySelector('.chart-summary').textContent = errSummary;
  drawChart(
    errChart.querySelector('.chart-body'),
    codes.map((code) => ({ name: code, color: colorFor(code), values: series.map((b) => (b.errorCodes[code] ?? 0) / perS), kind: 'bar' })),
    { label: `Errors per second by event code, per 10 seconds: ${errSummary}`, format: rate, bucketTimes: times },
  );
  errChart.querySelector('.legend').replaceChildren(
    ...codes.map((code) => {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.setAttribute('aria-hidden', 'true');
      swatch.style.background = colorFor(code);
      li.append(swatch, `${codeLabel(code)}: ${errorTotals[code]}`);
      return li;
    }),
  );

  const latSummary = data.totals.requests ? `p50 ${ms(data.totals.p50Ms)} · p99 ${ms(data.totals.p99Ms)} over 15 min` : 'no answers in 15 min';
  const latChart = byId('chart-latency');
  latChart.querySelector('.chart-summary').textContent = latSummary;
  drawChart(
    latChart.querySelector('.chart-body'),
    [
      { name: 'p50', color: '#1f5fa8', values: series.map((b) => b.p50Ms), kind: 'line' },
      { name: 'p99', color: '#a3001b', values: series.map((b) => b.p99Ms), kind: 'line', dashed: true },
    ],
    { label: `Latency per 10 seconds, p50 and p99: ${latSummary}`, format: ms, bucketTimes: times },
  );
}

function renderEvents() {
  const events = state.data?.events ?? [];
  byId('events').replaceChildren(
    ...events.map((e) => {
      const li = document.createElement('li');
      const at = Date.parse(e.time);
      const t = document.createElement('time');
      t.dateTime = e.time;
      t.title = new Date(at).toLocaleString();
      t.textContent = clock(at);
      const type = document.createElement('span');
      type.className = e.type;
      type.textContent = e.type;
      li.append(t, type, ` ${e.name}${e.address ? ` from ${e.address}` : ''} · ${e.clients} connected`);
      return li;
    }),
  );
  byId('no-events').hidden = events.length > 0;
}

// ---- detail ---------------------------------------------------------------

function openDetail(name) {
  state.detail = name;
  byId('detail-title').textContent = name;
  byId('try-prefix').textContent = `/client/${name}/`;
  byId('try-result').hidden = true;
  renderDetail();
  const dialog = /** @type {HTMLDialogElement} */ (byId('detail'));
  if (!dialog.open) dialog.showModal();
  byId('try-noun').focus();
}

function renderDetail() {
  const name = state.detail;
  const client = state.clients.find((c) => c.name === name);
  const gone = state.data?.disconnected?.find((c) => c.name === name);
  const counters = state.data?.clients?.[name];
  const stateLine = byId('detail-state');
  if (client) {
    stateLine.textContent = 'Connected';
    stateLine.className = 'state up';
  } else {
    stateLine.textContent = gone ? `Disconnected at ${clock(Date.parse(gone.time))}` : 'Not connected';
    stateLine.className = 'state down';
  }

  const info = [
    ['Address', text(client?.address ?? gone?.address)],
    ['Connected since', client ? timeCell(client.connectedSince) : '–'],
    ['RTT', ms(client?.rttMs)],
    ['In flight', inFlightText(client?.inFlight)],
    ['Protocol', text(client?.protocolVersion)],
    ['Agent', text(client?.agent)],
  ];
  const cert = document.createElement('span');
  certCell(cert, client?.certNotAfter);
  info.push(['Certificate expires', cert]);
  if (client?.instance !== undefined) info.push(['Instance', text(client.instance)]);
  info.push(['Requests', String(counters?.requests ?? 0)], ['Errors', String(counters?.errors ?? 0)]);
  info.push(['Last answer', counters ? timeCell(counters.lastAnswerAt) : '–']);
  byId('detail-info').replaceChildren(
    ...info.flatMap(([label, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.append(value);
      return [dt, dd];
    }),
  );

  const codes = Object.entries(counters?.codes ?? {});
  byId('detail-codes').tBodies[0].replaceChildren(
    ...codes.map(([code, n]) => {
      const row = document.createElement('tr');
      row.insertCell().textContent = codeLabel(code);
      const count = row.insertCell();
      count.className = 'num';
      count.textContent = String(n);
      return row;
    }),
  );
  byId('detail-codes').hidden = codes.length === 0;
  byId('detail-no-codes').hidden = codes.length > 0;

  const errors = counters?.recentErrors ?? [];
  byId('detail-errors').tBodies[0].replaceChildren(
    ...errors.map((e) => {
      const row = document.createElement('tr');
      row.insertCell().append(timeCell(e.time));
      row.insertCell().textContent = `${e.verb} ${e.noun}`;
      const code = row.insertCell();
      code.className = 'num';
      code.textContent = codeLabel(e.code);
      const status = row.insertCell();
      status.className = 'num';
      status.textContent = String(e.status);
      return row;
    }),
  );
  byId('detail-errors').hidden = errors.length === 0;
  byId('detail-no-errors').hidden = errors.length > 0;
}

async function tryIt(event) {
  event.preventDefault();
  const name = state.detail;
  if (name === null) return;
  const noun = /** @type {HTMLInputElement} */ (byId('try-noun')).value.trim().replace(/^\/+/, '');
  const prefix = `../client/${encodeURIComponent(name)}/`;
  const url = new URL(prefix + noun, location.href);
  const result = byId('try-result');
  const show = (status, code, type, took, body) => {
    byId('try-status').textContent = status;
    byId('try-code').textContent = code;
    byId('try-type').textContent = type;
    byId('try-ms').textContent = took;
    byId('try-body').textContent = body;
    result.hidden = false;
  };
  if (url.origin !== location.origin || !url.pathname.startsWith(new URL(prefix, location.href).pathname)) {
    show('–', '–', '', '', `The noun must stay under /client/${name}/ ("${noun}" leaves it).`);
    return;
  }
  const started = performance.now();
  try {
    const res = await fetch(url, { cache: 'no-store', headers: { 'x-restpipe-timeout-ms': '15000' } });
    let body = await res.text();
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('json')) {
      try {
        body = JSON.stringify(JSON.parse(body), null, 2);
      } catch {
        // shown as it came
      }
    }
    if (body.length > 100_000) body = `${body.slice(0, 100_000)}\n… (${body.length - 100_000} more characters)`;
    const code = res.headers.get('x-event-return-code');
    show(String(res.status), code === null ? '–' : codeLabel(code), type || 'no content type', ms(performance.now() - started), body);
  } catch (err) {
    show('–', '–', '', '', `The request failed: ${err.message}`);
  }
  refresh();
}

// ---- start ----------------------------------------------------------------

function start() {
  for (const th of byId('clients').tHead.rows[0].cells) {
    th.querySelector('button')?.addEventListener('click', () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      renderClients();
    });
  }
  byId('filter').addEventListener('input', (event) => {
    state.filter = /** @type {HTMLInputElement} */ (event.target).value;
    renderClients();
  });
  const dialog = /** @type {HTMLDialogElement} */ (byId('detail'));
  byId('detail-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    state.detail = null;
  });
  byId('try').addEventListener('submit', tryIt);
  listen();
  poll();
}

start();
