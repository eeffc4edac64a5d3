'use strict';
// Node: `for await` over orchestra's Queue (batch pops, waiting on the readiness fd through a
// uv_poll on node's loop) against a plain JavaScript array queue whose consumer awaits a
// promise when it is empty: the same producer coroutine on the same thread hands over the same
// pre-built Message objects in chunks of 1024, yielding to the loop between chunks.
//
// Prints one JSON object per line: {"name", "value", "unit"} (messages per second).
// ORCHESTRA_NODE_ADDON (or the build folder) gives the addon.
const path = require('node:path');
const { setImmediate: tick } = require('node:timers/promises');
const { Message, Queue } = require(path.join(__dirname, '..', 'bindings', 'node'));

const QUICK = process.argv.includes('--quick');
const N = QUICK ? 200000 : 500000;
const CHUNK = 1024;

function emit(name, value, unit) {
  console.log(JSON.stringify({ name, value: Math.round(value * 1000) / 1000, unit }));
}

class ArrayQueue {
  constructor() {
    this.items = [];
    this.head = 0;
    this.waiter = null;
    this.closed = false;
  }
  push(v) {
    this.items.push(v);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    }
  }
  close() {
    this.closed = true;
    if (this.waiter) this.waiter();
  }
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.head < this.items.length) {
        const v = this.items[this.head];
        this.items[this.head++] = undefined;
        if (this.head > 4096 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        yield v;
        continue;
      }
      if (this.closed) return;
      await new Promise((r) => (this.waiter = r));
    }
  }
}

async function produce(q, msgs) {
  for (let i = 0; i < msgs.length; i += CHUNK) {
    const end = Math.min(i + CHUNK, msgs.length);
    for (let k = i; k < end; k++) q.push(msgs[k]);
    await tick();
  }
  q.close();
}

async function measure(q, msgs) {
  const t0 = process.hrtime.bigint();
  const producer = produce(q, msgs);
  let count = 0;
  for await (const m of q) if (m) count++;
  await producer;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (count !== msgs.length) throw new Error(`got ${count} of ${msgs.length}`);
  return count / dt;
}

async function main() {
  const tmpl = new Message('bench.item', { payload: Buffer.alloc(8, 1) });
  const msgs = Array.from({ length: N }, () => tmpl.clone());
  // warm-up of both paths
  await measure(new Queue({ capacity: 0 }), msgs.slice(0, 20000));
  await measure(new ArrayQueue(), msgs.slice(0, 20000));
  emit('node.for_await.coroutine_producer', await measure(new Queue({ capacity: 0 }), msgs), 'msg/s');
  emit('node.for_await.coroutine_producer.baseline', await measure(new ArrayQueue(), msgs), 'msg/s');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
