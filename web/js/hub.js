// The hub's own web protocol (docs/protocol.md): one WebSocket to /web with JSON envelopes,
// requests answered by correlationId, events by type. The connection comes back on its own
// after a drop (backoff 0.25 s to 5 s) and every session being watched is joined again from the
// last offset seen, so the replay fills exactly what was missed: no gap, no duplicate (an event
// at or below the last offset is dropped). The token is refreshed with auth.refresh before it
// expires.

export class HubError extends Error {
  constructor(payload) {
    super(payload?.message || 'error');
    this.code = payload?.code || 'SYS_001';
    this.details = payload?.details || {};
  }
}

let counter = 0;
function newId() {
  counter += 1;
  return `${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 10)}`;
}

export class Hub {
  /** auth: {token, expiresAt (s), user, role}; onAuth(auth|null) when it changes or is refused. */
  constructor(auth, {onState, onAuth} = {}) {
    this.auth = auth;
    this.onState = onState || (() => {});
    this.onAuth = onAuth || (() => {});
    this.pending = new Map();
    this.handlers = new Map();
    /** sessionId -> {lastOffset, listeners:Set} */
    this.sessions = new Map();
    this.state = 'connecting';
    this.attempt = 0;
    this.closedByUs = false;
    this.refreshTimer = null;
    this.connect();
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/web?token=${encodeURIComponent(this.auth.token)}`;
  }

  setState(s, why = '') {
    this.state = s;
    this.onState(s, why);
  }

  connect() {
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState('open');
      this.scheduleRefresh();
      for (const [sid, s] of this.sessions) this.join(sid, s).catch(e => this.emit('session.error', {sessionId: sid, error: e}));
      this.emit('connected', {});
    };
    ws.onmessage = ev => this.receive(ev.data);
    ws.onclose = ev => {
      if (this.ws !== ws) return;
      for (const [, p] of this.pending) p.reject(new HubError({code: 'CONN_001', message: 'the connection to the hub was lost'}));
      this.pending.clear();
      if (this.closedByUs) { this.setState('closed'); return; }
      if (ev.code === 1008) {   // the hub refused the identity: expired, revoked, removed
        this.setState('closed', ev.reason || 'refused');
        this.onAuth(null);
        return;
      }
      this.setState('reconnecting', ev.code === 1001 ? 'the hub is restarting' : 'connection lost');
      const delay = Math.min(5000, 250 * 2 ** Math.min(this.attempt, 5));
      this.attempt += 1;
      setTimeout(() => { if (!this.closedByUs) this.connect(); }, delay);
    };
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.refreshTimer);
    this.ws?.close(1000, 'logout');
  }

  receive(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (m.correlationId && this.pending.has(m.correlationId)) {
      const p = this.pending.get(m.correlationId);
      this.pending.delete(m.correlationId);
      if (m.type === 'error') p.reject(new HubError(m.payload)); else p.resolve(m);
      return;
    }
    const offset = m.headers?.offset;
    if (offset !== undefined) {
      const sid = m.payload?.sessionId || this.sessionOfTask(m.payload?.taskId);
      const s = sid ? this.sessions.get(sid) : null;
      if (s) {
        // Until the join is answered, what arrives was published before the hub took the join,
        // and its replay (which follows the answer) holds it: dropped here, shown from there.
        if (s.joining) return;
        if (offset <= s.lastOffset) return;   // seen already (a replay overlapping live events)
        s.lastOffset = offset;
        for (const fn of s.listeners) fn(m);
        return;
      }
    }
    this.emit(m.type, m.payload || {}, m);
  }

  sessionOfTask(taskId) {
    if (!taskId) return null;
    for (const [sid, s] of this.sessions) if (s.tasks.has(taskId)) return sid;
    return null;
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, payload, m) {
    for (const fn of this.handlers.get(type) || []) fn(payload, m);
    for (const fn of this.handlers.get('*') || []) fn(type, payload, m);
  }

  /** Resolves once the connection is open (at once when it is); rejects after `timeoutMs`. */
  ready(timeoutMs) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    if (this.closedByUs || this.state === 'closed') return Promise.reject(new HubError({code: 'CONN_001', message: 'not connected to the hub'}));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new HubError({code: 'CONN_001', message: 'not connected to the hub'})); }, timeoutMs);
      const off = this.on('connected', () => { clearTimeout(timer); off(); resolve(); });
    });
  }

  /** Sends a request (waiting for the connection while it opens or comes back) and resolves
   *  with the answer, or rejects with the hub's error. */
  async request(type, payload = {}, {timeoutMs = 30000} = {}) {
    await this.ready(timeoutMs);
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new HubError({code: 'CONN_001', message: 'not connected to the hub'}));
        return;
      }
      const id = newId();
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new HubError({code: 'CONN_002', message: `${type}: no answer within ${timeoutMs / 1000} s`}));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: m => { clearTimeout(timer); resolve(m); },
        reject: e => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({id, type, timestamp: Date.now(), version: '1.0', payload}));
    });
  }

  /** Watches a session: `fn(envelope)` for each of its events, in offset order, the kept ones
   *  first. `tasks` are the task ids it holds (their events are routed here). */
  async watch(sessionId, taskIds, fn) {
    let s = this.sessions.get(sessionId);
    if (!s) {
      s = {lastOffset: 0, listeners: new Set(), tasks: new Set()};
      this.sessions.set(sessionId, s);
    }
    for (const t of taskIds) s.tasks.add(t);
    s.listeners.add(fn);
    if (s.listeners.size === 1) await this.join(sessionId, s);
    return () => {
      s.listeners.delete(fn);
      if (s.listeners.size === 0) {
        this.sessions.delete(sessionId);
        this.request('session.leave', {sessionId}).catch(() => {});
      }
    };
  }

  async join(sessionId, s) {
    s.joining = true;
    try {
      return await this.request('session.join', {sessionId, lastOffset: s.lastOffset});
    } catch (e) {
      // What came after the last offset is no longer kept: resume from the oldest kept event
      // (the caller is told how many were lost).
      if (e.code === 'PARAM_001' && e.details?.oldestOffset !== undefined && s.lastOffset < e.details.oldestOffset - 1) {
        const lost = e.details.oldestOffset - 1 - s.lastOffset;
        s.lastOffset = e.details.oldestOffset - 1;
        const r = await this.request('session.join', {sessionId, lastOffset: s.lastOffset});
        r.lost = lost;
        return r;
      }
      throw e;
    } finally {
      s.joining = false;
    }
  }

  /** auth.refresh at 80 % of the token's remaining life. */
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    const left = this.auth.expiresAt * 1000 - Date.now();
    this.refreshTimer = setTimeout(async () => {
      try {
        const r = await this.request('auth.refresh', {});
        this.auth = {...this.auth, token: r.payload.token, expiresAt: r.payload.expiresAt};
        this.onAuth(this.auth);
        this.scheduleRefresh();
      } catch (e) {
        if (e.code === 'AUTH_001') this.onAuth(null); else this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 5000);
      }
    }, Math.max(1000, left * 0.8));
  }
}

/** POST /auth/login: {token, expiresAt, user, role}, or throws with the hub's message. */
export async function login(user, password) {
  const r = await fetch('/auth/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify({user, password})});
  let body = {};
  try { body = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) {
    const e = new HubError(body);
    e.status = r.status;
    e.retryAfter = Number(r.headers.get('Retry-After')) || 0;
    throw e;
  }
  return body;
}
