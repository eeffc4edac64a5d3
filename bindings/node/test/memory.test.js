'use strict';
// Handles are released: creating and dropping many messages (directly, through codecs and
// through a queue) does not grow memory without bound. A leak check, not a timing assertion:
// with a leak every round would keep ~100k messages of ~1 KiB alive (about 100 MiB a round).
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');

const { Message, Queue } = require('../lib/index.js');

// node --expose-gc gives global.gc; otherwise enable it at run time.
let gc = global.gc;
if (typeof gc !== 'function') {
  v8.setFlagsFromString('--expose-gc');
  gc = vm.runInNewContext('gc');
}

// Finalizers of native objects run after a collection, from the event loop: collect, then let
// the loop turn, a few times.
async function settle() {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

const PAYLOAD = Buffer.alloc(768, 0x61);
const N = 100000;

function round(q) {
  for (let i = 0; i < N; i++) {
    const m = new Message('mem.item', { payload: PAYLOAD, headers: { i: String(i) } });
    if (i % 4 === 0) Message.decode(m.encode('msgpack'), 'msgpack');
    if (i % 4 === 1) m.clone();
    if (i % 4 === 2) {
      q.push(m);
      q.tryPop();
    }
  }
}

test('creating and dropping 100k messages per round does not grow memory', async () => {
  const q = new Queue({ capacity: 0 });
  round(q); // warm-up: allocator pools, JIT, heap sizes settle
  await settle();
  const before = process.memoryUsage();
  for (let r = 0; r < 5; r++) {
    round(q);
    await settle();
  }
  const after = process.memoryUsage();
  const grew = (after.rss - before.rss) / (1 << 20);
  // 5 rounds x 100k messages x ~1 KiB would be ~500 MiB if nothing were released.
  assert.ok(grew < 64, `rss grew by ${grew.toFixed(1)} MiB over 5 rounds of ${N} messages`);
  assert.equal(q.depth, 0);
});
