// Small SVG charts for the dashboard: one bucket of the time window per
// column, stacked bars and step lines. No dependency; labels are HTML so
// they stay readable when the SVG stretches.

const SVG = 'http://www.w3.org/2000/svg';
const COLUMN = 10;
const HEIGHT = 100;

/**
 * @typedef {{ name: string, color: string, values: Array<number | null>, kind: 'bar' | 'line', dashed?: boolean }} Series
 * @typedef {{ label: string, format: (value: number) => string, bucketTimes: number[] }} ChartOptions
 */

/**
 * Draws `series` into `body` (replacing what was there). Bars stack in the
 * order given; lines are drawn over them. The SVG is one image for assistive
 * technology, labelled with `opts.label`; each bar has a tooltip.
 * @param {HTMLElement} body
 * @param {Series[]} series
 * @param {ChartOptions} opts
 */
export function drawChart(body, series, opts) {
  const n = opts.bucketTimes.length;
  const width = n * COLUMN;
  let max = 0;
  for (let i = 0; i < n; i++) {
    let stack = 0;
    for (const s of series) {
      const v = s.values[i] ?? 0;
      if (s.kind === 'bar') stack += v;
      else if (v > max) max = v;
    }
    if (stack > max) max = stack;
  }
  const scale = max > 0 ? (HEIGHT - 4) / max : 0;

  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', opts.label);
  svg.dataset.max = String(max);

  const base = new Array(n).fill(0);
  for (const s of series) {
    if (s.kind !== 'bar') continue;
    for (let i = 0; i < n; i++) {
      const v = s.values[i] ?? 0;
      if (v <= 0) continue;
      const h = Math.max(v * scale, 1);
      const rect = document.createElementNS(SVG, 'rect');
      rect.setAttribute('x', String(i * COLUMN + 1));
      rect.setAttribute('width', String(COLUMN - 2));
      rect.setAttribute('y', String(HEIGHT - base[i] - h));
      rect.setAttribute('height', String(h));
      rect.setAttribute('fill', s.color);
      rect.dataset.series = s.name;
      rect.dataset.value = String(v);
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${clock(opts.bucketTimes[i] ?? 0)} ${s.name}: ${opts.format(v)}`;
      rect.append(title);
      svg.append(rect);
      base[i] += h;
    }
  }

  for (const s of series) {
    if (s.kind !== 'line') continue;
    let d = '';
    let drawing = false;
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (v === null || v === undefined) {
        drawing = false;
        continue;
      }
      const y = (HEIGHT - Math.max(v * scale, 1)).toFixed(2);
      d += drawing ? `L${i * COLUMN} ${y}h${COLUMN}` : `M${i * COLUMN} ${y}h${COLUMN}`;
      drawing = true;
    }
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', s.color);
    path.setAttribute('stroke-width', '2');
    path.setAttribute('vector-effect', 'non-scaling-stroke');
    if (s.dashed) path.setAttribute('stroke-dasharray', '5 3');
    path.dataset.series = s.name;
    svg.append(path);
  }

  const axis = document.createElement('div');
  axis.className = 'axis';
  axis.setAttribute('aria-hidden', 'true');
  const from = document.createElement('span');
  from.textContent = clock(opts.bucketTimes[0] ?? 0);
  const top = document.createElement('span');
  top.textContent = max > 0 ? `max ${opts.format(max)}` : 'no data';
  const to = document.createElement('span');
  to.textContent = 'now';
  axis.append(from, top, to);
  body.replaceChildren(svg, axis);
}

/** HH:MM:SS in local time. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}
