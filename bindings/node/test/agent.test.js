'use strict';
// Agent against a hub played by node `ws` (Debian node-ws) on 127.0.0.1: the peer checks the
// agent.register signature as docs/protocol.md defines it, answers agent.registered (or
// AUTH_001), assigns tasks and reads what the agent sends back. Every test has a time limit;
// no assertion is about speed.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { once } = require('node:events');

const orc = require('../lib/index.js');
const { Agent, AuthError, HubError } = orc;
const { WebSocketServer } = require('/usr/share/nodejs/ws');

const T = { timeout: 20000 };
const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));

function envelope(type, payload, correlationId) {
  const env = { id: crypto.randomUUID(), type, version: '1.0', timestamp: Date.now(), payload };
  if (correlationId) env.correlationId = correlationId;
  return JSON.stringify(env);
}

/** A FIFO whose get() waits. */
class Inbox {
  constructor() { this.items = []; this.waiters = []; }
  put(v) { const w = this.waiters.shift(); if (w) w(v); else this.items.push(v); }
  get() { return this.items.length ? Promise.resolve(this.items.shift()) : new Promise((r) => this.waiters.push(r)); }
}

/** The hub side of /agent, just enough: one agent connection at a time. */
class FakeHub {
  constructor(keys) {
    this.keys = keys;
    this.registrations = [];
    this.inbox = new Inbox();     // envelopes after the registration, heartbeats apart
    this.closed = new Inbox();    // close codes of agent connections, in order
    this.registered = new Inbox();
    this.ws = null;
    this.path = null;
    this.assignedOnRegister = null;   // null: every inFlight task stays the agent's
    this.hold = null;                 // a Promise: agent.registered waits for it
  }

  async listen() {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    this.wss.on('connection', (ws, req) => this.handle(ws, req));
    await once(this.wss, 'listening');
    this.url = `ws://127.0.0.1:${this.wss.address().port}/agent`;
    return this;
  }

  close() {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((resolve) => this.wss.close(resolve));
  }

  checkSignature(p) {
    const key = this.keys[p.keyId];
    if (!key) return 'unknown key';
    const expected = crypto.createHmac('sha256', key).update(`${p.agentId}\n${p.timestamp}\n${p.nonce}`).digest('hex');
    const got = Buffer.from(String(p.signature ?? ''));
    if (got.length !== expected.length || !crypto.timingSafeEqual(got, Buffer.from(expected))) return 'bad signature';
    if (Math.abs(p.timestamp - Date.now()) > 300000) return 'stale timestamp';
    return null;
  }

  handle(ws, req) {
    this.path = req.url;
    let first = true;
    ws.on('close', (code) => this.closed.put(code));
    ws.on('message', (data) => {
      const env = JSON.parse(data.toString());
      if (first) {
        first = false;
        assert.equal(env.type, 'agent.register');
        const p = env.payload;
        this.registrations.push(p);
        const problem = this.checkSignature(p);
        if (problem) {
          ws.send(envelope('error', { code: 'AUTH_001', message: problem, timestamp: Date.now() }, env.id));
          ws.close(1008, 'AUTH_001');
          return;
        }
        const inFlight = (p.inFlight ?? []).map((t) => t.taskId);
        const answer = () => {
          ws.send(envelope('agent.registered', {
            success: true, agentId: p.agentId, protocol: 1, heartbeatIntervalMs: 60000, leaseMs: 15000,
            assignedTasks: this.assignedOnRegister ?? inFlight,
          }, env.id));
          this.ws = ws;
          this.registered.put(p);
        };
        if (this.hold) this.hold.then(answer);
        else answer();
        return;
      }
      if (env.type !== 'agent.heartbeat') this.inbox.put(env);
    });
  }

  send(type, payload, correlationId) {
    this.ws.send(envelope(type, payload, correlationId));
  }

  assign(taskId, attempt = 1, parameters = { command: 'echo hi' }, task = {}) {
    this.send('task.assign', { taskId, attempt, agentId: 'a1', task: { type: 'shell', ...task, parameters } });
  }

  async next(type) {
    const env = await this.inbox.get();
    if (type) assert.equal(env.type, type, JSON.stringify(env));
    return env;
  }
}

// Hubs and agents are closed after each test, passed or failed, so a failure never leaves the
// process alive.
async function hubFor(t, keys) {
  const hub = await new FakeHub(keys).listen();
  t.after(() => hub.close());
  return hub;
}

function makeAgent(t, url, extra = {}) {
  const agent = newAgent(url, extra);
  t.after(() => agent.close());
  return agent;
}

function newAgent(url, extra) {
  return new Agent({
    url, agentId: 'a1', keyId: 'k1', secret: SECRET.toString('hex'),
    capabilities: ['shell', 'python'], name: 'builder-1', version: '1.2.0', metadata: { zone: 'eu' },
    maxConcurrency: 4, reconnectInitialDelay: 20, reconnectMaxDelay: 100, ...extra,
  });
}

function throwsCode(fn, code) {
  assert.throws(fn, (e) => {
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test('registers with a valid signature and runs a task', T, async (t) => {
  const hub = await hubFor(t, { k1: SECRET });
  const agent = makeAgent(t, hub.url);
  const states = [];
  agent.on('state', (s) => states.push(s));
  const errors = [];
  agent.on('error', (e) => errors.push(e));
  assert.equal(agent.state, 'connecting');
  assert.equal(await agent.start(), agent);
  assert.equal(agent.state, 'registered');
  assert.deepEqual(states, ['registered']);
  assert.equal(hub.path, '/agent');
  const reg = hub.registrations[0];
  assert.equal(hub.checkSignature(reg), null);
  assert.deepEqual([reg.agentId, reg.keyId, reg.name, reg.version], ['a1', 'k1', 'builder-1', '1.2.0']);
  assert.deepEqual(reg.capabilities, ['shell', 'python']);
  assert.deepEqual(reg.metadata, { zone: 'eu' });
  assert.equal(reg.maxConcurrency, 4);
  assert.match(reg.nonce, /^[0-9a-f]{16,}$/);

  const seen = [];
  agent.on('task', (t) => seen.push(t.id));
  hub.assign('t1', 1, { command: 'echo hi', env: { A: '1' } }, { tool: 'custom' });
  const tasks = agent.tasks();
  const { value: task } = await tasks.next();
  assert.deepEqual(seen, ['t1']);
  assert.equal(task.id, 't1');
  assert.equal(task.attempt, 1);
  assert.deepEqual(task.params, { command: 'echo hi', env: { A: '1' } });
  assert.equal(task.task.tool, 'custom');
  assert.equal(task.payload.agentId, 'a1');
  assert.equal(task.cancelled, false);

  task.accept();
  assert.deepEqual((await hub.next('task.accepted')).payload, { taskId: 't1', attempt: 1 });
  const chunks = ['line 1\n', 'é✓🎵\n', Buffer.from('bytes line\n'), ''];
  for (const c of chunks) task.stream(c);
  task.stream('warning\n', 'stderr');
  task.progress(50, 'half way');
  task.progress(100);
  throwsCode(() => task.progress(150), 'ORC_EINVAL');
  throwsCode(() => task.progress('50'), 'ORC_EINVAL');
  throwsCode(() => task.stream('x', 'video'), 'ORC_EINVAL');
  throwsCode(() => task.stream(Buffer.from([0xff, 0xfe])), 'ORC_EINVAL');
  throwsCode(() => task.stream(42), 'ORC_EINVAL');
  throwsCode(() => task.result({ success: 'yes' }), 'ORC_EINVAL');
  throwsCode(() => task.result({ result: () => 1 }), 'ORC_EINVAL');
  task.result({ result: { exitCode: 0, lines: 3 } });
  assert.equal(task.done, true);

  const got = [];
  for (let i = 0; i < 8; i++) got.push(await hub.next());
  assert.deepEqual(got.map((e) => e.type), [...Array(5).fill('task.stream'), 'task.progress', 'task.progress', 'task.result']);
  const streams = got.slice(0, 5).map((e) => e.payload);
  assert.deepEqual(streams.map((s) => s.seq), [0, 1, 2, 3, 4]);
  assert.deepEqual(streams.map((s) => s.data), ['line 1\n', 'é✓🎵\n', 'bytes line\n', '', 'warning\n']);
  assert.deepEqual(streams.map((s) => s.type), ['stdout', 'stdout', 'stdout', 'stdout', 'stderr']);
  assert.ok(streams.every((s) => s.taskId === 't1' && s.attempt === 1));
  assert.equal(got[5].payload.progress, 50);
  assert.equal(got[5].payload.currentStep, 'half way');
  assert.equal(got[6].payload.currentStep, undefined);
  const result = got[7].payload;
  assert.equal(result.success, true);
  assert.deepEqual(result.result, { exitCode: 0, lines: 3 });
  assert.ok(Number.isInteger(result.duration) && result.duration >= 0);
  throwsCode(() => task.stream('late'), 'ORC_ENOTFOUND');

  // An error the hub answers to one of the agent's messages reaches 'error'.
  hub.assign('t2', 1);
  const { value: t2 } = await tasks.next();
  t2.progress(10);
  const prog = await hub.next('task.progress');
  const errored = once(agent, 'error');
  hub.send('error', { code: 'PARAM_001', message: 'task.progress: no', details: { field: 'progress', taskId: 't2', attempt: 1 }, timestamp: Date.now() }, prog.id);
  const [err] = await errored;
  assert.ok(err instanceof HubError);
  assert.equal(err.code, 'PARAM_001');
  assert.equal(err.hubMessage, 'task.progress: no');
  assert.equal(err.taskId, 't2');   // the library names the task from the error's details
  assert.equal(err.attempt, 1);
  assert.equal(err.payload.details.field, 'progress');

  const closing = once(agent, 'close');
  await agent.close();
  await closing;
  assert.equal(await hub.closed.get(), 1000);
  assert.deepEqual(await tasks.next(), { value: undefined, done: true });
  throwsCode(() => t2.accept(), 'ORC_ECLOSED');
  assert.equal(states.at(-1), 'closed');
});

test('cancel and input reach the task; reject', T, async (t) => {
  const hub = await hubFor(t, { k1: SECRET });
  const agent = makeAgent(t, hub.url);
  await agent.start();
  const tasks = agent.tasks();
  hub.assign('t9', 2);
  const { value: task } = await tasks.next();
  task.accept();
  await hub.next('task.accepted');
  const heard = [];
  agent.on('input', (t, text) => heard.push([t.id, text]));
  hub.send('worker.input', { agentId: 'a1', taskId: 't9', input: 'yes' });
  hub.send('worker.input', { agentId: 'a1', taskId: 't9', input: { k: [1] } });
  const inputs = task.inputs();
  assert.equal((await inputs.next()).value, 'yes');
  assert.deepEqual(JSON.parse((await inputs.next()).value), { k: [1] });
  assert.deepEqual(heard.map((h) => h[0]), ['t9', 't9']);

  const cancelled = once(task, 'cancel');
  const agentCancel = once(agent, 'cancel');
  hub.send('task.cancel', { taskId: 't9', attempt: 2 });
  const [reason] = await cancelled;
  assert.ok(reason);
  assert.equal((await agentCancel)[0], task);
  assert.equal(task.cancelled, true);
  assert.equal(task.signal.aborted, true);
  assert.equal(task.done, true);
  assert.deepEqual(await inputs.next(), { value: undefined, done: true });
  throwsCode(() => task.result({ success: false, error: 'too late' }), 'ORC_ENOTFOUND');

  hub.assign('t10', 1);
  const { value: t10 } = await tasks.next();
  t10.reject('busy');
  assert.deepEqual((await hub.next('task.rejected')).payload, { taskId: 't10', attempt: 1, reason: 'busy' });

  // A cancel for another attempt is not this one's.
  hub.assign('t9', 3);
  const { value: t3 } = await tasks.next();
  hub.send('task.cancel', { taskId: 't9', attempt: 2 });
  t3.result({ success: false, error: 'exit 2' });
  const res = (await hub.next('task.result')).payload;
  assert.deepEqual([res.attempt, res.success, res.error], [3, false, 'exit 2']);
  assert.equal(t3.cancelled, false);
  await agent.close();
});

test('reconnects listing the tasks in flight; a re-assigned task is cancelled', T, async (t) => {
  const hub = await hubFor(t, { k1: SECRET });
  const agent = makeAgent(t, hub.url);
  await agent.start();
  await hub.registered.get();
  const tasks = agent.tasks();
  hub.assign('keep', 1);
  hub.assign('lose', 1);
  const keep = (await tasks.next()).value;
  const lose = (await tasks.next()).value;
  hub.assignedOnRegister = ['keep'];
  const lost = once(lose, 'cancel');
  hub.ws.close(1001, 'hub restarting');
  assert.equal(await hub.closed.get(), 1001);
  const reg = await hub.registered.get();
  assert.deepEqual(reg.inFlight.map((t) => t.taskId).sort(), ['keep', 'lose']);
  assert.equal(hub.checkSignature(reg), null);
  assert.notEqual(reg.nonce, hub.registrations[0].nonce);
  const [reason] = await lost;
  assert.match(reason, /re-assigned/);
  assert.equal(keep.cancelled, false);
  keep.result();
  assert.equal((await hub.next('task.result')).payload.taskId, 'keep');
  await agent.close();
});

test('fails over round robin to the next hub, which keeps its task', T, async (t) => {
  // A drops the agent: it moves on to B (not back to A, still listening). B holds its
  // agent.registered while the agent sends: t1's chunks and result reach B after it, in order,
  // once; B keeps t1, not t2 (cancelled, its chunk dropped). B goes away: back to A.
  const a = await hubFor(t, { k1: SECRET });
  const b = await hubFor(t, { k1: SECRET });
  const agent = makeAgent(t, undefined, { urls: [a.url, b.url] });
  const moves = [];
  const states = [];
  agent.on('failover', (url, reason) => moves.push([url, reason]));
  agent.on('state', (state, reason, code, url) => states.push([state, url]));
  assert.deepEqual(agent.urls, [a.url, b.url]);
  await agent.start();
  await a.registered.get();
  assert.equal(agent.url, a.url);
  assert.equal(agent.urlIndex, 0);
  const tasks = agent.tasks();
  a.assign('t1', 1);
  a.assign('t2', 4);
  const t1 = (await tasks.next()).value;
  const t2 = (await tasks.next()).value;
  t1.stream('c0\n');
  assert.equal((await a.next('task.stream')).payload.seq, 0);

  let release;
  b.hold = new Promise((r) => { release = r; });
  b.assignedOnRegister = ['t1'];
  const cancelled = once(t2, 'cancel');
  a.ws.close(1001, 'hub going away');
  assert.equal(await a.closed.get(), 1001);
  for (let i = 0; i < 1000 && b.registrations.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const reg = b.registrations[0];
  assert.deepEqual(reg.inFlight, [{ taskId: 't1', attempt: 1 }, { taskId: 't2', attempt: 4 }]);
  assert.equal(b.checkSignature(reg), null);
  assert.equal(agent.url, b.url);
  assert.equal(agent.urlIndex, 1);
  t1.stream('c1\n');
  t2.stream('lost\n');
  t1.stream('c2\n', 'stderr');
  t1.result({ result: { exitCode: 0 } });
  release();
  await b.registered.get();
  const [reason] = await cancelled;
  assert.match(reason, /re-assigned/);
  assert.equal(t1.cancelled, false);
  const got = [await b.next(), await b.next(), await b.next()];
  assert.deepEqual(got.map((e) => [e.type, e.payload.taskId]), [['task.stream', 't1'], ['task.stream', 't1'], ['task.result', 't1']]);
  assert.deepEqual(got.slice(0, 2).map((e) => [e.payload.seq, e.payload.data]), [[1, 'c1\n'], [2, 'c2\n']]);
  assert.deepEqual(got[2].payload.result, { exitCode: 0 });
  b.assign('t3', 1);
  const t3 = (await tasks.next()).value;
  t3.accept();
  assert.equal((await b.next('task.accepted')).payload.taskId, 't3');   // nothing more of t1, t2
  assert.equal(a.registrations.length, 1);
  assert.equal(moves.length, 1);
  assert.equal(moves[0][0], b.url);
  assert.ok(moves[0][1].startsWith(a.url) && moves[0][1].includes('1001') && moves[0][1].endsWith(`next: ${b.url}`), moves[0][1]);

  // B goes away too: round robin brings the agent back to A, the first.
  const back = once(agent, 'registered');
  b.ws.close(1011, 'hub crashed');
  const again = await a.registered.get();
  assert.deepEqual(again.inFlight, [{ taskId: 't3', attempt: 1 }]);
  await back;
  assert.equal(agent.url, a.url);
  assert.deepEqual(moves.map((m) => m[0]), [b.url, a.url]);
  assert.deepEqual(states.filter(([s]) => s !== 'connecting'),
    [['registered', a.url], ['disconnected', a.url], ['registered', b.url], ['disconnected', b.url], ['registered', a.url]]);
  t3.result();
  assert.equal((await a.next('task.result')).payload.taskId, 't3');
  await agent.close();
});

test('several URLs: argument errors', T, async () => {
  const base = { agentId: 'a1', keyId: 'k1', secret: SECRET };
  throwsCode(() => new Agent({ ...base, urls: [] }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, urls: 'ws://127.0.0.1:1/agent' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, urls: ['ws://127.0.0.1:1/agent', 7] }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, url: 'ws://127.0.0.1:1/agent', urls: ['ws://127.0.0.1:2/agent'] }), 'ORC_EINVAL');
  assert.throws(() => new Agent({ ...base, urls: ['ws://127.0.0.1:1/agent', 'http://127.0.0.1:2/agent'] }),
    (e) => e.code === 'ORC_EINVAL' && e.message.includes('http://127.0.0.1:2/agent'));
  const a = new Agent({ ...base, urls: ['ws://127.0.0.1:1/agent', 'ws://127.0.0.1:2/agent'] });
  assert.equal(a.url, 'ws://127.0.0.1:1/agent');
  assert.equal(a.urlIndex, 0);
  await a.close();
  const one = new Agent({ ...base, url: 'ws://127.0.0.1:1/agent' });
  assert.deepEqual(one.urls, ['ws://127.0.0.1:1/agent']);
  await one.close();
});

// node --expose-gc gives global.gc (the ctest entry passes it); otherwise enable it now.
function collector() {
  if (typeof global.gc === 'function') return global.gc;
  require('node:v8').setFlagsFromString('--expose-gc');
  return require('node:vm').runInNewContext('gc');
}

test('the library carries the tasks in flight; it lets go of them', T, async (t) => {
  // The addon keeps no map of tasks: each attempt's slot in the library holds its AgentTask
  // until the library lets go of it. A slot never let go would keep every task alive.
  const gc = collector();
  const hub = await hubFor(t, { k1: SECRET });
  const agent = makeAgent(t, hub.url);
  await agent.start();
  const tasks = agent.tasks();
  const refs = [];
  for (let i = 0; i < 200; i++) {
    hub.assign(`r${i}`, 1);
    const { value: task } = await tasks.next();
    refs.push(new WeakRef(task));
    task.result();
    await hub.next('task.result');
  }
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(refs.filter((r) => r.deref() !== undefined).length < 20);

  // A task still in flight when the agent closes: its inputs() end (the library let go).
  hub.assign('open', 1);
  const { value: open } = await tasks.next();
  const waiting = open.inputs().next();
  await agent.close();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  assert.equal(open.done, false);   // not finished by the agent: only its inputs ended
});

test('a refused registration rejects start() with AuthError', T, async (t) => {
  const hub = await hubFor(t, { k1: Buffer.from('another secret') });
  const agent = makeAgent(t, hub.url);
  await assert.rejects(agent.start(), (e) => {
    assert.ok(e instanceof AuthError);
    assert.equal(e.code, 'AUTH_001');
    assert.match(e.message, /bad signature/);
    return true;
  });
  assert.equal(agent.state, 'failed');
  await hub.closed.get();   // the connection is over
  await assert.rejects(agent.tasks().next(), AuthError);
  assert.equal(hub.registrations.length, 1);
  await agent.close();
  assert.equal(agent.state, 'closed');
});

test('argument errors', T, async (t) => {
  const url = 'ws://127.0.0.1:1/agent';
  const base = { url, agentId: 'a1', keyId: 'k1', secret: SECRET };
  throwsCode(() => new Agent(), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, secret: 'not hex' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, secret: 'abc' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, secret: Buffer.alloc(0) }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, secret: 42 }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, capabilities: 'shell' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, capabilities: ['shell', 7] }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, maxConcurrency: 0 }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, url: 'http://127.0.0.1:1/agent' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, agentId: '' }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, keyId: undefined }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, metadata: [1] }), 'ORC_EINVAL');
  throwsCode(() => new Agent({ ...base, url: 'wss://127.0.0.1:1/agent', tlsCa: '/nonexistent/ca.pem' }), 'ORC_EIO');
  const a = new Agent({ ...base, secret: '0A0b' });
  assert.equal(a.state, 'connecting');
  await a.close();
  assert.equal(a.state, 'closed');
  await assert.rejects(a.start(), (e) => e.code === 'ORC_ECLOSED');
});
