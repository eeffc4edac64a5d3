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

const STATES = ['connecting', 'open', 'reconnecting', 'closing', 'closed'];

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

module.exports = {
  Message,
  Queue,
  Runtime,
  Server,
  Client,
  Connection,
  Priority,
  codes,
  errorName: native.errorName,
  strerror: native.strerror,
  libraryVersion: native.libraryVersion,
  libraryVersionNumber: native.libraryVersionNumber,
  addonPath,
};
