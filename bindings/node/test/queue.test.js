'use strict';
// Queue: ordering, priorities, async waiting and iteration, close and fail, backpressure.
const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep, setImmediate: tick } = require('node:timers/promises');

const orc = require('../lib/index.js');
const { Message, Queue, Priority } = orc;

function item(i, priority) {
  return new Message('q.item', { payload: { i }, priority });
}

function ids(messages) {
  return messages.map((m) => m.payload.i);
}

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, code);
    assert.equal(e.errno, orc.codes[code]);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

function throwsWith(fn, code, pattern) {
  assert.throws(fn, (e) => {
    assert.equal(e.code, code);
    assert.equal(e.errno, orc.codes[code]);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('FIFO within a lane, highest priority lane first', () => {
  const q = new Queue();
  for (let i = 0; i < 5; i++) q.push(item(i));
  q.push(item(100, Priority.CRITICAL));
  q.push(item(50, Priority.LOW));
  q.push(item(70, Priority.HIGH));
  q.push(item(101, Priority.CRITICAL));
  assert.equal(q.depth, 9);
  assert.equal(q.length, 9);
  const out = [];
  for (let m; (m = q.tryPop()) !== null;) out.push(m.payload.i);
  assert.deepEqual(out, [100, 101, 70, 0, 1, 2, 3, 4, 50]);
  assert.equal(q.tryPop(), null);
});

test('popBatch takes up to max in order; pushBatch takes many under one lock', () => {
  const q = new Queue();
  assert.equal(q.pushBatch(Array.from({ length: 10 }, (_, i) => item(i))), 10);
  assert.equal(q.pushBatch([]), 0);
  assert.deepEqual(ids(q.popBatch(4)), [0, 1, 2, 3]);
  assert.deepEqual(ids(q.popBatch()), [4, 5, 6, 7, 8, 9]);
  assert.deepEqual(q.popBatch(), []);
  assert.deepEqual(q.popBatch(8, 5), []); // waited 5 ms (this thread), nothing came
  throwsWith(() => q.popBatch(0), 'ORC_EINVAL');
  const s = q.stats();
  assert.equal(s.pushed, 10);
  assert.equal(s.popped, 10);
  assert.equal(s.depth, 0);
  assert.equal(s.depthHighWater, 10);
  assert.equal(s.waitCount, 10);
});

test('the same message object can be pushed many times (the queue takes its own reference)', () => {
  const q = new Queue();
  const m = item(1);
  q.push(m);
  q.push(m);
  const [a, b] = q.popBatch();
  assert.equal(a.id, m.id);
  assert.equal(b.id, m.id);
  assert.equal(m.payload.i, 1);
});

test('pop() waits without blocking the thread and is woken by a later push', async () => {
  const q = new Queue();
  let timerRan = false;
  setTimeout(() => {
    timerRan = true;
    q.push(item(42));
  }, 20);
  const m = await q.pop();
  assert.equal(timerRan, true); // the timer could only run because pop() did not block
  assert.equal(m.payload.i, 42);
});

test('async iteration yields everything in order and ends on close after draining', async () => {
  const q = new Queue();
  const N = 2000;
  for (let i = 0; i < N; i++) q.push(item(i));
  q.close();
  throwsWith(() => q.push(item(-1)), 'ORC_ECLOSED');
  const seen = [];
  for await (const m of q) seen.push(m.payload.i);
  assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
  throwsWith(() => q.tryPop(), 'ORC_ECLOSED');
  await rejectsWith(q.pop(), 'ORC_ECLOSED');
});

test('a waiting iterator is woken by pushes from timers and ends when closed', async () => {
  const q = new Queue();
  const produced = [];
  (async () => {
    for (let i = 0; i < 50; i++) {
      await (i % 10 === 0 ? sleep(2) : tick());
      q.push(item(i));
      produced.push(i);
    }
    await sleep(5);
    q.close();
  })();
  const seen = [];
  for await (const m of q.messages({ batchSize: 7 })) seen.push(m.payload.i);
  assert.deepEqual(seen, produced);
  assert.equal(seen.length, 50);
});

test('fail() propagates an error with the message into a waiting iterator and to producers', async () => {
  const q = new Queue();
  q.push(item(1));
  const seen = [];
  const consumer = (async () => {
    for await (const m of q) seen.push(m.payload.i);
  })();
  await sleep(10);
  q.fail('upstream went away', 42);
  await rejectsWith(consumer, 'ORC_EFAILED', /upstream went away/);
  assert.deepEqual(seen, [1]);
  throwsWith(() => q.push(item(2)), 'ORC_EFAILED', /upstream went away/);
  throwsWith(() => q.tryPop(), 'ORC_EFAILED');
  await rejectsWith(q.pop(), 'ORC_EFAILED');
});

test('several consumers in one thread share the work without losing or duplicating', async () => {
  const q = new Queue();
  const N = 3000;
  const consume = async (batchSize) => {
    const got = [];
    for await (const m of q.messages({ batchSize })) {
      got.push(m.payload.i);
      if (got.length % 50 === 0) await tick();
    }
    return got;
  };
  const consumers = [consume(1), consume(16), consume(256)];
  for (let i = 0; i < N; i++) {
    q.push(item(i));
    if (i % 100 === 0) await tick();
  }
  q.close();
  const results = await Promise.all(consumers);
  const all = results.flat().sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: N }, (_, i) => i));
  for (const r of results) assert.deepEqual(r, [...r].sort((a, b) => a - b)); // each in order
});

test('backpressure: reject throws ORC_EFULL and the caller keeps the message', () => {
  const q = new Queue({ capacity: 2, policy: 'reject' });
  q.push(item(0));
  q.push(item(1));
  const third = item(2);
  throwsWith(() => q.push(third), 'ORC_EFULL', /full/);
  assert.equal(third.payload.i, 2);
  // pushBatch takes what fits and reports it; a batch refused at its first message throws.
  q.tryPop();
  assert.equal(q.pushBatch([item(3), item(4), item(5)]), 1);
  throwsWith(() => q.pushBatch([item(6)]), 'ORC_EFULL');
  const s = q.stats();
  assert.equal(s.rejected, 3);
  assert.deepEqual(ids(q.popBatch()), [1, 3]);
});

test('backpressure: dropOldest and dropNewest count their drops', () => {
  const oldest = new Queue({ capacity: 3, policy: 'dropOldest' });
  for (let i = 0; i < 5; i++) oldest.push(item(i));
  assert.deepEqual(ids(oldest.popBatch()), [2, 3, 4]);
  assert.equal(oldest.stats().droppedOverflow, 2);

  const newest = new Queue({ capacity: 3, policy: 'dropNewest' });
  for (let i = 0; i < 5; i++) newest.push(item(i));
  assert.deepEqual(ids(newest.popBatch()), [0, 1, 2]);
  assert.equal(newest.stats().droppedOverflow, 2);
  assert.equal(newest.stats().pushed, 5);
});

test('backpressure: block waits up to pushTimeoutMs, then ORC_EFULL', () => {
  const q = new Queue({ capacity: 1, policy: 'block', pushTimeoutMs: 10, name: 'blocky' });
  q.push(item(0));
  throwsWith(() => q.push(item(1)), 'ORC_EFULL');
  const s = q.stats();
  assert.equal(s.blockedPushes, 1);
  assert.equal(s.rejected, 1);
});

test('bad options are refused with ORC_EINVAL', () => {
  throwsWith(() => new Queue({ policy: 'sometimes' }), 'ORC_EINVAL', /policy/);
  throwsWith(() => new Queue({ capacity: -1 }), 'ORC_EINVAL', /capacity/);
  throwsWith(() => new Queue({ capacity: 1.5 }), 'ORC_EINVAL', /capacity/);
  throwsWith(() => new Queue({ spinUs: 2e6 }), 'ORC_EINVAL', /spinUs/);
  throwsWith(() => new Queue({ name: 'a\u0000b' }), 'ORC_EINVAL', /NUL/);
  throwsWith(() => new Queue().messages({ batchSize: 0 }), 'ORC_EINVAL');
});

test('expired messages are skipped and counted', async () => {
  const q = new Queue();
  const short = item(1);
  short.ttl = 1;
  q.push(short);
  q.push(item(2));
  await sleep(20); // longer than the ttl
  assert.deepEqual(ids(q.popBatch()), [2]);
  assert.equal(q.stats().expired, 1);
});

test('share() and fromShared(): two objects over one queue in the same thread, tokens used once', async () => {
  const q = new Queue();
  const token = q.share();
  assert.equal(typeof token, 'bigint');
  const q2 = Queue.fromShared(token);
  throwsWith(() => Queue.fromShared(token), 'ORC_ENOTFOUND', /token/);
  throwsWith(() => Queue.fromShared(12345678901n), 'ORC_ENOTFOUND');
  assert.throws(() => Queue.fromShared(1), TypeError);
  q.push(item(1));
  assert.equal(q2.depth, 1);
  assert.equal(q2.tryPop().payload.i, 1);
  // Both objects waiting at once share one watcher on the fd; each gets one message.
  const a = q.pop();
  const b = q2.pop();
  await tick();
  q2.pushBatch([item(10), item(11)]);
  const got = [(await a).payload.i, (await b).payload.i].sort();
  assert.deepEqual(got, [10, 11]);
  q2.close();
  await rejectsWith(q.pop(), 'ORC_ECLOSED');
});

test('breaking out of for-await stops iterating; the queue keeps what was not popped', async () => {
  const q = new Queue();
  for (let i = 0; i < 10; i++) q.push(item(i));
  for await (const m of q.messages({ batchSize: 1 })) {
    if (m.payload.i === 3) break;
  }
  assert.deepEqual(ids(q.popBatch()), [4, 5, 6, 7, 8, 9]);
});

test('the readiness fd is exposed', () => {
  const q = new Queue();
  assert.ok(Number.isInteger(q.fd) && q.fd > 2);
});

test('onDrop delivers dropped messages with their reason on the JS thread', async () => {
  const q = new Queue({ capacity: 2, policy: 'dropOldest' });
  const dropped = [];
  q.onDrop((m, reason) => {
    assert.ok(m instanceof Message);
    dropped.push([m.payload.i, reason]);
  });
  for (let i = 0; i < 4; i++) q.push(item(i)); // drops 0 and 1
  const short = item(9);
  short.ttl = 1;
  const q2 = q; // same queue, an expiring message
  await sleep(5);
  q2.popBatch(); // takes 2, 3
  q2.push(short);
  await sleep(20);
  assert.equal(q2.tryPop(), null); // 9 expired
  // The handler does not keep the loop alive on its own: wait with a timer.
  while (dropped.length < 3) await sleep(1);
  assert.deepEqual(dropped, [[0, 'overflow'], [1, 'overflow'], [9, 'expired']]);

  // A new handler replaces the old one; null removes it (drops are still counted).
  const second = [];
  q.onDrop((m, reason) => second.push([m.payload.i, reason]));
  for (let i = 10; i < 13; i++) q.push(item(i));
  while (second.length < 1) await sleep(1);
  await sleep(10);
  assert.deepEqual(second, [[10, 'overflow']]);
  q.onDrop(null);
  q.push(item(20));
  await sleep(10);
  assert.deepEqual(second, [[10, 'overflow']]);
  assert.equal(dropped.length, 3);
  assert.equal(q.stats().droppedOverflow, 4);
  assert.throws(() => q.onDrop(42), { code: 'ORC_EINVAL' });
});
