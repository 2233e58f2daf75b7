// The client dashboard: reads ui/data (/_restpipe/ui/data: the client's
// status and its connection history) every two seconds. Every value from the
// network goes into the page as text, never as markup.
const POLL_MS = 2000;

const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function when(iso) {
  if (!iso) return '–';
  const at = Date.parse(iso);
  return `${clock(at)} (${duration((Date.now() - at) / 1000)} ago)`;
}

function text(value) {
  return value === null || value === undefined || value === '' ? '–' : String(value);
}

/** `{ outgoing, incoming, streams }` as "2 out, 0 in, 1 streams". */
function inFlight(value) {
  if (value === null || value === undefined || typeof value !== 'object') return text(value);
  const parts = [`${value.outgoing ?? 0} out`, `${value.incoming ?? 0} in`];
  if (value.streams) parts.push(`${value.streams} streams`);
  return parts.join(', ');
}

function render(data) {
  const s = data.status;
  const pipe = byId('pipe');
  pipe.textContent = s.pipe === 'up' ? 'Pipe up' : `Pipe down (${s.state})`;
  pipe.className = `pipe ${s.pipe}`;
  byId('summary').textContent = `Server ${s.server} · up ${duration(s.uptimeS)}`;

  const info = [
    ['Server', s.server],
    ['Peer', s.peer ? `${s.peer.name} at ${text(s.peer.address)}` : '–'],
    ['Peer agent', text(s.peer?.agent)],
    ['Protocol', text(s.peer?.protocolVersion)],
    ['Connected since', when(s.connectedSince)],
    ['Last disconnected', when(s.lastDisconnectedAt)],
    ['RTT', s.rttMs === null || s.rttMs === undefined ? '–' : `${s.rttMs} ms`],
    ['In flight', inFlight(s.inFlight)],
  ];
  byId('info').replaceChildren(
    ...info.flatMap(([label, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );

  const history = data.history;
  byId('history').tBodies[0].replaceChildren(
    ...history.map((h) => {
      const row = document.createElement('tr');
      const time = row.insertCell();
      time.textContent = clock(Date.parse(h.time));
      time.title = new Date(Date.parse(h.time)).toLocaleString();
      const type = row.insertCell();
      type.className = h.type;
      type.textContent = h.type === 'connect_failed' ? 'connect failed' : h.type;
      const details = row.insertCell();
      if (h.type === 'connected') details.textContent = `after ${h.attempts} attempt${h.attempts === 1 ? '' : 's'}`;
      else if (h.type === 'disconnected') details.textContent = h.reason ?? '';
      else details.textContent = `${h.failures} failed attempt${h.failures === 1 ? '' : 's'} since ${clock(Date.parse(h.since))}; last: ${h.error}`;
      return row;
    }),
  );
  byId('no-history').hidden = history.length > 0;

  const counters = Object.entries(s.counters ?? {});
  byId('counters').tBodies[0].replaceChildren(
    ...counters.map(([name, value]) => {
      const row = document.createElement('tr');
      row.insertCell().textContent = name;
      const cell = row.insertCell();
      cell.className = 'num';
      cell.textContent = String(value);
      return row;
    }),
  );
  byId('no-counters').hidden = counters.length > 0;
}

async function poll() {
  try {
    const res = await fetch('ui/data', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (err) {
    byId('summary').textContent = `The gateway does not answer (${err.message}); showing the last data.`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
