// Small line charts in plain SVG (no chart library): one or more series over time.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** series: [{name, cls, values: [number|null]}], times: [ms]; returns an <svg>. */
export function lineChart(title, times, series, {unit = ''} = {}) {
  const w = 320, hgt = 120, padL = 40, padB = 18, padT = 18;
  const root = svg('svg', {viewBox: `0 0 ${w} ${hgt}`, class: 'chart', role: 'img', 'aria-label': title});
  root.appendChild(svg('text', {x: 4, y: 12, class: 'chart-title'}, title));
  const all = series.flatMap(s => s.values.filter(v => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...all, 0) * 1.1 || 1;
  const n = Math.max(times.length, 2);
  const x = i => padL + (i * (w - padL - 4)) / (n - 1);
  const y = v => hgt - padB - (v / max) * (hgt - padB - padT);
  root.appendChild(svg('line', {x1: padL, y1: hgt - padB, x2: w - 4, y2: hgt - padB, class: 'axis'}));
  root.appendChild(svg('text', {x: padL - 4, y: padT + 4, class: 'tick', 'text-anchor': 'end'}, fmt(max) + unit));
  root.appendChild(svg('text', {x: padL - 4, y: hgt - padB, class: 'tick', 'text-anchor': 'end'}, '0'));
  if (times.length) {
    const mins = Math.round((times[times.length - 1] - times[0]) / 60000);
    root.appendChild(svg('text', {x: padL, y: hgt - 4, class: 'tick'}, mins > 0 ? `-${mins} min` : ''));
    root.appendChild(svg('text', {x: w - 4, y: hgt - 4, class: 'tick', 'text-anchor': 'end'}, 'now'));
  }
  let lx = padL + 4;
  for (const s of series) {
    const pts = s.values.map((v, i) => (v === null || v === undefined ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (pts.length) root.appendChild(svg('polyline', {points: pts.join(' '), class: `series ${s.cls}`}));
    const label = svg('text', {x: lx, y: padT + 2, class: `legend ${s.cls}`}, s.name);
    root.appendChild(label);
    lx += 8 + s.name.length * 6;
  }
  return root;
}

function fmt(v) {
  if (v >= 100) return Math.round(v).toString();
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
