'use strict';
// One queue shared by several worker_threads, each loading the addon: producers in workers
// and a consumer on the main thread (and the other way round), checked message by message;
// a worker terminated while it waits on the queue leaves the queue working.
const { isMainThread, Worker, workerData, parentPort } = require('node:worker_threads');
const orc = require('../lib/index.js');
const { Message, Queue } = orc;

// Each message carries (worker, seq) and a value derived from both; the consumer checks that
// every (worker, seq) arrives exactly once and that the values add up.
function value(w, seq) {
  return (w * 1000003 + seq * 7919) % 65521;
}

async function workerMain() {
  const q = Queue.fromShared(workerData.token);
  if (workerData.role === 'producer') {
    const { w, count, batch } = workerData;
    let sum = 0;
    for (let seq = 0; seq < count;) {
      if (batch > 1) {
        const msgs = [];
        for (let k = 0; k < batch && seq < count; k++, seq++) {
          const v = value(w, seq);
          sum += v;
          msgs.push(new Message('load.item', { source: `w${w}`, payload: { w, seq, v } }));
        }
        let off = 0;
        while (off < msgs.length) off += q.pushBatch(msgs.slice(off)); // block policy: takes all
      } else {
        const v = value(w, seq);
        sum += v;
        q.push(new Message('load.item', { source: `w${w}`, payload: Buffer.from(JSON.stringify({ w, seq, v })) }));
        seq++;
      }
    }
    parentPort.postMessage({ sent: count, sum });
  } else if (workerData.role === 'consumer') {
    let n = 0;
    let sum = 0;
    for await (const m of q) {
      n++;
      sum += m.payload.v;
    }
    parentPort.postMessage({ received: n, sum });
  } else if (workerData.role === 'overflow') {
    for (let i = 0; i < workerData.count; i++) q.push(new Message('load.item', { payload: { seq: i } }));
    parentPort.postMessage({ pushed: workerData.count });
  } else if (workerData.role === 'dropwatcher') {
    // Registers a handler on the shared queue, then the thread ends with it registered.
    q.onDrop(() => {});
    parentPort.postMessage('registered');
  } else if (workerData.role === 'waiter') {
    parentPort.postMessage('waiting');
    for await (const m of q) parentPort.postMessage(`unexpected ${m.type}`);
  }
}

if (!isMainThread) {
  workerMain().catch((e) => {
    parentPort.postMessage({ error: `${e.code}: ${e.message}` });
  });
} else {
  const test = require('node:test');
  const assert = require('node:assert/strict');

  function start(role, data) {
    const worker = new Worker(__filename, { workerData: { role, ...data } });
    const result = new Promise((resolve, reject) => {
      worker.once('message', (m) => (m && m.error ? reject(new Error(m.error)) : resolve(m)));
      worker.once('error', reject);
    });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    return { worker, result, exited };
  }

  test('many producers in worker_threads, one async consumer: nothing lost or duplicated', async () => {
    const WORKERS = 4;
    const COUNT = 5000;
    // A small bound: producers really block on a full queue and resume as the main thread pops.
    const q = new Queue({ capacity: 512, policy: 'block' });
    const workers = [];
    for (let w = 0; w < WORKERS; w++) {
      workers.push(start('producer', { token: q.share(), w, count: COUNT, batch: w % 2 === 0 ? 1 : 64 }));
    }
    const seen = Array.from({ length: WORKERS }, () => new Uint8Array(COUNT));
    let received = 0;
    let sum = 0;
    const consumer = (async () => {
      for await (const m of q) {
        let p = m.payload;
        if (Buffer.isBuffer(p)) p = JSON.parse(p.toString());
        assert.equal(m.source, `w${p.w}`);
        assert.equal(p.v, value(p.w, p.seq));
        assert.equal(seen[p.w][p.seq], 0, `duplicate w${p.w} #${p.seq}`);
        seen[p.w][p.seq] = 1;
        sum += p.v;
        received++;
      }
    })();
    const reports = await Promise.all(workers.map((x) => x.result));
    await Promise.all(workers.map((x) => x.exited));
    q.close(); // every producer is done: the consumer drains what is left and ends
    await consumer;
    assert.equal(received, WORKERS * COUNT);
    for (let w = 0; w < WORKERS; w++) assert.equal(seen[w].indexOf(0), -1, `missing from w${w}`);
    assert.equal(sum, reports.reduce((a, r) => a + r.sum, 0));
    const s = q.stats();
    assert.equal(s.pushed, WORKERS * COUNT);
    assert.equal(s.popped, WORKERS * COUNT);
    assert.equal(s.droppedOverflow + s.rejected + s.expired, 0);
  });

  test('consumers in worker_threads, producer on the main thread', async () => {
    const q = new Queue();
    const consumers = [start('consumer', { token: q.share() }), start('consumer', { token: q.share() })];
    const N = 4000;
    let sum = 0;
    for (let i = 0; i < N; i++) {
      const v = value(9, i);
      sum += v;
      q.push(new Message('load.item', { payload: { w: 9, seq: i, v } }));
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    q.close();
    const reports = await Promise.all(consumers.map((c) => c.result));
    assert.equal(reports.reduce((a, r) => a + r.received, 0), N);
    assert.equal(reports.reduce((a, r) => a + r.sum, 0), sum);
    await Promise.all(consumers.map((c) => c.exited));
  });

  test('a worker terminated while waiting on the queue leaves it usable', async () => {
    const q = new Queue();
    const waiter = start('waiter', { token: q.share() });
    assert.equal(await waiter.result, 'waiting');
    await new Promise((r) => setTimeout(r, 20)); // let it reach its wait on the fd
    await waiter.worker.terminate();
    await waiter.exited;
    q.push(new Message('after.terminate'));
    assert.equal((await q.pop()).type, 'after.terminate');
    q.close();
    await assert.rejects(q.pop(), { code: 'ORC_ECLOSED' });
  });

  test('drops caused by pushes in a worker reach the main thread\'s onDrop handler', async () => {
    const q = new Queue({ capacity: 10, policy: 'dropNewest' });
    const dropped = [];
    q.onDrop((m, reason) => dropped.push([m.payload.seq, reason]));
    const w = start('overflow', { token: q.share(), count: 100 });
    assert.deepEqual(await w.result, { pushed: 100 });
    await w.exited;
    while (dropped.length < 90) await new Promise((r) => setTimeout(r, 1));
    assert.deepEqual(dropped, Array.from({ length: 90 }, (_, i) => [i + 10, 'overflow']));
    assert.equal(q.depth, 10);
  });

  test('a handler registered by a worker that has exited is removed; the queue drops on safely', async () => {
    const q = new Queue({ capacity: 1, policy: 'dropOldest' });
    const w = start('dropwatcher', { token: q.share() });
    assert.equal(await w.result, 'registered');
    await w.exited;
    for (let i = 0; i < 1000; i++) q.push(new Message('after.exit'));
    assert.equal(q.stats().droppedOverflow, 999);
    const mine = [];
    q.onDrop((m, reason) => mine.push(reason));
    q.push(new Message('mine'));
    while (mine.length < 1) await new Promise((r) => setTimeout(r, 1));
    assert.deepEqual(mine, ['overflow']);
  });

  test('a worker started after the pushes and the close still receives them (the token keeps the queue)', async () => {
    const q = new Queue();
    const token = q.share();
    const w = start('consumer', { token });
    q.push(new Message('load.item', { payload: { w: 1, seq: 0, v: 5 } }));
    q.close();
    assert.deepEqual(await w.result, { received: 1, sum: 5 });
    await w.exited;
  });
}
