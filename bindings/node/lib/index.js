'use strict';
// The Node binding of liborchestra: loads orchestra.node (the N-API addon in ../src, built by
// CMake) and adds the JavaScript conveniences on top of its native classes. Protocol logic
// lives in the library; this file only shapes values (bindings stay thin: docs/abi.md).

const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');

// ------------------------------------------------------------------------ loading the addon

// First the addon inside the package folder (cmake --install puts it there with the library
// beside it: it was built for this package), then ORCHESTRA_NODE_ADDON (when set, no build
// folder is tried), then the repository's build folder and the current directory's.
function addonCandidates() {
  const pkg = path.resolve(__dirname, '..');
  const packaged = ['package folder', path.join(pkg, 'orchestra.node')];
  const env = process.env.ORCHESTRA_NODE_ADDON;
  if (env) {
    if (fs.existsSync(packaged[1])) {
      process.emitWarning(`ORCHESTRA_NODE_ADDON=${env} is not used: the package carries its own addon (${packaged[1]})`);
    }
    return [packaged, ['ORCHESTRA_NODE_ADDON', path.resolve(env)]];
  }
  return [
    packaged,
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
// The header's enums and constants (lib/abi.js, written from include/orchestra.h by
// scripts/abi-tables and checked against it by the abi.consistency test).
const abi = require('./abi');

// ----------------------------------------------------------------------------- constants

/** The library's error codes by name, read from the library itself: orc_err_name over -1,
 *  -2, ... until it answers ORC_EUNKNOWN (the codes run without a gap: ORC_ERRNO_MAP). */
function libraryCodes() {
  const out = {};
  for (let code = -1; code > -1000; code--) {
    const name = native.errorName(code);
    if (name === 'ORC_EUNKNOWN') break;
    out[name] = code;
  }
  return out;
}

/** Error codes: codes.ORC_EFULL === -9; errors thrown by the binding carry `code` (the name)
 *  and `errno` (the number). */
const codes = Object.freeze(libraryCodes());

/** A header enum's value names in lower case, indexed by value: ['connecting', 'open', ...]. */
function lowerNames(cType) {
  const names = [];
  for (const [name, value] of Object.entries(abi.enums[cType].values)) names[value] = name.toLowerCase();
  return Object.freeze(names);
}

const Priority = Object.freeze({ ...abi.enums.orc_priority_t.values });
const CONTENT_TYPES = lowerNames('orc_content_type_t');
const CONTENT_CODE = Object.freeze(Object.fromEntries(CONTENT_TYPES.map((name, value) => [name, value])));

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
      if (code === CONTENT_CODE.json && !isBytes(value)) {
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

// -------------------------------------------------------------------- WebSocket: Runtime

const { EventEmitter } = require('node:events');
const ws = native._ws;

/** An I/O thread with its event loop (orc_runtime_t). One shared runtime serves every Server
 *  and Client of the process unless `runtime` is given in their options. */
class Runtime {
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('Runtime options must be an object');
    this._h = ws.runtimeNew(options.name ?? null);
  }

  /** Lets go of the runtime: its I/O thread stops once the servers and clients made on it are
   *  freed too (closed, or collected). */
  close() {
    if (this._h) ws.runtimeClose(this._h);
    this._h = null;
  }
}

function nativeOptions(options, what) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw invalid(`${what} options must be an object`);
  const o = { ...options };
  if (o.runtime !== undefined && o.runtime !== null) {
    if (!(o.runtime instanceof Runtime)) throw invalid('runtime must be a Runtime');
    if (!o.runtime._h) {
      const e = new Error('the Runtime was closed');
      e.code = 'ORC_ECLOSED';
      e.errno = codes.ORC_ECLOSED;
      throw e;
    }
    o.runtime = o.runtime._h;
  }
  return o;
}

// Event kinds from src/ws.c.
const EV_OPEN = 1;
const EV_MESSAGE = 2;
const EV_DRAIN = 3;
const EV_PONG = 4;
const EV_CLOSE = 5;
const EV_STATE = 6;

const STATES = lowerNames('orc_client_state_t');

/** A FIFO of events for `for await`, fed while an iterator is active. */
class EventChannel {
  constructor() {
    this.items = [];
    this.head = 0;
    this.waiter = null;
    this.ended = false;
    this.error = null;
  }
  push(v) {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: v, done: false });
    } else {
      this.items.push(v);
    }
  }
  end(error = null) {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }
  next() {
    if (this.head < this.items.length) {
      const value = this.items[this.head];
      this.items[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      if (this.error) {
        const e = this.error;
        this.error = null;
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }
}

// Events that arrive before the first iterator wait in a backlog the first iterator takes
// over (so `await client.connect(); for await (const m of client)` misses nothing). The
// backlog is bounded by options.iteratorBacklog (default 4096): beyond it the oldest events are
// dropped and counted in droppedBeforeIteration, so an object only used through its
// EventEmitter side does not accumulate them forever.
const DEFAULT_BACKLOG = 4096;

function initChannels(owner, options) {
  const limit = options.iteratorBacklog ?? DEFAULT_BACKLOG;
  if (!Number.isInteger(limit) || limit < 0) throw invalid('iteratorBacklog must be an integer >= 0');
  delete options.iteratorBacklog;
  owner._channels = new Set();
  owner._iterEnded = false;
  owner._backlogLimit = limit;
  owner._backlog = limit > 0 ? new EventChannel() : null;
  owner.droppedBeforeIteration = 0;
}

function channelIterator(owner) {
  let ch = owner._backlog;
  owner._backlog = null;
  if (!ch) {
    ch = new EventChannel();
    if (owner._iterEnded) ch.end();
  }
  owner._channels.add(ch);
  return {
    next: () => ch.next(),
    return: async () => {
      owner._channels.delete(ch);
      ch.end();
      ch.items = [];
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() { return this; },
  };
}

function feed(owner, ev) {
  const b = owner._backlog;
  if (b !== null) {
    b.push(ev);
    if (b.items.length - b.head > owner._backlogLimit) {
      b.items[b.head++] = undefined;
      owner.droppedBeforeIteration++;
    }
    return;
  }
  for (const ch of owner._channels) ch.push(ev);
}

function wantsEvents(owner) {
  return owner._backlog !== null || owner._channels.size > 0;
}

function endChannels(owner, error) {
  owner._iterEnded = true;
  if (owner._backlog) owner._backlog.end(error);
  for (const ch of owner._channels) ch.end(error);
  owner._channels.clear();
}

// ------------------------------------------------------------------ WebSocket: Connection

/** One connection accepted by a Server. Events: 'message' (data, isBinary), 'drain',
 *  'pong' (rttUs), 'close' (code, reason, clean). */
class Connection extends EventEmitter {
  constructor(server, id, handle) {
    super();
    this.server = server;
    this.id = id;
    this._h = handle;
    const [path, subprotocol, remoteAddress] = ws.connInfo(handle);
    this.path = path;
    this.subprotocol = subprotocol;
    this.remoteAddress = remoteAddress;
    this.closed = false;
  }

  /** Sends a string as a text message, bytes as a binary one. Returns false when the send
   *  buffer is above its high watermark (the message is queued; wait for 'drain'). Throws
   *  ORC_ECLOSED when the connection is not open, ORC_EFULL past maxBuffered. */
  send(data) {
    return ws.connSend(this._h, data);
  }

  /** Starts the closing handshake (code 1000 by default; reason up to 123 bytes of UTF-8). */
  close(code = 1000, reason = '') {
    ws.connClose(this._h, code, reason);
  }

  /** Sends a ping; the round trip arrives as 'pong' (rttUs) and in stats().rttUs. */
  ping() {
    ws.connPing(this._h);
  }

  stats() {
    return ws.connStats(this._h);
  }

  /** Bytes waiting in the send buffer. */
  get bufferedAmount() {
    return ws.connBufferedAmount(this._h);
  }

  [util.inspect.custom]() {
    return `Connection { id: ${this.id}, path: ${util.inspect(this.path)}, remoteAddress: ${util.inspect(this.remoteAddress)} }`;
  }
}

// ---------------------------------------------------------------------- WebSocket: Server

/** A WebSocket server. Events: 'listening' (port), 'connection' (conn), 'message' (conn, data,
 *  isBinary), 'drain' (conn), 'disconnect' (conn, code, reason, clean), 'close'. Async
 *  iteration yields { type, connection, ... } for the same events until the server closes. */
class Server extends EventEmitter {
  constructor(options = {}) {
    super();
    const o = nativeOptions(options, 'Server');
    if (o.onUpgrade !== undefined || o.onHttp !== undefined) {
      const e = new Error('onUpgrade/onHttp hooks are not available in the Node binding (see README: ' +
        'they run synchronously on the I/O thread, which cannot wait for the JS thread safely)');
      e.code = 'ORC_ENOTSUP';
      e.errno = codes.ORC_ENOTSUP;
      throw e;
    }
    if (o.queue !== undefined && o.queue !== null && !(o.queue instanceof Queue)) throw invalid('queue must be a Queue');
    this.connections = new Map();
    initChannels(this, o);
    this._state = 'new';
    this._closeWaiters = [];
    this._dispatch = (kind, id, a, b, c) => this._event(kind, id, a, b, c);
    this._h = ws.serverNew(o, this._dispatch);
    this.port = 0;
  }

  _event(kind, id, a, b, c) {
    switch (kind) {
      case EV_OPEN: {
        const conn = new Connection(this, id, a);
        this.connections.set(id, conn);
        this.emit('connection', conn);
        feed(this, { type: 'connection', connection: conn });
        break;
      }
      case EV_MESSAGE: {
        const conn = this.connections.get(id);
        if (!conn) return;
        conn.emit('message', a, b);
        this.emit('message', conn, a, b);
        if (wantsEvents(this)) feed(this, { type: 'message', connection: conn, data: a, isBinary: b });
        break;
      }
      case EV_DRAIN: {
        const conn = this.connections.get(id);
        if (!conn) return;
        conn.emit('drain');
        this.emit('drain', conn);
        feed(this, { type: 'drain', connection: conn });
        break;
      }
      case EV_PONG: {
        const conn = this.connections.get(id);
        if (conn) conn.emit('pong', a);
        break;
      }
      case EV_CLOSE: {
        const conn = this.connections.get(id);
        if (!conn) return;
        this.connections.delete(id);
        conn.closed = true;
        conn.emit('close', a, b, c);
        this.emit('disconnect', conn, a, b, c);
        feed(this, { type: 'disconnect', connection: conn, code: a, reason: b, clean: c });
        if (this._state === 'closing' && this.connections.size === 0) this._finish();
        break;
      }
      default:
        break;
    }
  }

  /** Binds and listens; resolves with the port (useful with port 0). Rejects with ORC_EIO
   *  (address in use, unknown host) or ORC_ESTATE (already listening). */
  async listen() {
    if (this._state !== 'new') {
      const e = new Error(`the server is ${this._state}`);
      e.code = 'ORC_ESTATE';
      e.errno = codes.ORC_ESTATE;
      throw e;
    }
    this.port = ws.serverListen(this._h);
    this._state = 'listening';
    ws.wsSetRef(this._h, true);   // a listening server keeps the process alive
    this.emit('listening', this.port);
    return this.port;
  }

  /** Open connections as the library counts them. */
  get connectionCount() {
    return ws.serverConnectionCount(this._h);
  }

  /** Sends one message to every open connection (the frame is built once). */
  broadcast(data) {
    ws.serverBroadcast(this._h, data);
  }

  /** Stops listening, closes every connection (code 1001 by default) and resolves once their
   *  closing handshakes are over (each bounded by closeTimeout); then frees the server. */
  close(code = 1001, reason = 'server shutting down') {
    if (this._state === 'closed') return Promise.resolve();
    const p = new Promise((resolve) => this._closeWaiters.push(resolve));
    if (this._state !== 'closing') {
      ws.serverClose(this._h, code, reason);
      this._state = 'closing';
      if (this.connections.size === 0) this._finish();
    }
    return p;
  }

  _finish() {
    this._state = 'closed';
    ws.wsSetRef(this._h, false);
    ws.serverFree(this._h);
    endChannels(this, null);
    const waiters = this._closeWaiters;
    this._closeWaiters = [];
    for (const w of waiters) w();
    this.emit('close');
  }

  [Symbol.asyncIterator]() {
    return channelIterator(this);
  }
}

// ---------------------------------------------------------------------- WebSocket: Client

function closedError(reason) {
  const e = new Error(reason ? `connection closed: ${reason}` : 'connection closed');
  e.code = 'ORC_EIO';
  e.errno = codes.ORC_EIO;
  e.reason = reason;
  return e;
}

/** A WebSocket client that may reconnect. Events: 'state' (state, reason), 'open',
 *  'message' (data, isBinary), 'drain', 'pong' (rttUs), 'close' (code, reason, clean) for each
 *  connection that closes, 'closed' (reason) once closed for good. Async iteration yields the
 *  messages ({ data, isBinary }) until the client is closed for good. */
class Client extends EventEmitter {
  constructor(url, options = {}) {
    super();
    if (typeof url !== 'string') throw invalid('url must be a string');
    const o = nativeOptions(options, 'Client');
    if (o.headers !== undefined && o.headers !== null) {
      if (typeof o.headers !== 'object') throw invalid('headers must be an object of strings');
      o.headers = Object.fromEntries(Object.entries(o.headers).map(([k, v]) => [k, String(v)]));
    }
    if (o.queue !== undefined && o.queue !== null && !(o.queue instanceof Queue)) throw invalid('queue must be a Queue');
    this.url = url;
    initChannels(this, o);
    this._reason = '';
    this._openWaiters = [];
    this._closeWaiters = [];
    this._connected = false;
    this._done = false;
    this._dispatch = (kind, id, a, b, c) => this._event(kind, id, a, b, c);
    this._h = ws.clientNew(url, o, this._dispatch);
  }

  /** 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed' */
  get state() {
    return STATES[ws.clientState(this._h)] ?? 'closed';
  }

  /** The reason of the last reconnection or of the final close ('' otherwise). */
  get reason() {
    return this._reason;
  }

  _event(kind, id, a, b, c) {
    switch (kind) {
      case EV_MESSAGE:
        this.emit('message', a, b);
        if (wantsEvents(this)) feed(this, { data: a, isBinary: b });
        break;
      case EV_DRAIN:
        this.emit('drain');
        break;
      case EV_PONG:
        this.emit('pong', a);
        break;
      case EV_CLOSE:
        this.emit('close', a, b, c);
        break;
      case EV_STATE: {
        const state = STATES[a] ?? 'closed';
        if (state === 'reconnecting' || state === 'closed') this._reason = b;
        this.emit('state', state, b);
        if (state === 'open') {
          const ws_ = this._openWaiters;
          this._openWaiters = [];
          for (const w of ws_) w.resolve(this);
          this.emit('open');
        } else if (state === 'closed') {
          this._finish(b);
        }
        break;
      }
      default:
        break;
    }
  }

  _finish(reason) {
    if (this._done) return;
    this._done = true;
    this._lastStats = ws.clientStats(this._h);
    ws.wsSetRef(this._h, false);
    ws.clientFree(this._h);
    const err = closedError(reason);
    const opens = this._openWaiters;
    this._openWaiters = [];
    for (const w of opens) w.reject(err);
    const closes = this._closeWaiters;
    this._closeWaiters = [];
    for (const w of closes) w();
    endChannels(this, null);
    this.emit('closed', reason);
  }

  /** Starts connecting and resolves once open. Rejects with ORC_EIO (err.reason says why:
   *  refused, timed out, gave up reconnecting) when the client closes first. */
  connect() {
    if (this._done) return Promise.reject(closedError(this._reason));
    const p = new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
    if (!this._connected) {
      this._connected = true;
      ws.wsSetRef(this._h, true);   // a connecting or open client keeps the process alive
      ws.clientConnect(this._h);
    } else if (this.state === 'open') {
      const w = this._openWaiters.pop();
      w.resolve(this);
    }
    return p;
  }

  /** Sends a string as text, bytes as binary; while connecting or reconnecting the message
   *  waits in the offline buffer and goes out in order after the next open. Returns false
   *  when the send buffer is above its high watermark (wait for 'drain'). Throws ORC_ECLOSED
   *  (closed for good), ORC_EFULL (offline buffer or send buffer full). */
  send(data) {
    if (this._done) {
      const e = new Error('client is closed');
      e.code = 'ORC_ECLOSED';
      e.errno = codes.ORC_ECLOSED;
      throw e;
    }
    return ws.clientSend(this._h, data);
  }

  ping() {
    ws.clientPing(this._h);
  }

  /** The open connection's counters (zeros when none is open) plus reconnects. */
  stats() {
    if (this._done) return { ...this._lastStats };
    return ws.clientStats(this._h);
  }

  get bufferedAmount() {
    return this._done ? 0 : ws.clientStats(this._h).bufferedAmount;
  }

  /** Closes for good (the closing handshake when open) and resolves once closed. */
  close(code = 1000, reason = '') {
    if (this._done) return Promise.resolve();
    const p = new Promise((resolve) => this._closeWaiters.push(resolve));
    ws.clientClose(this._h, code, reason);
    if (!this._connected) ws.wsSetRef(this._h, true);   // until the 'closed' state arrives
    return p;
  }

  [Symbol.asyncIterator]() {
    return channelIterator(this);
  }
}

// ------------------------------------------------------------------------------------ Agent

const ag = native._agent;
// Event kinds and states of orc_agent_event_kind_t / orc_agent_state_t.
const {
  ORC_AGENT_EVENT_TASK: AG_TASK, ORC_AGENT_EVENT_CANCEL: AG_CANCEL, ORC_AGENT_EVENT_INPUT: AG_INPUT,
  ORC_AGENT_EVENT_STATE: AG_STATE, ORC_AGENT_EVENT_ERROR: AG_ERROR, ORC_AGENT_EVENT_FAILOVER: AG_FAILOVER,
} = abi.constants;
const AGENT_STATES = lowerNames('orc_agent_state_t');

/** An error envelope from the hub: `code` is the hub's code ('AUTH_001', 'PARAM_001', ...),
 *  `hubMessage` its message; `taskId`/`attempt` when it was about a task, `payload` the whole
 *  error payload when there was one. */
class HubError extends Error {
  constructor(code, message, extra = {}) {
    super(code && !String(message).startsWith(code) ? `${code}: ${message}` : (message || code));
    this.name = 'HubError';
    this.code = code;
    this.hubMessage = message;
    this.taskId = extra.taskId ?? null;
    this.attempt = extra.attempt ?? 0;
    this.payload = extra.payload ?? null;
  }
}

/** The hub refused the registration (AUTH_001): the agent is 'failed' for good. */
class AuthError extends HubError {
  constructor(code, message, extra) {
    super(code, message, extra);
    this.name = 'AuthError';
  }
}

function agentSecret(secret) {
  if (typeof secret === 'string') {
    const hex = secret.trim();
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
      throw invalid('secret: a string secret must be hex digits (as `orchestra-hub key add` prints it); ' +
        'pass a Buffer for a raw secret');
    }
    return Buffer.from(hex, 'hex');
  }
  if (isBytes(secret)) return secret;
  throw invalid('secret must be a hex string or bytes (Buffer, TypedArray, ArrayBuffer)');
}

/** A task attempt assigned to this agent (task.assign). Events: 'cancel' (reason), 'input'
 *  (text). `signal` is an AbortSignal aborted when the hub cancels or re-assigns the attempt
 *  (pass it to child_process.spawn, fetch, ...). The actions throw ORC_ENOTFOUND once the
 *  attempt is no longer in flight, ORC_ECLOSED once the agent is closed. */
class AgentTask extends EventEmitter {
  constructor(agent, taskId, attempt, taskJson, paramsJson, payloadJson) {
    super();
    this.agent = agent;
    this.id = taskId;
    this.attempt = attempt;
    this.task = taskJson ? JSON.parse(taskJson) : {};
    this.params = paramsJson ? JSON.parse(paramsJson) : {};
    this.payload = payloadJson ? JSON.parse(payloadJson) : {};
    this.cancelled = false;
    this.cancelReason = null;
    this.done = false;
    this._abort = new AbortController();
    this.signal = this._abort.signal;
    this._inputs = new EventChannel();
  }

  _h() {
    return this.agent._h;
  }

  /** task.accepted: the task runs here. */
  accept() {
    ag.accept(this._h(), this.id, this.attempt);
  }

  /** task.rejected: the hub offers the task to another agent. */
  reject(reason) {
    ag.reject(this._h(), this.id, this.attempt, reason ?? null);
    this._finish();
  }

  /** task.progress: percent 0..100, an optional description of the current step. */
  progress(percent, step) {
    ag.progress(this._h(), this.id, this.attempt, percent, step ?? null);
  }

  /** task.stream: a chunk of output; type 'stdout' (default), 'stderr' or 'log'; bytes must be
   *  UTF-8. The library numbers the chunks (seq 0, 1, 2, ...) in call order. */
  stream(data, type = 'stdout') {
    ag.stream(this._h(), this.id, this.attempt, type, data);
  }

  /** task.result: { success = true, result (any JSON value), error (a message) }. The library
   *  adds the duration since the assign. */
  result({ success = true, result, error } = {}) {
    if (typeof success !== 'boolean') throw invalid('success must be a boolean');
    let json = null;
    if (result !== undefined) {
      json = JSON.stringify(result);
      if (json === undefined) throw invalid('result has no JSON form');
    }
    ag.result(this._h(), this.id, this.attempt, success, json, error ?? null);
    this._finish();
  }

  /** worker.output: type 'user' | 'assistant' (default) | 'tool' | 'tool-result' | 'system'. */
  output(content, { type = 'assistant', details } = {}) {
    ag.workerOutput(this._h(), this.id, this.attempt, type, content,
      details === undefined || details === null ? null : JSON.stringify(details));
  }

  /** worker.status: 'starting' | 'running' | 'paused' | 'completed' | 'error'. */
  status(status, message) {
    ag.workerStatus(this._h(), this.id, this.attempt, status, message ?? null);
  }

  /** The inputs sent to this task (worker.input), in order, until it is done. */
  inputs() {
    const ch = this._inputs;
    return { next: () => ch.next(), return: async () => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]() { return this; } };
  }

  _finish() {
    if (this.done) return;
    this.done = true;
    this._inputs.end();
  }

  /** The library let go of the attempt (it is over, or the agent closed): no more inputs. */
  _release() {
    this._inputs.end();
  }

  _cancel(reason) {
    this.cancelled = true;
    this.cancelReason = reason;
    this._finish();
    this._abort.abort(reason);
    this.emit('cancel', reason);
  }

  _input(text) {
    this._inputs.push(text);
    this.emit('input', text);
  }

  [util.inspect.custom]() {
    return `AgentTask { id: ${util.inspect(this.id)}, attempt: ${this.attempt} }`;
  }
}

/** An agent of a hub (docs/protocol.md): registers with a signed agent.register, reconnects,
 *  sends heartbeats; the protocol runs in the library. `url` is one hub's URL, or `urls` those
 *  of several hubs sharing one database: the agent starts with the first and, when a
 *  connection is lost or cannot be made, moves to the next (after the last, the first again),
 *  re-registering with its tasks in flight. Events: 'registered', 'task' (task), 'cancel'
 *  (task, reason), 'input' (task, text), 'state' (state, reason, code, url), 'failover' (url,
 *  reason: the agent moves to that hub), 'error' (HubError; without a listener it becomes a
 *  process warning), 'close'. `for await (const task of agent.tasks())` yields the tasks
 *  until the agent is closed. */
class Agent extends EventEmitter {
  constructor(options) {
    super();
    if (options === null || typeof options !== 'object') throw invalid('Agent options must be an object');
    const o = nativeOptions(options, 'Agent');
    if (o.urls !== undefined) {
      if (!Array.isArray(o.urls) || o.urls.length === 0 || !o.urls.every((u) => typeof u === 'string')) {
        throw invalid('urls must be a non-empty array of strings');
      }
      if (o.url !== undefined) throw invalid('set url or urls, not both');
    }
    for (const key of o.urls === undefined ? ['url', 'agentId', 'keyId'] : ['agentId', 'keyId']) {
      if (typeof o[key] !== 'string') throw invalid(`${key} must be a string`);
    }
    if (o.capabilities !== undefined && !Array.isArray(o.capabilities)) {
      throw invalid("capabilities must be an array of strings (e.g. ['shell'])");
    }
    o.secret = agentSecret(o.secret);
    if (o.metadata !== undefined && o.metadata !== null) {
      if (typeof o.metadata !== 'object' || Array.isArray(o.metadata)) throw invalid('metadata must be an object');
      o.metadataJson = JSON.stringify(o.metadata);
    }
    delete o.metadata;
    this.agentId = o.agentId;
    /** The hub URLs, in the order they are tried. */
    this.urls = Object.freeze(o.urls === undefined ? [o.url] : [...o.urls]);
    this.reason = '';
    this._tasks = new EventChannel();
    this._failure = null;
    this._startWaiters = [];
    this._closeWaiters = [];
    this._started = false;
    this._done = false;
    this._dispatch = (...args) => this._event(...args);
    this._h = ag.agentNew(o, this._dispatch);
  }

  /** 'connecting' | 'registered' | 'disconnected' | 'failed' | 'closed' */
  get state() {
    return AGENT_STATES[ag.agentState(this._h)] ?? 'closed';
  }

  /** The position in `urls` of the hub the agent is connected to, or is connecting to or will
   *  try next (orc_agent_url). */
  get urlIndex() {
    return ag.agentUrlIndex(this._h);
  }

  /** urls[urlIndex]. */
  get url() {
    return this.urls[this.urlIndex];
  }

  // From the addon: `task` is the AgentTask of the event's attempt, which the library carries
  // for it (orc_agent_event_set_task_data: the tasks in flight are the library's, not a map
  // here); a TASK event returns the AgentTask it makes.
  _event(kind, state, attempt, taskId, taskJson, paramsJson, input, reason, code, payloadJson, url, task) {
    switch (kind) {
      case AG_TASK: {
        const made = new AgentTask(this, taskId, attempt, taskJson, paramsJson, payloadJson);
        this.emit('task', made);
        this._tasks.push(made);
        return made;
      }
      case AG_CANCEL: {
        if (!task) break;
        task._cancel(reason || 'cancelled');
        this.emit('cancel', task, task.cancelReason);
        break;
      }
      case AG_INPUT: {
        if (!task) break;
        task._input(input ?? '');
        this.emit('input', task, input ?? '');
        break;
      }
      case AG_STATE: {
        const s = AGENT_STATES[state] ?? 'closed';
        if (s === 'disconnected' || s === 'failed') this.reason = reason ?? '';
        this.emit('state', s, reason ?? '', code, url);
        if (s === 'registered') {
          const waiters = this._startWaiters;
          this._startWaiters = [];
          for (const w of waiters) w.resolve(this);
          this.emit('registered');
        } else if (s === 'failed') {
          const Cls = code === 'AUTH_001' ? AuthError : HubError;
          this._failure = new Cls(code ?? '', reason || 'the hub refused the registration');
          ag.agentSetRef(this._h, false);
          this._rejectStart(this._failure);
          this._tasks.end(this._failure);
        } else if (s === 'closed') {
          this._finish();
        }
        break;
      }
      case AG_ERROR: {
        const err = new HubError(code ?? '', reason ?? '', {
          taskId, attempt, payload: payloadJson ? JSON.parse(payloadJson) : null,
        });
        if (this.listenerCount('error') > 0) this.emit('error', err);
        else process.emitWarning(`orchestra Agent ${this.agentId}: the hub answered ${err.message}`, 'HubError');
        break;
      }
      case AG_FAILOVER:
        this.emit('failover', url, reason ?? '');
        break;
      default:
        break;
    }
  }

  _rejectStart(err) {
    const waiters = this._startWaiters;
    this._startWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  _finish() {
    if (this._done) return;
    this._done = true;
    ag.agentSetRef(this._h, false);
    ag.agentFree(this._h);
    this._rejectStart(this._failure ?? Object.assign(new Error('the agent was closed before it registered'),
      { code: 'ORC_ECLOSED', errno: codes.ORC_ECLOSED }));
    // The tasks still in flight end their inputs when the library lets go of them (_release).
    this._tasks.end(this._failure);
    const waiters = this._closeWaiters;
    this._closeWaiters = [];
    for (const w of waiters) w();
    this.emit('close');
  }

  /** Connects and registers; resolves once the hub answered agent.registered. Rejects with
   *  AuthError (code 'AUTH_001') or HubError when the hub refuses, ORC_ECLOSED when the agent
   *  is closed first. While the hub cannot be reached the agent keeps trying. From start()
   *  until close() (or a refusal) the agent keeps the process alive. */
  start() {
    if (this._failure) return Promise.reject(this._failure);
    if (this._done) {
      return Promise.reject(Object.assign(new Error('the agent is closed'), { code: 'ORC_ECLOSED', errno: codes.ORC_ECLOSED }));
    }
    if (this.state === 'registered') return Promise.resolve(this);
    const p = new Promise((resolve, reject) => this._startWaiters.push({ resolve, reject }));
    if (!this._started) {
      this._started = true;
      ag.agentSetRef(this._h, true);
      ag.agentStart(this._h);
    }
    return p;
  }

  /** The tasks assigned to this agent, in order (also those that arrived before the call).
   *  Ends when the agent is closed; throws the AuthError/HubError of a refused registration. */
  tasks() {
    const ch = this._tasks;
    return { next: () => ch.next(), return: async () => ({ value: undefined, done: true }),
      [Symbol.asyncIterator]() { return this; } };
  }

  /** Closes for good (nothing more is sent) and resolves once closed. Tasks in flight end
   *  their inputs(); their actions throw ORC_ECLOSED. */
  close() {
    if (this._done) return Promise.resolve();
    const p = new Promise((resolve) => this._closeWaiters.push(resolve));
    if (this._failure) {
      this._finish();   // a failed agent has stopped already
      return p;
    }
    ag.agentSetRef(this._h, true);   // until the 'closed' state arrives
    ag.agentClose(this._h);
    return p;
  }
}

module.exports = {
  Message,
  Queue,
  Runtime,
  Server,
  Client,
  Connection,
  Agent,
  AgentTask,
  HubError,
  AuthError,
  Priority,
  codes,
  errorName: native.errorName,
  strerror: native.strerror,
  libraryVersion: native.libraryVersion,
  libraryVersionNumber: native.libraryVersionNumber,
  addonPath,
};
