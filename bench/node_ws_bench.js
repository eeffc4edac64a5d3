'use strict';
// Node: messages per second a WebSocket server in node receives, by delivery path.
//
//   node.ws.receive.events   our Server, 'message' events (callbacks on the I/O thread, copied
//                            into a batch, one napi_threadsafe_function call per batch)
//   node.ws.receive.queue    our Server with queueOnly: `for await` over a Queue the library
//                            pushes into (Messages of type ws.message; payload read per message)
//   node.ws.receive.baseline the `ws` package's WebSocketServer (Debian node-ws) in the same
//                            process: the anchor
//
// The sender is the same in all three: our Client in a worker thread, sending N text messages
// of 64 bytes as fast as the send buffer allows (waits for 'drain' when send returns false).
// The clock runs from the worker's first send to the N-th message seen on the main thread.
// Prints one JSON object per line: {"name", "value", "unit"}.
const path = require('node:path');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const orc = require(path.join(__dirname, '..', 'bindings', 'node'));

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 100000 : 300000;
const SIZE = 64;

if (!isMainThread) {
  (async () => {
    const c = new orc.Client(workerData.url, { highWatermark: 1 << 20, lowWatermark: 256 << 10 });
    await c.connect();
    const msg = 'x'.repeat(SIZE);
    parentPort.postMessage({ start: performance.timeOrigin + performance.now() });
    for (let i = 0; i < workerData.n; i++) {
      if (!c.send(msg)) await new Promise((r) => c.once('drain', r));
    }
    await new Promise((r) => parentPort.once('message', r));   // the receiver is done
    await c.close();
  })();
  return;
}

function emit(name, value, unit) {
  console.log(JSON.stringify({ name, value: Math.round(value), unit }));
}

// Runs the sender against `url`; `received` resolves with the wall time of the N-th message.
async function measure(url, received) {
  const w = new Worker(__filename, { workerData: { url, n: N } });
  const [start] = await Promise.all([new Promise((r) => w.once('message', (m) => r(m.start)))]);
  const end = await received;
  w.postMessage('done');
  await new Promise((r) => w.once('exit', r));
  return N / ((end - start) / 1000);
}

const now = () => performance.timeOrigin + performance.now();

async function events() {
  const server = new orc.Server({ port: 0, pingInterval: 0 });
  let n = 0;
  let done;
  const received = new Promise((r) => { done = r; });
  server.on('message', (conn, data) => {
    if (data.length === SIZE && ++n === N) done(now());
  });
  const port = await server.listen();
  const rate = await measure(`ws://127.0.0.1:${port}/`, received);
  await server.close();
  return rate;
}

async function queue() {
  const q = new orc.Queue({ capacity: 65536, policy: 'block' });
  const server = new orc.Server({ port: 0, pingInterval: 0, queue: q, queueOnly: true });
  const port = await server.listen();
  const received = (async () => {
    let n = 0;
    for await (const m of q) {
      if (m.payload.length === SIZE && ++n === N) return now();
    }
    return now();
  })();
  const rate = await measure(`ws://127.0.0.1:${port}/`, received);
  await server.close();
  q.close();
  return rate;
}

async function baseline() {
  const { WebSocketServer } = require('/usr/share/nodejs/ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((r) => wss.once('listening', r));
  let n = 0;
  let done;
  const received = new Promise((r) => { done = r; });
  wss.on('connection', (peer) => peer.on('message', (data) => {
    if (data.length === SIZE && ++n === N) done(now());
  }));
  const rate = await measure(`ws://127.0.0.1:${wss.address().port}/`, received);
  await new Promise((r) => wss.close(r));
  return rate;
}

(async () => {
  emit('node.ws.receive.events', await events(), 'msg/s');
  emit('node.ws.receive.queue', await queue(), 'msg/s');
  emit('node.ws.receive.baseline', await baseline(), 'msg/s');
})();
