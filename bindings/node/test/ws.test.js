'use strict';
// WebSocket Server and Client: real sockets on 127.0.0.1, against node `ws` (Debian node-ws)
// and against each other. Every test has a time limit; no assertion is about speed.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

const orc = require('../lib/index.js');
const { Server, Client, Runtime, Queue } = orc;
const WebSocket = require('/usr/share/nodejs/ws');
const { WebSocketServer } = WebSocket;

const T = { timeout: 20000 };

function throwsWith(fn, code, pattern) {
  assert.throws(fn, (e) => {
    assert.equal(e.code, code);
    assert.equal(e.errno, orc.codes[code]);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

async function wsServer(options = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  await once(wss, 'listening');
  return wss;
}

function closeWss(wss) {
  for (const c of wss.clients) c.terminate();
  return new Promise((resolve) => wss.close(resolve));
}

async function wsClient(url, options) {
  const c = new WebSocket(url, options);
  await once(c, 'open');
  return c;
}

async function echoServer(options = {}) {
  const server = new Server({ port: 0, ...options });
  server.on('message', (conn, data) => conn.send(data));
  const port = await server.listen();
  return { server, port, url: `ws://127.0.0.1:${port}` };
}

const big = (n, seed) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

// --------------------------------------------------------------------- our Server, ws client

test('Server with ws clients: connection fields, echo of text and binary, server events', T, async () => {
  const { server, port } = await echoServer({ subprotocols: ['chat.v2', 'chat.v1'], pingInterval: 0 });
  const conns = [];
  server.on('connection', (c) => conns.push(c));
  const messages = [];
  server.on('message', (conn, data, isBinary) => messages.push([conn.id, data, isBinary]));

  const c = await wsClient(`ws://127.0.0.1:${port}/agents?x=1`, ['chat.v1']);
  assert.equal(c.protocol, 'chat.v1');
  c.send('héllo');
  const [text, textIsBinary] = await once(c, 'message');
  assert.equal(text.toString(), 'héllo');
  assert.equal(textIsBinary, false);
  c.send(Buffer.from([0, 1, 2, 255]));
  const [bin, binIsBinary] = await once(c, 'message');
  assert.deepEqual([...bin], [0, 1, 2, 255]);
  assert.equal(binIsBinary, true);

  assert.equal(conns.length, 1);
  const conn = conns[0];
  assert.equal(conn.path, '/agents');
  assert.equal(conn.subprotocol, 'chat.v1');
  assert.match(conn.remoteAddress, /^127\.0\.0\.1:\d+$/);
  assert.equal(typeof conn.id, 'number');
  assert.deepEqual(messages, [[conn.id, 'héllo', false], [conn.id, Buffer.from([0, 1, 2, 255]), true]]);
  assert.equal(server.connectionCount, 1);
  const st = conn.stats();
  assert.equal(st.messagesIn, 2);
  assert.ok(st.bytesIn > 0 && st.bytesOut > 0);

  const pong = once(conn, 'pong');
  conn.ping();
  const [rtt] = await pong;
  assert.ok(rtt > 0);

  const closed = once(c, 'close');
  await server.close(1001, 'bye');
  const [code, reason] = await closed;
  assert.equal(code, 1001);
  assert.equal(reason.toString(), 'bye');
  assert.equal(conn.closed, true);
});

test('Server async iterator yields connection, message and disconnect events in order', T, async () => {
  const server = new Server({ port: 0 });
  const port = await server.listen();
  const seen = [];
  const done = (async () => {
    for await (const ev of server) {
      seen.push([ev.type, ev.data ?? ev.code ?? null]);
      if (ev.type === 'disconnect') break;
    }
  })();
  const c = await wsClient(`ws://127.0.0.1:${port}/`);
  for (let i = 0; i < 50; i++) c.send(`m${i}`);
  c.close(4000, 'done');
  await done;
  assert.deepEqual(seen, [['connection', null], ...Array.from({ length: 50 }, (_, i) => ['message', `m${i}`]), ['disconnect', 4000]]);
  await server.close();
});

test('broadcast reaches every ws client; the iterator ends when the server closes', T, async () => {
  const server = new Server({ port: 0 });
  const port = await server.listen();
  const clients = await Promise.all([1, 2, 3].map(() => wsClient(`ws://127.0.0.1:${port}/`)));
  while (server.connectionCount < 3) await sleep(5);
  const got = clients.map((c) => once(c, 'message'));
  server.broadcast('to all');
  for (const [data] of await Promise.all(got)) assert.equal(data.toString(), 'to all');
  const it = server[Symbol.asyncIterator]();
  const closing = server.close();
  const events = [];
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    events.push(r.value.type);
  }
  await closing;
  // The first iterator also gets what happened before it started (the backlog).
  assert.deepEqual(events, ['connection', 'connection', 'connection', 'disconnect', 'disconnect', 'disconnect']);
});

test('permessage-deflate on and off with ws, 1 MiB text and binary both ways', T, async () => {
  for (const deflate of [false, true]) {
    const { server, port } = await echoServer({ deflate, maxMessageSize: 4 << 20 });
    const c = await wsClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: deflate, maxPayload: 4 << 20 });
    assert.equal(c.extensions.includes('permessage-deflate'), deflate, `deflate ${deflate}: ${c.extensions}`);
    const bin = big(1 << 20, deflate ? 7 : 3);
    c.send(bin);
    const [echoed, isBinary] = await once(c, 'message');
    assert.equal(isBinary, true);
    assert.ok(bin.equals(echoed));
    const text = 'ab€'.repeat((1 << 20) / 5);
    c.send(text);
    const [echoedText, textBinary] = await once(c, 'message');
    assert.equal(textBinary, false);
    assert.equal(echoedText.toString(), text);
    c.close();
    await server.close();
  }
});

// --------------------------------------------------------------------- our Client, ws server

test('Client against a ws server: open, messages, state events, close code', T, async () => {
  const wss = await wsServer();
  const serverSide = once(wss, 'connection');
  const url = `ws://127.0.0.1:${wss.address().port}/feed`;
  const c = new Client(url, { headers: { Authorization: 'Bearer t0k' }, subprotocols: ['p1'] });
  wss.options.handleProtocols = (set) => (set.has('p1') ? 'p1' : false);
  const states = [];
  c.on('state', (s) => states.push(s));
  const opened = once(c, 'open');
  assert.equal(await c.connect(), c);
  await opened;
  const [peer, req] = await serverSide;
  assert.equal(req.url, '/feed');
  assert.equal(req.headers.authorization, 'Bearer t0k');
  assert.equal(c.state, 'open');

  peer.send('text from ws');
  peer.send(Buffer.from('bytes'));
  const got = [];
  for await (const m of c) {
    got.push([m.isBinary, m.isBinary ? m.data.toString() : m.data]);
    if (got.length === 2) break;
  }
  assert.deepEqual(got, [[false, 'text from ws'], [true, 'bytes']]);

  c.send('to ws');
  const [data] = await once(peer, 'message');
  assert.equal(data.toString(), 'to ws');

  const peerClosed = once(peer, 'close');
  const closeEvent = once(c, 'close');
  await c.close(4001, 'client done');
  const [code, reason] = await peerClosed;
  assert.equal(code, 4001);
  assert.equal(reason.toString(), 'client done');
  const [ccode] = await closeEvent;
  assert.equal(ccode, 4001);
  assert.deepEqual(states, ['connecting', 'open', 'closing', 'closed']);
  assert.equal(c.state, 'closed');
  throwsWith(() => c.send('late'), 'ORC_ECLOSED');
  await closeWss(wss);
});

test('Client sees the close code a ws server sends; the iterator then ends', T, async () => {
  const wss = await wsServer();
  wss.on('connection', (peer) => {
    peer.send('last words');
    peer.close(4002, 'go away');
  });
  const c = new Client(`ws://127.0.0.1:${wss.address().port}/`);
  const closeEvent = once(c, 'close');
  await c.connect();
  // The message may arrive before the loop starts: it waits in the backlog for the first
  // iterator.
  const got = [];
  for await (const m of c) got.push(m.data);
  assert.deepEqual(got, ['last words']);
  const [code, reason, clean] = await closeEvent;
  assert.equal(code, 4002);
  assert.equal(reason, 'go away');
  assert.equal(clean, true);
  assert.equal(c.state, 'closed');
  await closeWss(wss);
});

test('the backlog before the first iteration is bounded: the oldest are dropped and counted', T, async () => {
  const wss = await wsServer();
  wss.on('connection', (peer) => {
    for (let i = 0; i < 5; i++) peer.send(`m${i}`);
    peer.close(1000);
  });
  const c = new Client(`ws://127.0.0.1:${wss.address().port}/`, { iteratorBacklog: 2 });
  await c.connect();
  await once(c, 'closed');
  const got = [];
  for await (const m of c) got.push(m.data);
  assert.deepEqual(got, ['m3', 'm4']);
  assert.equal(c.droppedBeforeIteration, 3);
  await closeWss(wss);
});

test('Client with deflate against ws, 1 MiB binary', T, async () => {
  const wss = await wsServer({ perMessageDeflate: true, maxPayload: 4 << 20 });
  let ext = null;
  wss.on('connection', (peer) => {
    ext = peer.extensions;
    peer.on('message', (d, isBinary) => peer.send(d, { binary: isBinary }));
  });
  const c = new Client(`ws://127.0.0.1:${wss.address().port}/`, { deflate: true, maxMessageSize: 4 << 20 });
  await c.connect();
  assert.match(ext, /permessage-deflate/);
  const bin = big(1 << 20, 11);
  c.send(bin);
  const [echoed, isBinary] = await once(c, 'message');
  assert.equal(isBinary, true);
  assert.ok(bin.equals(echoed));
  await c.close();
  await closeWss(wss);
});

// ---------------------------------------------------------------- our Server, our Client

test('our Client and our Server: echo, deflate, ordering of 2000 messages', T, async () => {
  for (const deflate of [false, true]) {
    const { server, url } = await echoServer({ deflate });
    const c = new Client(`${url}/`, { deflate });
    await c.connect();
    const n = 2000;
    for (let i = 0; i < n; i++) c.send(i % 2 ? `t${i}` : Buffer.from(`b${i}`));
    let i = 0;
    for await (const m of c) {
      assert.equal(m.isBinary, i % 2 === 0);
      assert.equal(m.isBinary ? m.data.toString() : m.data, i % 2 ? `t${i}` : `b${i}`);
      if (++i === n) break;
    }
    const st = c.stats();
    assert.equal(st.messagesIn, n);
    await c.close();
    await server.close();
  }
});

test('backpressure: send returns false above the high watermark and drain fires', T, async () => {
  // A ws client that stops reading: our server's send buffer fills.
  const server = new Server({ port: 0, highWatermark: 256 << 10, lowWatermark: 64 << 10, maxBuffered: 64 << 20 });
  const port = await server.listen();
  const connP = once(server, 'connection');
  const peer = await wsClient(`ws://127.0.0.1:${port}/`);
  const [conn] = await connP;
  peer._socket.pause();
  const chunk = big(64 << 10, 1);
  let sent = 0;
  let accepted = true;
  while (accepted && sent < 2000) {
    accepted = conn.send(chunk);
    sent++;
  }
  assert.equal(accepted, false, 'send returned false before 2000 chunks of 64 KiB');
  assert.ok(conn.bufferedAmount > 256 << 10);
  let received = 0;
  peer.on('message', () => received++);
  const drained = once(conn, 'drain');
  peer._socket.resume();
  await drained;
  assert.ok(conn.bufferedAmount <= 64 << 10);
  while (received < sent) await sleep(5);
  assert.equal(received, sent);
  peer.close();
  await server.close();
});

test('client backpressure against a ws server that stops reading', T, async () => {
  const wss = await wsServer({ maxPayload: 1 << 20 });
  const peerP = once(wss, 'connection');
  const c = new Client(`ws://127.0.0.1:${wss.address().port}/`, { highWatermark: 128 << 10, lowWatermark: 32 << 10 });
  await c.connect();
  const [peer] = await peerP;
  peer._socket.pause();
  const chunk = big(32 << 10, 5);
  let sent = 0;
  while (c.send(chunk)) if (++sent > 4000) break;
  sent++;
  assert.ok(sent <= 4000, 'send never returned false');
  let received = 0;
  peer.on('message', () => received++);
  const drained = once(c, 'drain');
  peer._socket.resume();
  await drained;
  while (received < sent) await sleep(5);
  assert.equal(received, sent);
  await c.close();
  await closeWss(wss);
});

test('reconnect: messages sent while the server is down are flushed in order', T, async () => {
  let wss = await wsServer();
  const port = wss.address().port;
  const c = new Client(`ws://127.0.0.1:${port}/`, {
    reconnect: true, reconnectInitialDelay: 5, reconnectMaxDelay: 40, offlineBufferMessages: 100,
  });
  const states = [];
  c.on('state', (s, reason) => states.push([s, reason]));
  await c.connect();
  const reconnecting = new Promise((resolve) => c.on('state', (s) => s === 'reconnecting' && resolve()));
  await closeWss(wss);
  await reconnecting;
  assert.notEqual(c.state, 'open');
  for (let i = 0; i < 20; i++) assert.equal(c.send(`offline ${i}`), true);
  const received = [];
  wss = new WebSocketServer({ host: '127.0.0.1', port });
  wss.on('connection', (peer) => peer.on('message', (d) => received.push(d.toString())));
  await once(c, 'open');
  while (received.length < 20) await sleep(5);
  assert.deepEqual(received, Array.from({ length: 20 }, (_, i) => `offline ${i}`));
  const reasons = states.filter(([s]) => s === 'reconnecting').map(([, r]) => r);
  assert.ok(reasons.length >= 1);
  assert.ok(c.stats().reconnects >= 1);
  await c.close();
  await closeWss(wss);
});

test('offline buffer limit: ORC_EFULL when full', T, async () => {
  const c = new Client('ws://127.0.0.1:9/', { offlineBufferMessages: 2 });
  c.send('a');
  c.send('b');
  throwsWith(() => c.send('c'), 'ORC_EFULL', /offline buffer is full/);
  await c.close();
  assert.equal(c.state, 'closed');
});

test('connection refused: state closed with the reason, connect() rejects with ORC_EIO', T, async () => {
  // A port that was just free: bind, read the port, close.
  const wss = await wsServer();
  const port = wss.address().port;
  await closeWss(wss);
  const c = new Client(`ws://127.0.0.1:${port}/`);
  const closedState = new Promise((resolve) => c.on('state', (s, reason) => s === 'closed' && resolve(reason)));
  await assert.rejects(c.connect(), (e) => {
    assert.equal(e.code, 'ORC_EIO');
    assert.match(e.reason, /refused/i);
    return true;
  });
  assert.match(await closedState, /refused/i);
  assert.match(c.reason, /refused/i);

  const r = new Client(`ws://127.0.0.1:${port}/`, { reconnect: true, reconnectInitialDelay: 1, reconnectMaxDelay: 5, reconnectMaxAttempts: 3 });
  await assert.rejects(r.connect(), (e) => e.code === 'ORC_EIO' && /gave up after 3/.test(e.reason));
});

test('close codes both ways between our Client and our Server', T, async () => {
  const server = new Server({ port: 0 });
  const port = await server.listen();
  const disconnects = [];
  server.on('disconnect', (conn, code, reason) => disconnects.push([code, reason]));
  server.on('connection', (conn) => conn.on('message', (d) => d === 'kick me' && conn.close(4100, 'kicked')));

  const a = new Client(`ws://127.0.0.1:${port}/`);
  await a.connect();
  const aClose = once(a, 'close');
  a.send('kick me');
  const [code, reason] = await aClose;
  assert.deepEqual([code, reason], [4100, 'kicked']);

  const b = new Client(`ws://127.0.0.1:${port}/`);
  await b.connect();
  await b.close(4200, 'leaving');
  while (disconnects.length < 2) await sleep(5);
  // The server reports the peer's close frame: for the close it started, the code the client
  // echoed (RFC 6455 5.5.1; our client echoes the code without the reason).
  assert.deepEqual(disconnects, [[4100, ''], [4200, 'leaving']]);
  throwsWith(() => b.send('x'), 'ORC_ECLOSED');
  await server.close();
});

// ---------------------------------------------------------------------------------- wss

test('wss: our Server and Client, ws over TLS both ways, an untrusted server refused', T, async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orc-node-pki-'));
  try {
    const made = spawnSync('sh', [path.join(__dirname, '../../../Tests/support/make-test-pki.sh'), dir],
      { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const pki = (name) => path.join(dir, name);
    const { server, port } = await echoServer({ deflate: true, tlsCert: pki('server.pem'), tlsKey: pki('server.key') });
    // Our client: chain and host name (localhost) checked against the test CA.
    const c = new Client(`wss://localhost:${port}/`, { deflate: true, tlsCa: pki('ca.pem'), tlsUseSystemStore: false });
    await c.connect();
    const msgs = ['over tls', big(200000, 3)];
    for (const m of msgs) c.send(m);
    const got = [];
    for await (const { data } of c) {
      got.push(data);
      if (got.length === msgs.length) break;
    }
    assert.deepEqual(got, msgs);
    await c.close();
    // ws (node's own TLS) trusts the same CA.
    const peer = new WebSocket(`wss://localhost:${port}/`, { ca: fs.readFileSync(pki('ca.pem')) });
    await once(peer, 'open');
    peer.send('from ws');
    const [echoed] = await once(peer, 'message');
    assert.equal(echoed.toString(), 'from ws');
    peer.close();
    await once(peer, 'close');
    // A client that trusts another CA is refused, with the reason.
    const bad = new Client(`wss://localhost:${port}/`, { tlsCa: pki('other-ca.pem'), tlsUseSystemStore: false });
    await assert.rejects(bad.connect(), (e) => e.code === 'ORC_EIO' && /unable to get local issuer/.test(e.message));
    await server.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------- errors

test('bad URLs and arguments throw with codes', T, async () => {
  throwsWith(() => new Client('http://127.0.0.1/'), 'ORC_EINVAL');
  throwsWith(() => new Client('ws://'), 'ORC_EINVAL');
  throwsWith(() => new Client('not a url'), 'ORC_EINVAL');
  throwsWith(() => new Client(42), 'ORC_EINVAL');
  throwsWith(() => new Client('wss://127.0.0.1/', { tlsCa: '/nonexistent/ca.pem' }), 'ORC_EIO', /nonexistent/);
  throwsWith(() => new Client('wss://127.0.0.1/', { tlsVerify: 'no' }), 'ORC_EINVAL', /tlsVerify/);
  throwsWith(() => new Server({ tlsCert: '/nonexistent/cert.pem', tlsKey: '/nonexistent/key.pem' }), 'ORC_EIO', /nonexistent/);
  throwsWith(() => new Client('ws://127.0.0.1/', { connectTimeout: -1 }), 'ORC_EINVAL', /connectTimeout/);
  throwsWith(() => new Client('ws://127.0.0.1/', { headers: { 'Bad Name': 'x' } }), 'ORC_EINVAL');
  throwsWith(() => new Client('ws://127.0.0.1/', { reconnect: 'yes' }), 'ORC_EINVAL', /boolean/);
  throwsWith(() => new Server({ port: 70000 }), 'ORC_EINVAL', /port/);
  throwsWith(() => new Server({ paths: ['no-slash'] }), 'ORC_EINVAL', /path/);
  throwsWith(() => new Server({ subprotocols: ['bad token'] }), 'ORC_EINVAL', /subprotocol/);
  throwsWith(() => new Server({ slowConsumer: 'explode' }), 'ORC_EINVAL', /slowConsumer/);
  throwsWith(() => new Server({ compressionLevel: 12 }), 'ORC_EINVAL');
  throwsWith(() => new Server({ onUpgrade: () => undefined }), 'ORC_ENOTSUP', /hooks/);
  throwsWith(() => new Server({ queue: {} }), 'ORC_EINVAL');
  throwsWith(() => orc.Server.prototype.broadcast.call({ _h: {} }, 'x'), 'ORC_EINVAL', /Server handle/);

  const { server, port } = await echoServer();
  const busy = new Server({ port });
  await assert.rejects(busy.listen(), (e) => e.code === 'ORC_EIO' && /in use/i.test(e.message));
  await assert.rejects(server.listen(), (e) => e.code === 'ORC_ESTATE');
  const c = new Client(`ws://127.0.0.1:${port}/`);
  await c.connect();
  throwsWith(() => c.send(123), 'ORC_EINVAL');
  throwsWith(() => c.close(999), 'ORC_EINVAL', /999/);
  throwsWith(() => c.close(1000, 'x'.repeat(200)), 'ORC_EINVAL', /123/);
  await c.close();
  await server.close();
});

// -------------------------------------------------------------- runtime, queue delivery

test('own Runtime and queue delivery into a Queue', T, async () => {
  const rt = new Runtime({ name: 'test-io' });
  const q = new Queue({ capacity: 16 });
  const server = new Server({ port: 0, runtime: rt, queue: q, queueEvents: true });
  const port = await server.listen();
  const peer = await wsClient(`ws://127.0.0.1:${port}/`);
  peer.send('via queue');
  const types = [];
  for await (const m of q) {
    types.push(m.type);
    if (m.type === 'ws.message') {
      assert.equal(m.payload, 'via queue');
      break;
    }
  }
  assert.deepEqual(types, ['ws.open', 'ws.message']);
  peer.close();
  await server.close();
  rt.close();
  throwsWith(() => new Server({ runtime: rt }), 'ORC_ECLOSED');
});

// ---------------------------------------------------------------------- process exit

test('the process exits by itself after close (no dangling handles)', T, () => {
  const script = `
    const orc = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'index.js'))});
    const WebSocket = require('/usr/share/nodejs/ws');
    (async () => {
      const idle = new orc.Server({ port: 0 });          // never listens
      const never = new orc.Client('ws://127.0.0.1:9/'); // never connects
      const s = new orc.Server({ port: 0 });
      s.on('message', (conn, d) => conn.send(d));
      const port = await s.listen();
      const c = new orc.Client('ws://127.0.0.1:' + port + '/', { reconnect: true });
      await c.connect();
      c.send('x');
      await new Promise((r) => c.once('message', r));
      const peer = new WebSocket('ws://127.0.0.1:' + port + '/');
      await new Promise((r) => peer.once('open', r));
      await c.close();
      await s.close();
      console.log('closed');
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000, env: process.env });
  assert.equal(r.signal, null, `killed by ${r.signal} after the time limit: the process did not exit\n${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'closed');
});

test('a listening server keeps the process alive until closed', T, () => {
  const script = `
    const orc = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'index.js'))});
    const s = new orc.Server({ port: 0 });
    // The timer does not keep the process alive (unref): only the listening server does.
    s.listen().then(() => setTimeout(() => { console.log('still here'); s.close(); }, 300).unref());
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000, env: process.env });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'still here');
});

test('an active Server or Client that only its listeners refer to is not collected', T, async () => {
  // The server and the client are reachable from nothing but their own event listeners.
  const finished = new Promise((resolve) => {
    (async () => {
      const server = new Server({ port: 0 });
      server.on('message', (conn, d) => {
        if (d === 'stop') server.close().then(resolve);
        else conn.send(d);
      });
      const port = await server.listen();
      const c = new Client(`ws://127.0.0.1:${port}/`);
      let n = 0;
      c.on('message', () => {
        if (++n === 3) c.send('stop');
        else { global.gc?.(); c.send('again'); }
      });
      c.on('open', () => c.send('first'));
      c.connect();
    })();
  });
  for (let i = 0; i < 5; i++) {
    global.gc?.();
    await sleep(10);
  }
  await finished;
});

test('drain arrives while another thread sends and the I/O thread writes (no lost update of the buffered count)', T, async () => {
  // A worker sends as fast as the send buffer allows, waiting for 'drain' whenever send
  // returns false; a lost update of the buffered byte count left the buffer "full" forever.
  const { Worker } = require('node:worker_threads');
  const server = new Server({ port: 0, pingInterval: 0 });
  const n = 30000;
  let got = 0;
  const all = new Promise((resolve) => server.on('message', () => ++got === n && resolve()));
  const port = await server.listen();
  const w = new Worker(`
    const { workerData } = require('node:worker_threads');
    const orc = require(workerData.lib);
    (async () => {
      const c = new orc.Client(workerData.url, { highWatermark: 64 << 10, lowWatermark: 16 << 10 });
      await c.connect();
      const msg = 'y'.repeat(64);
      for (let i = 0; i < workerData.n; i++) if (!c.send(msg)) await new Promise((r) => c.once('drain', r));
      await c.close();
    })();
  `, { eval: true, workerData: { lib: path.join(__dirname, '..', 'lib', 'index.js'), url: `ws://127.0.0.1:${port}/`, n } });
  const exited = once(w, 'exit');
  await all;
  assert.equal(got, n);
  const [code] = await exited;
  assert.equal(code, 0);
  await server.close();
});
