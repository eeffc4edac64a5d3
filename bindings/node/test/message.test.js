'use strict';
// Message: fields, headers, payloads, the JSON and MessagePack codecs, errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const orc = require('../lib/index.js');
const { Message, Priority } = orc;

const UNICODE = 'héllo wörld ✓ 日本語 🎵 \u0000 end';

function assertOrcError(fn, code, messagePattern) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.equal(e.code, code);
    if (e.errno !== undefined) assert.equal(e.errno, orc.codes[code]);
    if (messagePattern) assert.match(e.message, messagePattern);
    return true;
  });
}

function roundTrip(m, format) {
  const bytes = m.encode(format);
  assert.ok(Buffer.isBuffer(bytes));
  return Message.decode(bytes, format);
}

test('a new message has an id, the current time, version 1.0 and no optional fields', () => {
  const before = Date.now();
  const m = new Message('task.stream');
  const after = Date.now();
  assert.equal(m.type, 'task.stream');
  assert.match(m.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(m.version, '1.0');
  assert.ok(m.timestamp >= before - 1 && m.timestamp <= after + 1, `${m.timestamp} in [${before}, ${after}]`);
  for (const f of ['source', 'target', 'correlationId', 'replyTo', 'ttl']) assert.equal(m[f], null, f);
  assert.equal(m.priority, Priority.NORMAL);
  assert.equal(m.payload, undefined);
  assert.equal(m.contentType, null);
  assert.deepEqual(m.headers, {});
  assert.notEqual(new Message('a').id, m.id);
});

test('fields given to the constructor come back from the getters and set/clear later', () => {
  const m = new Message('agent.register', {
    id: 'id-1', source: 'agent-7', target: 'hub', correlationId: 'c-1', replyTo: 'inbox.7',
    version: '2.0', timestamp: 1700000000123, ttl: 5000, priority: Priority.HIGH,
    headers: { auth: 'token', attempt: 3, tags: ['a', 'b'], nested: { ok: true } },
    payload: { name: 'coder', caps: ['py', 'js'] },
  });
  assert.equal(m.id, 'id-1');
  assert.equal(m.source, 'agent-7');
  assert.equal(m.target, 'hub');
  assert.equal(m.correlationId, 'c-1');
  assert.equal(m.replyTo, 'inbox.7');
  assert.equal(m.version, '2.0');
  assert.equal(m.timestamp, 1700000000123);
  assert.equal(m.ttl, 5000);
  assert.equal(m.priority, 2);
  assert.deepEqual(m.headers, { auth: 'token', attempt: 3, tags: ['a', 'b'], nested: { ok: true } });
  assert.deepEqual(Object.keys(m.headers), ['auth', 'attempt', 'tags', 'nested']);
  assert.equal(m.header('attempt'), 3);
  assert.equal(m.header('missing'), undefined);
  assert.deepEqual(m.payload, { name: 'coder', caps: ['py', 'js'] });
  assert.equal(m.contentType, 'json');

  m.source = null;
  m.ttl = null;
  m.target = 'other';
  assert.equal(m.source, null);
  assert.equal(m.ttl, null);
  assert.equal(m.target, 'other');
  assert.equal(m.removeHeader('auth'), true);
  assert.equal(m.removeHeader('auth'), false);
  assert.equal(m.headerCount, 3);
  m.setHeader('attempt', '4'); // replaced in place, now a string
  assert.deepEqual(Object.entries(m.headers)[0], ['attempt', '4']);
});

test('JSON and MessagePack round trips keep every field, with unicode everywhere', () => {
  const m = new Message('task.stream', {
    source: `src ${UNICODE}`, target: 'ziel-ü', correlationId: '🔗', replyTo: 'r',
    ttl: 60000, priority: Priority.CRITICAL,
    headers: { 'clé': UNICODE, 'n': -12.5, 'emoji🎵': { deep: [UNICODE, null, false] } },
    payload: { text: UNICODE, list: [1, 2.5, -3, true, null, 'ß'], big: 2 ** 53 - 1 },
  });
  for (const format of ['json', 'msgpack']) {
    const back = roundTrip(m, format);
    assert.deepEqual(back.toJSON(), m.toJSON(), format);
    assert.equal(back.id, m.id);
    assert.equal(back.source, `src ${UNICODE}`);
    assert.equal(back.header('clé'), UNICODE);
    assert.deepEqual(back.header('emoji🎵'), { deep: [UNICODE, null, false] });
    assert.deepEqual(back.payload, m.payload);
    assert.equal(back.priority, Priority.CRITICAL);
    assert.equal(back.ttl, 60000);
  }
  // Across codecs: JSON -> message -> MessagePack -> message -> JSON gives the same object.
  const across = Message.decode(Message.decode(m.encode('json'), 'json').encode('msgpack'), 'msgpack');
  assert.deepEqual(across.toJSON(), m.toJSON());
  assert.deepEqual(JSON.parse(JSON.stringify(m)), m.toJSON());
});

test('text payloads keep their exact characters; JSON strings are not text', () => {
  const m = new Message('t.text', { payload: UNICODE });
  assert.equal(m.contentType, 'text');
  assert.equal(m.payload, UNICODE);
  for (const format of ['json', 'msgpack']) assert.equal(roundTrip(m, format).payload, UNICODE);
  const j = new Message('t.json', { payload: UNICODE, contentType: 'json' });
  assert.equal(j.contentType, 'json');
  assert.equal(j.payloadBytes.toString(), JSON.stringify(UNICODE));
  assert.equal(roundTrip(j, 'msgpack').payload, UNICODE);
});

test('binary payloads: every byte value, and large payloads, survive both codecs', () => {
  const all = Buffer.alloc(256 * 4);
  for (let i = 0; i < all.length; i++) all[i] = i & 0xff;
  const large = crypto.randomBytes(1 << 20);
  for (const bytes of [Buffer.alloc(0), all, large]) {
    const m = new Message('t.bin', { payload: bytes });
    assert.equal(m.contentType, 'binary');
    assert.ok(m.payload.equals(bytes));
    for (const format of ['json', 'msgpack']) {
      const back = roundTrip(m, format);
      assert.equal(back.contentType, 'binary', format);
      assert.ok(Buffer.isBuffer(back.payload));
      assert.ok(back.payload.equals(bytes), `${format}, ${bytes.length} bytes`);
    }
  }
  // TypedArray views and ArrayBuffers are bytes too (only the viewed range).
  const u16 = new Uint16Array([0x0102, 0xfffe, 0]);
  assert.ok(new Message('t.bin', { payload: u16 }).payload.equals(Buffer.from(u16.buffer)));
  const view = new Uint8Array(all.buffer, all.byteOffset + 10, 5);
  assert.ok(new Message('t.bin', { payload: view }).payload.equals(all.subarray(10, 15)));
  const ab = new Uint8Array([9, 8, 7]).buffer;
  assert.ok(new Message('t.bin', { payload: ab }).payload.equals(Buffer.from([9, 8, 7])));
  // The payload getter returns a copy: changing it does not change the message.
  const m = new Message('t.bin', { payload: Buffer.from([1, 2, 3]) });
  m.payload[0] = 99;
  assert.deepEqual([...m.payload], [1, 2, 3]);
});

test('decode accepts a string, Buffer, Uint8Array and ArrayBuffer, and fromObject/toJSON invert', () => {
  const m = new Message('a.b', { payload: { k: 'v' }, headers: { h: 1 } });
  const text = m.encode('json').toString();
  const u8 = new Uint8Array(Buffer.from(text));
  for (const input of [text, Buffer.from(text), u8, u8.buffer]) {
    assert.deepEqual(Message.decode(input).toJSON(), m.toJSON());
  }
  const obj = m.toJSON();
  assert.equal(obj.type, 'a.b');
  assert.deepEqual(Message.fromObject(obj).toJSON(), obj);
  // Unknown envelope keys are kept through a round trip.
  const extra = Message.fromObject({ ...obj, extension: { x: [1] } });
  assert.deepEqual(extra.toJSON().extension, { x: [1] });
});

test('clone is independent; compress and decompress restore the payload', () => {
  const m = new Message('a.b', { payload: 'x'.repeat(10000), source: 's' });
  const c = m.clone();
  c.source = 'changed';
  c.setPayload(Buffer.from([1]));
  assert.equal(m.source, 's');
  assert.equal(m.payload, 'x'.repeat(10000));
  assert.equal(m.compress(100), true);
  assert.equal(m.compressed, true);
  assert.ok(Buffer.isBuffer(m.payload) && m.payload.length < 10000);
  const wire = roundTrip(m, 'msgpack');
  assert.equal(wire.compressed, true);
  wire.decompress();
  assert.equal(wire.compressed, false);
  assert.equal(wire.payload, 'x'.repeat(10000));
  assert.equal(new Message('a.b', { payload: 'short' }).compress(1024), false);
});

test('errors carry the ORC_* code, errno and the library detailed message', () => {
  assertOrcError(() => Message.decode('{"id": 1', 'json'), 'ORC_EPARSE', /byte \d+/);
  assertOrcError(() => Message.decode(Buffer.from([0xc1]), 'msgpack'), 'ORC_EPARSE');
  assertOrcError(() => Message.decode('{"id":"a","type":"b","payload":[[[[1]]]]}', 'json', { maxDepth: 3 }),
    'ORC_ETOOBIG');
  assertOrcError(() => Message.decode('{"id":"a","type":"b"}', 'json', { maxSize: 5 }), 'ORC_ETOOBIG');
  assertOrcError(() => new Message(''), 'ORC_EINVAL');
  assertOrcError(() => { new Message('a').id = ''; }, 'ORC_EINVAL');
  assertOrcError(() => { new Message('a').priority = 7; }, 'ORC_EINVAL', /priority/);
  assertOrcError(() => new Message('a').setPayload(Buffer.from('{nope'), 'json'), 'ORC_EPARSE', /JSON/);
  assertOrcError(() => new Message('a').setHeader('k', undefined), 'ORC_EINVAL');
  assertOrcError(() => new Message('a', { sorce: 'typo' }), 'ORC_EINVAL', /sorce/);
  assertOrcError(() => new Message('a').encode('xml'), 'ORC_EINVAL', /format/);
  assertOrcError(() => new Message('a').decompress(), 'ORC_ESTATE');
  assertOrcError(() => new Message(42), 'ORC_EINVAL', /type must be a string/);
  // Calling a Message method on anything else throws (V8's receiver check, then the addon's
  // type tags) instead of misreading memory; so does passing a non-Message to push.
  assert.throws(() => Message.prototype.encode.call({}), TypeError);
  assert.throws(() => Message.prototype.encode.call(new orc.Queue()), TypeError);
  assert.throws(() => orc.Queue.prototype.stats.call(new Message('a')), TypeError);
  // Accessors get no V8 receiver check: the addon's type tags refuse a foreign `this`.
  const idGetter = Object.getOwnPropertyDescriptor(Message.prototype, 'id').get;
  assertOrcError(() => idGetter.call(new orc.Queue()), 'ORC_EINVAL', /expected a Message/);
  assertOrcError(() => idGetter.call({}), 'ORC_EINVAL', /expected a Message/);
  const depthGetter = Object.getOwnPropertyDescriptor(orc.Queue.prototype, 'depth').get;
  assertOrcError(() => depthGetter.call(new Message('a')), 'ORC_EINVAL', /expected a Queue/);
  assertOrcError(() => new orc.Queue().push({ type: 'fake' }), 'ORC_EINVAL', /expected a Message/);
  assertOrcError(() => new orc.Queue().pushBatch([new Message('a'), 'x']), 'ORC_EINVAL', /expected a Message/);
  assert.equal(orc.errorName(-9), 'ORC_EFULL');
  assert.equal(orc.strerror(-7).length > 0, true);
});

test('release() drops the reference now; later use throws ORC_ESTATE', () => {
  const m = new Message('a.b');
  assert.equal(m.released, false);
  m.release();
  assert.equal(m.released, true);
  m.release(); // idempotent
  assertOrcError(() => m.type, 'ORC_ESTATE', /released/);
  assertOrcError(() => new orc.Queue().push(m), 'ORC_ESTATE');
});

test('strings with lone surrogates are stored as U+FFFD (N-API converts to UTF-8)', () => {
  const m = new Message('a.b', { source: 'x\ud800y', payload: 'p\udfffq' });
  assert.equal(m.source, 'x\ufffdy');
  assert.equal(m.payload, 'p\ufffdq');
});
