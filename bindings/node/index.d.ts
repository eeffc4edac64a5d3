// Types of the Node binding of liborchestra (lib/index.js over orchestra.node).

// Buffer is the global of @types/node (present in any TypeScript project for Node).

/** Every error the binding throws is an Error (TypeError for arguments of the wrong type)
 *  with the library's code: `code` is the constant's name ('ORC_EFULL'), `errno` its value
 *  (-9), and `message` the library's detailed message for the failed call. */
export interface OrchestraError extends Error {
  code: ErrorCodeName;
  errno: number;
}

export type ErrorCodeName =
  | 'ORC_EINVAL' | 'ORC_ENOMEM' | 'ORC_EPARSE' | 'ORC_ETOOBIG' | 'ORC_EAGAIN'
  | 'ORC_ETIMEDOUT' | 'ORC_ECLOSED' | 'ORC_EFAILED' | 'ORC_EFULL' | 'ORC_ENOSPC'
  | 'ORC_ECRYPTO' | 'ORC_ENOTFOUND' | 'ORC_ESTATE' | 'ORC_ENOTSUP' | 'ORC_EVERSION'
  | 'ORC_EIO' | 'ORC_EINTERNAL';

/** The codes by name: codes.ORC_EFULL === -9. */
export const codes: Readonly<Record<ErrorCodeName, number>>;
export function errorName(code: number): string;
export function strerror(code: number): string;

/** The loaded library's version ("0.1.0") and number (major * 10000 + minor * 100 + patch). */
export const libraryVersion: string;
export const libraryVersionNumber: number;
/** The orchestra.node file that was loaded. */
export const addonPath: string;

export const Priority: Readonly<{ LOW: 0; NORMAL: 1; HIGH: 2; CRITICAL: 3 }>;
export type PriorityValue = 0 | 1 | 2 | 3;

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
