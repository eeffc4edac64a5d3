// ANSI SGR colours of terminal output (ESC [ ... m) as spans with classes (16 colours) or CSSOM
// colours (256 and 24-bit), text always as text. Other escape sequences are dropped.

const ESC = '\u001b';

export class AnsiState {
  constructor() { this.reset(); }
  reset() { this.fg = null; this.bg = null; this.bold = false; this.dim = false; this.italic = false; this.underline = false; }
  copy() { const s = new AnsiState(); Object.assign(s, this); return s; }
  get plain() { return !this.fg && !this.bg && !this.bold && !this.dim && !this.italic && !this.underline; }
}

function color256(n) {
  if (n < 16) return {cls: n < 8 ? `c${n}` : `c${n - 8}b`};
  if (n < 232) {
    n -= 16;
    const v = [0, 95, 135, 175, 215, 255];
    return {rgb: `rgb(${v[Math.floor(n / 36)]},${v[Math.floor(n / 6) % 6]},${v[n % 6]})`};
  }
  const g = 8 + (n - 232) * 10;
  return {rgb: `rgb(${g},${g},${g})`};
}

function applySGR(state, params) {
  const p = params.length ? params : [0];
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) state.reset();
    else if (n === 1) state.bold = true;
    else if (n === 2) state.dim = true;
    else if (n === 3) state.italic = true;
    else if (n === 4) state.underline = true;
    else if (n === 22) { state.bold = false; state.dim = false; }
    else if (n === 23) state.italic = false;
    else if (n === 24) state.underline = false;
    else if (n >= 30 && n <= 37) state.fg = {cls: `c${n - 30}`};
    else if (n >= 90 && n <= 97) state.fg = {cls: `c${n - 90}b`};
    else if (n === 39) state.fg = null;
    else if (n >= 40 && n <= 47) state.bg = {cls: `c${n - 40}`};
    else if (n >= 100 && n <= 107) state.bg = {cls: `c${n - 100}b`};
    else if (n === 49) state.bg = null;
    else if ((n === 38 || n === 48) && p[i + 1] === 5 && p[i + 2] !== undefined) {
      state[n === 38 ? 'fg' : 'bg'] = color256(p[i + 2] & 255); i += 2;
    } else if ((n === 38 || n === 48) && p[i + 1] === 2 && p[i + 4] !== undefined) {
      state[n === 38 ? 'fg' : 'bg'] = {rgb: `rgb(${p[i + 2] & 255},${p[i + 3] & 255},${p[i + 4] & 255})`}; i += 4;
    }
  }
}

/** Splits `text` into runs [{text, state}] starting from `state` (changed in place). */
export function ansiRuns(text, state) {
  const runs = [];
  let i = 0, start = 0;
  while (i < text.length) {
    if (text[i] !== ESC) { i++; continue; }
    if (i > start) runs.push({text: text.slice(start, i), state: state.copy()});
    if (text[i + 1] === '[') {
      let j = i + 2;
      while (j < text.length && !(text.charCodeAt(j) >= 0x40 && text.charCodeAt(j) <= 0x7e)) j++;
      if (text[j] === 'm') applySGR(state, text.slice(i + 2, j).split(/[;:]/).filter(s => s !== '').map(Number));
      i = j + 1;
    } else if (text[i + 1] === ']') {   // OSC: up to BEL or ESC \
      let j = i + 2;
      while (j < text.length && text[j] !== '\u0007' && !(text[j] === ESC && text[j + 1] === '\\')) j++;
      i = text[j] === '\u0007' ? j + 1 : j + 2;
    } else {
      i += 2;
    }
    start = i;
  }
  if (start < text.length) runs.push({text: text.slice(start), state: state.copy()});
  return runs;
}

/** A span (or a text node) for one run. */
export function runNode(run) {
  const s = run.state;
  if (s.plain) return document.createTextNode(run.text);
  const e = document.createElement('span');
  const cls = [];
  if (s.fg?.cls) cls.push('fg-' + s.fg.cls); else if (s.fg?.rgb) e.style.color = s.fg.rgb;
  if (s.bg?.cls) cls.push('bg-' + s.bg.cls); else if (s.bg?.rgb) e.style.backgroundColor = s.bg.rgb;
  if (s.bold) cls.push('b');
  if (s.dim) cls.push('dim');
  if (s.italic) cls.push('i');
  if (s.underline) cls.push('u');
  e.className = cls.join(' ');
  e.textContent = run.text;
  return e;
}

/** The text without escape sequences (for search and download). */
export function stripAnsi(text) {
  return text.indexOf(ESC) < 0 ? text : ansiRuns(text, new AnsiState()).map(r => r.text).join('');
}
