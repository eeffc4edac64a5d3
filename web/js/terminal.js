// A terminal-like pane for a task's output: stdout and stderr told apart, ANSI colours, follow
// mode that pauses when the user scrolls up, search, download. Chunks are queued and rendered
// once per animation frame, so thousands of chunks a second cost one layout per frame; the DOM
// keeps the last `maxLines` lines (all of the output stays in memory for search and download).

import {h} from './dom.js';
import {AnsiState, ansiRuns, runNode, stripAnsi} from './ansi.js';

export class Terminal {
  constructor({maxLines = 2000} = {}) {
    this.maxLines = maxLines;
    this.chunks = [];          // {kind, data}: everything received, for download and search
    this.bytes = 0;
    this.queue = [];
    this.scheduled = false;
    this.follow = true;
    this.linesShown = 0;
    this.linesDropped = 0;
    this.rendered = 0;         // chunks rendered (the benchmark reads it)
    this.current = {stdout: null, stderr: null, log: null};   // open line per stream
    this.ansi = {stdout: new AnsiState(), stderr: new AnsiState(), log: new AnsiState()};
    this.dropNote = h('div', {class: 'term-note', hidden: true});
    this.lines = h('div', {class: 'term-lines'});
    this.pane = h('div', {class: 'term', tabindex: '0', role: 'log', 'aria-label': 'task output'}, this.dropNote, this.lines);
    this.pane.addEventListener('scroll', () => this.onScroll());
    this.followButton = h('button', {type: 'button', class: 'small', onclick: () => this.setFollow(true)}, 'Follow');
    this.searchBox = h('input', {type: 'search', placeholder: 'search output', 'aria-label': 'search output',
                                 oninput: () => this.search(), onkeydown: e => { if (e.key === 'Enter') this.search(true); }});
    this.searchInfo = h('span', {class: 'muted'});
    this.sizeInfo = h('span', {class: 'muted'});
    this.downloadButton = h('button', {type: 'button', class: 'small', onclick: () => this.download()}, 'Download');
    this.toolbar = h('div', {class: 'term-bar'}, this.followButton, this.searchBox, this.searchInfo, this.sizeInfo, this.downloadButton);
    this.element = h('div', {class: 'term-wrap'}, this.toolbar, this.pane);
    this.setFollow(true);
  }

  /** Queues a chunk; it is drawn with the next animation frame. */
  write(kind, data) {
    if (typeof data !== 'string' || data === '') return;
    const k = kind === 'stderr' ? 'stderr' : kind === 'log' ? 'log' : 'stdout';
    this.chunks.push({kind: k, data});
    this.bytes += data.length;
    this.queue.push(this.chunks.length - 1);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    const frag = document.createDocumentFragment();
    for (const i of this.queue) this.render(this.chunks[i], frag);
    this.rendered += this.queue.length;
    this.queue = [];
    this.lines.appendChild(frag);
    const excess = this.linesShown - this.maxLines;
    if (excess > 0) {
      for (let i = 0; i < excess; i++) {
        const first = this.lines.firstChild;
        if (first === this.current.stdout || first === this.current.stderr || first === this.current.log) break;
        first.remove();
        this.linesShown--;
        this.linesDropped++;
      }
      this.dropNote.hidden = false;
      this.dropNote.textContent = `${this.linesDropped} earlier lines are not shown here: Download has all of the output`;
    }
    this.sizeInfo.textContent = `${this.chunks.length} chunks, ${(this.bytes / 1024).toFixed(1)} KiB`;
    if (this.follow) this.pane.scrollTop = this.pane.scrollHeight;
  }

  render(chunk, frag) {
    const parts = chunk.data.split('\n');
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) this.current[chunk.kind] = null;   // the newline ended the line
      if (parts[i] === '' && i === parts.length - 1) break;
      let line = this.current[chunk.kind];
      if (!line) {
        line = document.createElement('div');
        line.className = 'line ' + chunk.kind;
        this.current[chunk.kind] = line;
        this.linesShown++;
        frag.appendChild(line);
      }
      for (const run of ansiRuns(parts[i], this.ansi[chunk.kind])) line.appendChild(runNode(run));
    }
  }

  onScroll() {
    const atBottom = this.pane.scrollTop + this.pane.clientHeight >= this.pane.scrollHeight - 8;
    if (atBottom !== this.follow) this.setFollow(atBottom);
  }

  setFollow(on) {
    this.follow = on;
    this.followButton.disabled = on;
    this.followButton.textContent = on ? 'Following' : 'Follow (paused)';
    this.element.classList.toggle('paused', !on);
    if (on) this.pane.scrollTop = this.pane.scrollHeight;
  }

  /** The whole output as text, streams interleaved as they came, escapes removed. */
  text() { return this.chunks.map(c => stripAnsi(c.data)).join(''); }

  search(next = false) {
    const q = this.searchBox.value.toLowerCase();
    for (const e of this.lines.querySelectorAll('.hit')) e.classList.remove('hit');
    if (!q) { this.searchInfo.textContent = ''; return; }
    const total = this.text().toLowerCase().split(q).length - 1;
    const hits = [...this.lines.children].filter(l => l.textContent.toLowerCase().includes(q));
    hits.forEach(l => l.classList.add('hit'));
    this.searchInfo.textContent = `${total} matches${hits.length < total ? ` (${hits.length} lines shown)` : ''}`;
    if (hits.length) {
      this.hitIndex = next ? ((this.hitIndex || 0) + 1) % hits.length : 0;
      this.setFollow(false);
      hits[this.hitIndex].scrollIntoView({block: 'center'});
    }
  }

  download(name = 'output.txt') {
    const url = URL.createObjectURL(new Blob([this.text()], {type: 'text/plain'}));
    const a = h('a', {href: url, download: name, hidden: true});
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}
