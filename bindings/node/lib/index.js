'use strict';
// The Node binding of liborchestra: loads orchestra.node (the N-API addon in ../src, built by
// CMake) and adds the JavaScript conveniences on top of its native classes. Protocol logic
// lives in the library; this file only shapes values (DESIGN.md: bindings stay thin).

const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');

// ------------------------------------------------------------------------ loading the addon

function addonCandidates() {
  const env = process.env.ORCHESTRA_NODE_ADDON;
  if (env) return [['ORCHESTRA_NODE_ADDON', path.resolve(env)]]; // an explicit choice is never replaced
  const pkg = path.resolve(__dirname, '..');
  return [
    ['package folder', path.join(pkg, 'orchestra.node')],
    ['build folder', path.resolve(pkg, '..', '..', 'build', 'orchestra.node')],
    ['build folder', path.resolve(process.cwd(), 'build', 'orchestra.node')],
  ];
}

function loadAddon() {
  const errors = [];
  for (const [where, file] of addonCandidates()) {
    if (!fs.existsSync(file)) {
      errors.push(`${where}: ${file}: not found`);
      continue;
    }
    try {
      return { native: require(file), addonPath: file };
    } catch (e) {
      // A version mismatch (ORC_EVERSION) or a library that does not load is not worth
      // hiding behind the next candidate.
      e.message = `${where}: ${file}: ${e.message}`;
      throw e;
    }
  }
  const err = new Error('orchestra.node not found; build it (cmake --build build) or set ' +
    'ORCHESTRA_NODE_ADDON to its path. Tried: ' + errors.join('; '));
  err.code = 'ORC_ENOTFOUND';
  throw err;
}

const { native, addonPath } = loadAddon();
const { Message, Queue } = native;

// ----------------------------------------------------------------------------- constants

/** Error codes: codes.ORC_EFULL === -9; errors thrown by the binding carry `code` (the name)
 *  and `errno` (the number). */
const codes = Object.freeze(Object.fromEntries(
  Array.from({ length: 17 }, (_, i) => [native.errorName(-(i + 1)), -(i + 1)])));

const Priority = Object.freeze({ LOW: 0, NORMAL: 1, HIGH: 2, CRITICAL: 3 });
const CONTENT_TYPES = ['json', 'text', 'binary'];
const CONTENT_CODE = { json: 0, text: 1, binary: 2 };

function invalid(message) {
  const e = new TypeError(message);
  e.code = 'ORC_EINVAL';
  e.errno = codes.ORC_EINVAL;
  return e;
}

function isBytes(v) {
  return ArrayBuffer.isView(v) || v instanceof ArrayBuffer;
}

// ------------------------------------------------------------------------------- Message

const TEXT_FIELDS = ['id', 'version', 'source', 'target', 'correlationId', 'replyTo'];
const NUMBER_FIELDS = ['timestamp', 'ttl', 'priority'];
const FIELD_KEYS = new Set([...TEXT_FIELDS, ...NUMBER_FIELDS, 'headers', 'payload', 'contentType']);

Object.defineProperties(Message.prototype, {
  // Called by the native constructor for `new Message(type, fields)`.
  _applyFields: {
    value: function _applyFields(fields) {
      if (typeof fields !== 'object') throw invalid('Message fields must be an object');
      for (const key of Object.keys(fields)) {
        if (!FIELD_KEYS.has(key)) throw invalid(`unknown Message field '${key}'`);
      }
      for (const key of TEXT_FIELDS) if (fields[key] !== undefined) this[key] = fields[key];
      for (const key of NUMBER_FIELDS) if (fields[key] !== undefined) this[key] = fields[key];
      if (fields.headers != null) {
        for (const [k, v] of Object.entries(fields.headers)) this.setHeader(k, v);
      }
      if (fields.payload !== undefined) this.setPayload(fields.payload, fields.contentType);
      else if (fields.contentType !== undefined) throw invalid('contentType needs a payload');
    },
  },

  /** A header's value: a string, or the parsed JSON value of a JSON header; undefined when absent. */
  header: {
    value: function header(key) {
      const raw = this._headerRaw(key);
      if (raw === undefined) return undefined;
      return raw[1] ? JSON.parse(raw[0]) : raw[0];
    },
  },

  /** Sets a header: a string is stored as a string, anything else as its JSON value. */
  setHeader: {
    value: function setHeader(key, value) {
      if (typeof value === 'string') this._setHeader(key, value, false);
      else if (value === undefined) throw invalid(`header '${key}': value is undefined`);
      else this._setHeader(key, JSON.stringify(value), true);
      return this;
    },
  },

  /** A copy of the headers as an object, in order. */
  headers: {
    get() {
      const raw = this._headersRaw();
      const out = {};
      for (let i = 0; i < raw.length; i += 3) out[raw[i]] = raw[i + 2] ? JSON.parse(raw[i + 1]) : raw[i + 1];
      return out;
    },
    configurable: true,
  },

  /** 'json' | 'text' | 'binary', or null without a payload. */
  contentType: {
    get() {
      const c = this._contentTypeCode;
      return c === null ? null : CONTENT_TYPES[c];
    },
    configurable: true,
  },

  /** The payload: a Buffer for binary (and compressed or encrypted) content, a string for
   *  text, the parsed value for JSON; undefined without a payload. Setting it infers the
   *  content type (see setPayload). */
  payload: {
    get() {
      const c = this._contentTypeCode;
      if (c === null) return undefined;
      const opaque = c === 2 || this.compressed || this.encrypted;
      const raw = this._payloadRaw(!opaque);
      if (raw === undefined) return undefined;
      if (opaque) return raw[0];
      return c === 1 ? raw[0] : JSON.parse(raw[0]);
    },
    set(value) {
      this.setPayload(value);
    },
    configurable: true,
  },

  /** The payload's bytes as stored (JSON text for JSON content) in a new Buffer, or undefined. */
  payloadBytes: {
    get() {
      const raw = this._payloadRaw(false);
      return raw === undefined ? undefined : raw[0];
    },
    configurable: true,
  },

  /** Sets the payload. Without contentType: bytes (Buffer, TypedArray, ArrayBuffer) are
   *  binary, a string is text, anything else is JSON (JSON.stringify). With 'json', bytes are
   *  taken as JSON text and other values are stringified; with 'text' or 'binary' the value
   *  must be a string or bytes. */
  setPayload: {
    value: function setPayload(value, contentType) {
      let ct = contentType;
      if (ct === undefined || ct === null) {
        ct = isBytes(value) ? 'binary' : typeof value === 'string' ? 'text' : 'json';
      }
      const code = CONTENT_CODE[ct];
      if (code === undefined) throw invalid("contentType must be 'json', 'text' or 'binary'");
      let data = value;
      if (code === 0 && !isBytes(value)) {
        data = JSON.stringify(value);
        if (data === undefined) throw invalid('the payload has no JSON form');
      } else if (typeof value !== 'string' && !isBytes(value)) {
        throw invalid(`a ${ct} payload must be a string or bytes`);
      }
      this._setPayload(code, data);
      return this;
    },
  },

  /** The envelope as the JSON codec writes it, as a plain object (so JSON.stringify(msg) gives
   *  the wire form). */
  toJSON: {
    value: function toJSON() {
      return JSON.parse(this.encode('json').toString('utf8'));
    },
  },

  [util.inspect.custom]: {
    value: function inspect() {
      if (this.released) return 'Message <released>';
      return `Message { type: ${util.inspect(this.type)}, id: ${util.inspect(this.id)} }`;
    },
  },
});

Object.defineProperties(Message, {
  /** A message from the envelope's JSON object form (as toJSON returns it). */
  fromObject: {
    value: function fromObject(obj, options) {
      return Message.decode(JSON.stringify(obj), 'json', options);
    },
    writable: true,
    configurable: true,
  },
});

// --------------------------------------------------------------------------------- Queue

const DEFAULT_BATCH = 256;

function queueIterator(queue, batchSize) {
  let buf = [];
  let next = 0;
  let done = false;
  const end = () => {
    done = true;
    buf = [];
    next = 0;
    return { value: undefined, done: true };
  };
  return {
    async next() {
      if (next < buf.length) {
        const value = buf[next];
        buf[next++] = undefined;
        return { value, done: false };
      }
      if (done) return { value: undefined, done: true };
      for (;;) {
        let batch;
        try {
          batch = queue.popBatch(batchSize, 0);
        } catch (e) {
          if (e.code === 'ORC_ECLOSED') return end();
          end();
          throw e;
        }
        if (batch.length > 0) {
          const value = batch[0];
          batch[0] = undefined; // the iterator does not keep yielded messages alive
          buf = batch;
          next = 1;
          return { value, done: false };
        }
        await queue._wait();
        if (done) return { value: undefined, done: true };
      }
    },
    async return() {
      return end();
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

Object.defineProperties(Queue.prototype, {
  /** Waits (without blocking the thread) for the next message. Rejects with ORC_ECLOSED once
   *  the queue is closed and drained, ORC_EFAILED when it was failed. */
  pop: {
    value: async function pop() {
      for (;;) {
        const m = this.tryPop();
        if (m !== null) return m;
        await this._wait();
      }
    },
  },

  /** An async iterator over the messages, popping up to `batchSize` at a time; it ends when the
   *  queue is closed and drained and throws the failure when the queue is failed. Leaving the
   *  loop early discards the messages of the current batch that were not yet yielded (use
   *  batchSize 1 if every popped message must be handled). */
  messages: {
    value: function messages(options = {}) {
      const batchSize = options.batchSize ?? DEFAULT_BATCH;
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 65536) {
        throw invalid('batchSize must be an integer 1..65536');
      }
      return queueIterator(this, batchSize);
    },
  },

  [Symbol.asyncIterator]: {
    value: function asyncIterator() {
      return queueIterator(this, DEFAULT_BATCH);
    },
  },

  /** The number of queued messages now (same as depth). */
  length: {
    get() {
      return this.depth;
    },
    configurable: true,
  },

  [util.inspect.custom]: {
    value: function inspect() {
      return `Queue { depth: ${this.depth} }`;
    },
  },
});

// ------------------------------------------------------------------ Client / Server (next)
//
// The WebSocket client and server join once their C ABI (orc_client_*, orc_server_*) exists:
// native classes in src/client.c and src/server.c (registered in addon.c next to the Queue),
// wrapped here as EventEmitters ('open', 'message', 'close', 'error', events delivered from the
// library's I/O thread through napi_threadsafe_function) and async iterators over their
// incoming messages (a Queue the network layer pushes into, iterated as above). Nothing is
// exported for them until then.

module.exports = {
  Message,
  Queue,
  Priority,
  codes,
  errorName: native.errorName,
  strerror: native.strerror,
  libraryVersion: native.libraryVersion,
  libraryVersionNumber: native.libraryVersionNumber,
  addonPath,
};
