// Types of the Node binding of liborchestra (lib/index.js over orchestra.node).

// Buffer and node:events are from @types/node (present in any TypeScript project for Node).
import { EventEmitter } from 'node:events';

/** Every error the binding throws is an Error (TypeError for arguments of the wrong type)
 *  with the library's code: `code` is the constant's name ('ORC_EFULL'), `errno` its value
 *  (-9), and `message` the library's detailed message for the failed call. */
export interface OrchestraError extends Error {
  code: ErrorCodeName;
  errno: number;
}

// BEGIN generated: ErrorCodeName (scripts/abi-tables)
export type ErrorCodeName =
  | 'ORC_EINVAL' | 'ORC_ENOMEM' | 'ORC_EPARSE' | 'ORC_ETOOBIG' | 'ORC_EAGAIN'
  | 'ORC_ETIMEDOUT' | 'ORC_ECLOSED' | 'ORC_EFAILED' | 'ORC_EFULL' | 'ORC_ENOSPC'
  | 'ORC_ECRYPTO' | 'ORC_ENOTFOUND' | 'ORC_ESTATE' | 'ORC_ENOTSUP' | 'ORC_EVERSION'
  | 'ORC_EIO' | 'ORC_EINTERNAL' | 'ORC_ETLS';
// END generated: ErrorCodeName

/** The codes by name: codes.ORC_EFULL === -9. */
export const codes: Readonly<Record<ErrorCodeName, number>>;
export function errorName(code: number): string;
export function strerror(code: number): string;

/** The loaded library's version ("0.1.0") and number (major * 10000 + minor * 100 + patch). */
export const libraryVersion: string;
export const libraryVersionNumber: number;
/** The orchestra.node file that was loaded. */
export const addonPath: string;

// BEGIN generated: Priority (scripts/abi-tables)
export const Priority: Readonly<{ LOW: 0; NORMAL: 1; HIGH: 2; CRITICAL: 3 }>;
export type PriorityValue = 0 | 1 | 2 | 3;
// END generated: Priority

export type ContentType = 'json' | 'text' | 'binary';
export type Format = 'json' | 'msgpack';
export type Bytes = Buffer | ArrayBufferView | ArrayBuffer;
/** A JSON value as JSON.stringify accepts it. */
export type JsonValue = unknown;

export interface MessageFields {
  id?: string;
  version?: string;
  source?: string | null;
  target?: string | null;
  correlationId?: string | null;
  replyTo?: string | null;
  /** Milliseconds since the Unix epoch. */
  timestamp?: number;
  /** Time to live in milliseconds (a queue drops the message that long after the push). */
  ttl?: number | null;
  priority?: PriorityValue;
  /** String values are string headers; anything else is stored as its JSON value. */
  headers?: Record<string, JsonValue>;
  payload?: string | Bytes | JsonValue;
  /** How to store `payload`; inferred when absent (bytes: binary, string: text, else JSON). */
  contentType?: ContentType;
}

export interface DecodeOptions {
  /** Largest input in bytes (default 16 MiB). */
  maxSize?: number;
  /** Deepest nesting, the envelope being level 1 (default 64, at most 256). */
  maxDepth?: number;
}

/** One envelope (orc_msg_t). Getters copy out of the library's message. */
export class Message {
  /** A message of `type` (a dotted subject) with a random UUID id, the current time and
   *  version "1.0", then the given fields. */
  constructor(type: string, fields?: MessageFields);

  /** Parses an envelope; throws ORC_EPARSE (with the byte offset) or ORC_ETOOBIG. */
  static decode(data: string | Bytes, format?: Format, options?: DecodeOptions): Message;
  /** A message from the envelope's JSON object form (as toJSON returns it). */
  static fromObject(obj: object, options?: DecodeOptions): Message;

  id: string;
  type: string;
  version: string;
  /** null when absent; setting null clears the field. */
  source: string | null;
  target: string | null;
  correlationId: string | null;
  replyTo: string | null;
  timestamp: number | null;
  ttl: number | null;
  priority: PriorityValue;
  readonly compressed: boolean;
  readonly encrypted: boolean;
  readonly headerCount: number;
  /** null without a payload. */
  readonly contentType: ContentType | null;
  /** true after release(). */
  readonly released: boolean;

  /** A header's value (a string, or the parsed value of a JSON header); undefined if absent. */
  header(key: string): JsonValue | undefined;
  setHeader(key: string, value: JsonValue): this;
  /** false when there was no such header. */
  removeHeader(key: string): boolean;
  /** A copy of the headers, in order. */
  readonly headers: Record<string, JsonValue>;

  /** Buffer for binary (and compressed or encrypted) content, string for text, the parsed
   *  value for JSON; undefined without a payload. Setting infers the content type. */
  payload: any;
  /** The stored bytes (JSON text for JSON content) as a new Buffer; undefined without payload. */
  readonly payloadBytes: Buffer | undefined;
  setPayload(value: string | Bytes | JsonValue, contentType?: ContentType): this;
  clearPayload(): void;
  /** zlib-compresses a payload larger than `threshold` bytes (default 1024) when that helps. */
  compress(threshold?: number): boolean;
  /** Refuses output above `maxSize` bytes (0: the default, 64 MiB). */
  decompress(maxSize?: number): void;

  /** The envelope on the wire: JSON text (UTF-8) or MessagePack bytes. */
  encode(format?: Format): Buffer;
  /** The envelope's JSON object form (JSON.stringify(message) gives the wire JSON). */
  toJSON(): Record<string, unknown>;
  /** An independent deep copy. */
  clone(): Message;
  /** Drops the reference to the library's message now rather than at garbage collection;
   *  any later use throws ORC_ESTATE. */
  release(): void;
}

export type QueuePolicy = 'block' | 'reject' | 'dropOldest' | 'dropNewest';

export interface QueueOptions {
  /** Max queued messages over all lanes; 0 = unbounded. Default 65536. */
  capacity?: number;
  /** What a push into a full queue does. Default 'block'. */
  policy?: QueuePolicy;
  /** For 'block': < 0 waits forever (default), 0 not at all, > 0 that many ms; then ORC_EFULL.
   *  A blocked push blocks the calling JS thread (meant for worker threads). */
  pushTimeoutMs?: number;
  /** A name for errors and metrics. */
  name?: string;
  /** How long (µs) a reader polls an empty queue before it sleeps; 0..1000000. */
  spinUs?: number;
}

export interface QueueStats {
  pushed: number;
  popped: number;
  handedOff: number;
  droppedOverflow: number;
  expired: number;
  rejected: number;
  blockedPushes: number;
  depth: number;
  depthHighWater: number;
  waitP50Ns: number;
  waitP95Ns: number;
  waitP99Ns: number;
  waitMaxNs: number;
  waitCount: number;
}

/** The h2A queue (orc_queue_t): four priority lanes, FIFO within a lane, bounded with a
 *  backpressure policy, close and fail. Thread-safe: share it with worker_threads through
 *  share() / Queue.fromShared(). */
export class Queue implements AsyncIterable<Message> {
  constructor(options?: QueueOptions);

  /** A Queue object over the queue a share() token names; each token is used once
   *  (ORC_ENOTFOUND otherwise). Works in any worker thread. */
  static fromShared(token: bigint): Queue;
  /** A token (structured-cloneable, e.g. in workerData) holding a reference to this queue
   *  until Queue.fromShared takes it. */
  share(): bigint;

  /** The queue takes its own reference; the Message stays usable. Throws ORC_EFULL,
   *  ORC_ECLOSED or ORC_EFAILED. */
  push(message: Message): void;
  /** Pushes in order under one lock; returns how many were taken (throws if none was). */
  pushBatch(messages: Message[]): number;
  /** The next message, or null when empty. Throws ORC_ECLOSED once closed and drained,
   *  ORC_EFAILED when failed. */
  tryPop(): Message | null;
  /** Up to `max` (default 256) messages; [] when none came. A `timeoutMs` other than 0
   *  blocks the calling JS thread that long (meant for worker threads). */
  popBatch(max?: number, timeoutMs?: number): Message[];
  /** Waits for the next message without blocking the thread. Rejects with ORC_ECLOSED once
   *  closed and drained, ORC_EFAILED when failed. */
  pop(): Promise<Message>;
  /** Async iteration in batches of `batchSize` (default 256); ends when the queue is closed
   *  and drained, throws when it is failed. Leaving the loop early discards the rest of the
   *  current batch. */
  messages(options?: { batchSize?: number }): AsyncIterableIterator<Message>;
  [Symbol.asyncIterator](): AsyncIterableIterator<Message>;

  /** Calls handler(message, reason) on this thread for every message the queue drops
   *  ('overflow' by dropOldest/dropNewest, 'expired' by TTL, 'freed' when the queue is freed
   *  with messages in it), whichever thread caused the drop; null removes it. One handler per
   *  queue: a later call from any thread replaces it. The handler does not keep the process
   *  alive; a throw is an uncaught exception. */
  onDrop(handler: ((message: Message, reason: 'overflow' | 'expired' | 'freed') => void) | null): void;
  /** Pushes fail with ORC_ECLOSED; readers drain what is left, then end. Idempotent. */
  close(): void;
  /** Pushes and pops fail with ORC_EFAILED and `message`; the first failure wins. */
  fail(message?: string, code?: number): void;
  stats(): QueueStats;
  readonly depth: number;
  readonly length: number;
  /** The readiness eventfd (owned by the queue: never read, write or close it). */
  readonly fd: number;
}

// ------------------------------------------------------------------------------ WebSocket

/** An I/O thread with its event loop (orc_runtime_t). One shared runtime serves every Server
 *  and Client of the process unless `runtime` is given in their options. */
export class Runtime {
  constructor(options?: { name?: string });
  /** Lets go of the runtime; its thread stops once its servers and clients are freed too. */
  close(): void;
}

export type SlowConsumer = 'close1008' | 'close1013' | 'drop';

/** Settings shared by servers and clients. Times in milliseconds, sizes in bytes. */
export interface WebSocketOptions {
  /** Largest incoming message (inflated); also the largest frame. Default 16 MiB. */
  maxMessageSize?: number;
  maxFrameSize?: number;
  /** Heartbeat ping period, 0: none. Default 30000. */
  pingInterval?: number;
  /** No pong within this: the peer is dead (1006). Default 10000. */
  pongTimeout?: number;
  /** Wait for the peer's close frame after ours. Default 5000. */
  closeTimeout?: number;
  /** Server: the opening handshake. Default 10000. */
  handshakeTimeout?: number;
  /** send() returns false above this. Default 1 MiB. */
  highWatermark?: number;
  /** 'drain' when the send buffer falls to this. Default 256 KiB. */
  lowWatermark?: number;
  /** Hard limit of the send buffer; past it the slowConsumer policy applies. Default 16 MiB. */
  maxBuffered?: number;
  slowConsumer?: SlowConsumer;
  /** permessage-deflate (offer / accept). Default false. */
  deflate?: boolean;
  /** Smaller messages go out uncompressed. Default 1024. */
  compressionThreshold?: number;
  /** zlib level 1..9. Default 6. */
  compressionLevel?: number;
  /** Run on this runtime instead of the shared one. */
  runtime?: Runtime;
  /** Also deliver messages into this Queue (Messages of type 'ws.message'); with queueEvents,
   *  'ws.open', 'ws.drain', 'ws.close' too. */
  queue?: Queue;
  queueEvents?: boolean;
  /** Events kept for the first async iterator before it starts (default 4096; the oldest
   *  beyond are dropped and counted in droppedBeforeIteration; 0: none kept). */
  iteratorBacklog?: number;
}

export interface ServerOptions extends WebSocketOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** 0 (default): an ephemeral port, returned by listen(). */
  port?: number;
  /** listen() backlog. Default 511. */
  backlog?: number;
  ipv6Only?: boolean;
  /** Paths that accept upgrades (default: every path). */
  paths?: string[];
  /** Ours, best first. */
  subprotocols?: string[];
  /** More connections get 503. 0 (default): no limit. */
  maxConnections?: number;
  /** wss: certificate chain and private key files (PEM), both or neither. */
  tlsCert?: string;
  tlsKey?: string;
  /** Ask clients for a certificate signed by a CA in this file (PEM). */
  tlsClientCa?: string;
  /** Not available in Node (ORC_ENOTSUP): the library runs them synchronously on its I/O
   *  thread, which cannot wait for the JS thread safely. */
  onUpgrade?: never;
  onHttp?: never;
}

export interface ClientOptions extends WebSocketOptions {
  /** Extra request header fields (Authorization, Origin, ...). */
  headers?: Record<string, string>;
  subprotocols?: string[];
  /** Connect plus handshake, per attempt. Default 10000. */
  connectTimeout?: number;
  /** Reconnect after losing the connection (full-jitter exponential backoff). Default false. */
  reconnect?: boolean;
  reconnectInitialDelay?: number;
  reconnectMaxDelay?: number;
  /** In a row; 0 (default): no limit. */
  reconnectMaxAttempts?: number;
  /** Messages sent while not open wait here and go out in order after the next open. */
  offlineBufferMessages?: number;
  offlineBufferBytes?: number;
  /** wss:// only: CAs (PEM file) the server's certificate must chain to, besides the system
   *  store (tlsUseSystemStore, default true). The host name is checked and sent as SNI. */
  tlsCa?: string;
  tlsUseSystemStore?: boolean;
  /** false turns every certificate check off (tests only). Default true. */
  tlsVerify?: boolean;
  /** A client certificate and key (PEM) for servers that ask for one. */
  tlsCert?: string;
  tlsKey?: string;
}

export interface ConnectionStats {
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  messagesDropped: number;
  errors: number;
  /** Last ping round trip in µs, 0 before any. */
  rttUs: number;
  uptimeUs: number;
  bufferedAmount: number;
}

export interface ClientStats extends ConnectionStats {
  reconnects: number;
}

/** A message: a string for text, a Buffer for binary. */
export type WsData = string | Buffer;
/** What send() takes: a string is sent as text, bytes as binary. */
export type WsSendable = string | Bytes;

/** One connection accepted by a Server. */
export class Connection extends EventEmitter {
  readonly server: Server;
  /** Unique in the process. */
  readonly id: number;
  readonly path: string;
  readonly subprotocol: string | null;
  /** "127.0.0.1:50312", "[::1]:50312" */
  readonly remoteAddress: string;
  /** true once 'close' was emitted. */
  readonly closed: boolean;
  /** Bytes waiting in the send buffer. */
  readonly bufferedAmount: number;
  /** false when the send buffer is above its high watermark (queued; wait for 'drain').
   *  Throws ORC_ECLOSED when not open, ORC_EFULL past maxBuffered. */
  send(data: WsSendable): boolean;
  /** Code 1000..4999 (default 1000), reason up to 123 bytes of UTF-8. */
  close(code?: number, reason?: string): void;
  ping(): void;
  stats(): ConnectionStats;

  on(event: 'message', listener: (data: WsData, isBinary: boolean) => void): this;
  on(event: 'drain', listener: () => void): this;
  on(event: 'pong', listener: (rttUs: number) => void): this;
  on(event: 'close', listener: (code: number, reason: string, clean: boolean) => void): this;
  once(event: 'message', listener: (data: WsData, isBinary: boolean) => void): this;
  once(event: 'drain', listener: () => void): this;
  once(event: 'pong', listener: (rttUs: number) => void): this;
  once(event: 'close', listener: (code: number, reason: string, clean: boolean) => void): this;
}

export type ServerEvent =
  | { type: 'connection'; connection: Connection }
  | { type: 'message'; connection: Connection; data: WsData; isBinary: boolean }
  | { type: 'drain'; connection: Connection }
  | { type: 'disconnect'; connection: Connection; code: number; reason: string; clean: boolean };

/** A WebSocket server (RFC 6455, permessage-deflate) running on the library's I/O thread. */
export class Server extends EventEmitter implements AsyncIterable<ServerEvent> {
  constructor(options?: ServerOptions);
  /** The port listened on (0 before listen()). */
  readonly port: number;
  /** Open connections by id. */
  readonly connections: Map<number, Connection>;
  readonly connectionCount: number;
  /** Events dropped from the backlog before the first iteration. */
  readonly droppedBeforeIteration: number;
  /** Binds and listens; resolves with the port. Rejects with ORC_EIO (address in use, unknown
   *  host), ORC_ESTATE (already listening or closed). A listening server keeps the process
   *  alive until close(). */
  listen(): Promise<number>;
  /** One message to every open connection. */
  broadcast(data: WsSendable): void;
  /** Stops listening, closes every connection (default 1001) and resolves when all are closed. */
  close(code?: number, reason?: string): Promise<void>;
  /** Events from the first call on (the first iterator also gets the backlog); ends at close. */
  [Symbol.asyncIterator](): AsyncIterableIterator<ServerEvent>;

  on(event: 'listening', listener: (port: number) => void): this;
  on(event: 'connection', listener: (conn: Connection) => void): this;
  on(event: 'message', listener: (conn: Connection, data: WsData, isBinary: boolean) => void): this;
  on(event: 'drain', listener: (conn: Connection) => void): this;
  on(event: 'disconnect', listener: (conn: Connection, code: number, reason: string, clean: boolean) => void): this;
  on(event: 'close', listener: () => void): this;
  once(event: 'listening', listener: (port: number) => void): this;
  once(event: 'connection', listener: (conn: Connection) => void): this;
  once(event: 'message', listener: (conn: Connection, data: WsData, isBinary: boolean) => void): this;
  once(event: 'drain', listener: (conn: Connection) => void): this;
  once(event: 'disconnect', listener: (conn: Connection, code: number, reason: string, clean: boolean) => void): this;
  once(event: 'close', listener: () => void): this;
}

// BEGIN generated: ClientState (scripts/abi-tables)
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed';
// END generated: ClientState

/** A WebSocket client with optional reconnection and an offline buffer. */
export class Client extends EventEmitter implements AsyncIterable<{ data: WsData; isBinary: boolean }> {
  /** ws:// or wss:// URL; throws ORC_EINVAL for a bad URL or option, ORC_EIO for a CA or
   *  certificate file that cannot be read. */
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  /** Why it is reconnecting or closed ('' otherwise). */
  readonly reason: string;
  readonly bufferedAmount: number;
  readonly droppedBeforeIteration: number;
  /** Starts connecting; resolves once open. Rejects with ORC_EIO (err.reason: refused, timed
   *  out, gave up reconnecting) when the client closes first. */
  connect(): Promise<this>;
  /** false when above the high watermark (wait for 'drain'). While connecting/reconnecting the
   *  message waits in the offline buffer. Throws ORC_ECLOSED (closed), ORC_EFULL (buffer full). */
  send(data: WsSendable): boolean;
  ping(): void;
  stats(): ClientStats;
  /** Closes for good (default 1000) and resolves once closed. */
  close(code?: number, reason?: string): Promise<void>;
  /** Messages until the client is closed for good. */
  [Symbol.asyncIterator](): AsyncIterableIterator<{ data: WsData; isBinary: boolean }>;

  on(event: 'state', listener: (state: ClientState, reason: string) => void): this;
  on(event: 'open' | 'drain', listener: () => void): this;
  on(event: 'message', listener: (data: WsData, isBinary: boolean) => void): this;
  on(event: 'pong', listener: (rttUs: number) => void): this;
  on(event: 'close', listener: (code: number, reason: string, clean: boolean) => void): this;
  on(event: 'closed', listener: (reason: string) => void): this;
  once(event: 'state', listener: (state: ClientState, reason: string) => void): this;
  once(event: 'open' | 'drain', listener: () => void): this;
  once(event: 'message', listener: (data: WsData, isBinary: boolean) => void): this;
  once(event: 'pong', listener: (rttUs: number) => void): this;
  once(event: 'close', listener: (code: number, reason: string, clean: boolean) => void): this;
  once(event: 'closed', listener: (reason: string) => void): this;
}

// ------------------------------------------------------------------------------------ Agent

// BEGIN generated: AgentState (scripts/abi-tables)
export type AgentState = 'connecting' | 'registered' | 'disconnected' | 'failed' | 'closed';
// END generated: AgentState

export interface AgentOptions {
  /** The hub's agent endpoint: 'ws://127.0.0.1:7420/agent' or 'wss://...'. Required unless
   *  `urls` is given. */
  url?: string;
  /** Several hubs' agent endpoints (instead of `url`): the agent starts with the first and,
   *  when a connection is lost or cannot be made, moves to the next (after the last, the first
   *  again), re-registering with its tasks in flight ('failover' events). */
  urls?: string[];
  agentId: string;
  /** The hub's name for the shared secret. */
  keyId: string;
  /** The shared secret: bytes, or a string of hex digits (as `orchestra-hub key add` prints
   *  it), which is decoded. */
  secret: string | Bytes;
  /** e.g. ['shell', 'python']: the hub only assigns tasks whose capabilities this covers. */
  capabilities?: string[];
  /** Default: agentId. */
  name?: string;
  /** The agent's own version. Default '0.0.0'. */
  version?: string;
  /** Sent as agent.register's metadata. */
  metadata?: Record<string, unknown>;
  /** Tasks run at once. Default 1. */
  maxConcurrency?: number;
  /** ms without agent.registered after connecting before the connection is dropped (and
   *  retried). Default 30000. */
  requestTimeout?: number;
  /** ms for TCP + TLS + WebSocket handshake, per attempt. Default 10000. */
  connectTimeout?: number;
  /** Reconnection backoff in ms (full jitter). Defaults 100 and 30000. */
  reconnectInitialDelay?: number;
  reconnectMaxDelay?: number;
  /** wss:// only: a PEM file of CAs to trust besides the system's. */
  tlsCa?: string;
  /** false: no certificate checks at all (tests only). Default true. */
  tlsVerify?: boolean;
  runtime?: Runtime;
}

/** An error envelope from the hub. */
export class HubError extends Error {
  /** The hub's code: 'AUTH_001', 'PARAM_001', 'TASK_001', ... */
  readonly code: string;
  readonly hubMessage: string;
  readonly taskId: string | null;
  readonly attempt: number;
  readonly payload: Record<string, unknown> | null;
}

/** The hub refused the registration (AUTH_001); the agent is 'failed' for good. */
export class AuthError extends HubError {}

export interface TaskResult {
  /** Default true. */
  success?: boolean;
  /** Any JSON value. */
  result?: JsonValue;
  error?: string;
}

export type StreamType = 'stdout' | 'stderr' | 'log';
export type WorkerOutputType = 'user' | 'assistant' | 'tool' | 'tool-result' | 'system';
export type WorkerStatus = 'starting' | 'running' | 'paused' | 'completed' | 'error';

/** A task attempt assigned to the agent. The actions throw ORC_ENOTFOUND once the attempt is
 *  no longer in flight, ORC_ECLOSED once the agent is closed, ORC_EINVAL for bad values. */
export class AgentTask extends EventEmitter {
  readonly agent: Agent;
  readonly id: string;
  readonly attempt: number;
  /** The assign's "task" object (type, tool, capabilities, parameters, priority, sessionId). */
  readonly task: Record<string, any>;
  /** Its "parameters" ({} when absent). */
  readonly params: Record<string, any>;
  /** The whole task.assign payload. */
  readonly payload: Record<string, any>;
  readonly cancelled: boolean;
  readonly cancelReason: string | null;
  /** true once result() or reject() was sent, or the attempt was cancelled. */
  readonly done: boolean;
  /** Aborted when the hub cancels or re-assigns the attempt. */
  readonly signal: AbortSignal;
  accept(): void;
  reject(reason?: string): void;
  /** percent 0..100. */
  progress(percent: number, step?: string): void;
  /** Bytes must be UTF-8. */
  stream(data: string | Bytes, type?: StreamType): void;
  result(outcome?: TaskResult): void;
  output(content: string, options?: { type?: WorkerOutputType; details?: Record<string, unknown> }): void;
  status(status: WorkerStatus, message?: string): void;
  /** worker.input sent to this task, until it is done. */
  inputs(): AsyncIterableIterator<string>;

  on(event: 'cancel', listener: (reason: string) => void): this;
  on(event: 'input', listener: (text: string) => void): this;
  once(event: 'cancel', listener: (reason: string) => void): this;
  once(event: 'input', listener: (text: string) => void): this;
}

/** An agent of an orchestra hub; the protocol (signed registration, reconnection, heartbeats,
 *  stream numbering) runs in the library. */
export class Agent extends EventEmitter {
  /** Throws ORC_EINVAL for a missing or bad option, ORC_EIO for a CA file that cannot be read. */
  constructor(options: AgentOptions);
  readonly agentId: string;
  /** The hub URLs in the order they are tried (`[url]` for one hub). */
  readonly urls: readonly string[];
  /** The hub the agent is connected to, or is connecting to or will try next. */
  readonly url: string;
  /** The position of `url` in `urls`. */
  readonly urlIndex: number;
  readonly state: AgentState;
  /** Why the agent last disconnected or failed. */
  readonly reason: string;
  /** Resolves once registered; rejects with AuthError/HubError when refused, ORC_ECLOSED when
   *  closed first. */
  start(): Promise<this>;
  /** Tasks in order until the agent is closed; throws the refusal of a re-registration. */
  tasks(): AsyncIterableIterator<AgentTask>;
  /** Closes for good and resolves once closed. */
  close(): Promise<void>;

  on(event: 'registered' | 'close', listener: () => void): this;
  on(event: 'task', listener: (task: AgentTask) => void): this;
  on(event: 'cancel', listener: (task: AgentTask, reason: string) => void): this;
  on(event: 'input', listener: (task: AgentTask, text: string) => void): this;
  on(event: 'state', listener: (state: AgentState, reason: string, code: string | null, url: string) => void): this;
  on(event: 'failover', listener: (url: string, reason: string) => void): this;
  on(event: 'error', listener: (err: HubError) => void): this;
  once(event: 'registered' | 'close', listener: () => void): this;
  once(event: 'task', listener: (task: AgentTask) => void): this;
  once(event: 'cancel', listener: (task: AgentTask, reason: string) => void): this;
  once(event: 'input', listener: (task: AgentTask, text: string) => void): this;
  once(event: 'state', listener: (state: AgentState, reason: string, code: string | null, url: string) => void): this;
  once(event: 'failover', listener: (url: string, reason: string) => void): this;
  once(event: 'error', listener: (err: HubError) => void): this;
}
