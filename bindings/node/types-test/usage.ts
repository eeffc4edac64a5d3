// Compiled (not run) by the ctest entry node.types: index.d.ts describes what lib/index.js
// exports. `tsc -p bindings/node/types-test` must pass; the @ts-expect-error lines must fail.
import { Message, Queue, Priority, codes, OrchestraError, QueueStats, libraryVersion, Server, Client, Runtime,
  Connection, ServerEvent, ClientState, Agent, AgentTask, AgentState, HubError, AuthError } from '..';

const m = new Message('task.stream', {
  source: 'agent-1', priority: Priority.HIGH, ttl: 1000,
  headers: { attempt: 1, auth: 'x' }, payload: { ok: true },
});
const id: string = m.id;
const src: string | null = m.source;
m.source = null;
const wire: Buffer = m.encode('msgpack');
const back: Message = Message.decode(wire, 'msgpack', { maxDepth: 32 });
const obj = back.toJSON();
Message.fromObject(obj);
const ct: 'json' | 'text' | 'binary' | null = m.contentType;
m.setPayload(new Uint8Array([1, 2]), 'binary').setHeader('k', [1, 2]);
const removed: boolean = m.removeHeader('k');

const q = new Queue({ capacity: 16, policy: 'dropOldest', name: 'jobs' });
q.push(m);
const n: number = q.pushBatch([m, back]);
const maybe: Message | null = q.tryPop();
const batch: Message[] = q.popBatch(8);
const stats: QueueStats = q.stats();
const token: bigint = q.share();
const q2: Queue = Queue.fromShared(token);
q2.close();
q.onDrop((msg, reason) => { if (reason === 'overflow') msg.release(); });
q.onDrop(null);
q.fail('stop', 7);

async function consume(): Promise<number> {
  let count = 0;
  for await (const msg of q) count += msg.priority;
  for await (const msg of q.messages({ batchSize: 4 })) count += msg.headerCount;
  const one: Message = await q.pop();
  return count + one.priority;
}

function isFull(e: unknown): boolean {
  return (e as OrchestraError).code === 'ORC_EFULL' && (e as OrchestraError).errno === codes.ORC_EFULL;
}

// @ts-expect-error: policies are named
new Queue({ policy: 'sometimes' });
// @ts-expect-error: priority is 0..3
m.priority = 7;
// @ts-expect-error: encode takes a format name
m.encode('xml');

export { id, src, ct, removed, n, maybe, batch, stats, consume, isFull, libraryVersion };

async function websocket(): Promise<void> {
  const rt = new Runtime({ name: 'io' });
  const server = new Server({ port: 0, paths: ['/ws'], deflate: true, slowConsumer: 'drop', runtime: rt });
  const port: number = await server.listen();
  server.on('connection', (conn: Connection) => {
    const p: string = conn.path;
    const sub: string | null = conn.subprotocol;
    conn.on('message', (data, isBinary) => { if (!conn.send(data)) conn.once('drain', () => undefined); });
    conn.on('close', (code: number, reason: string) => undefined);
  });
  server.on('message', (conn, data, isBinary: boolean) => server.broadcast(typeof data === 'string' ? data : data.toString()));
  for await (const ev of server) {
    const e: ServerEvent = ev;
    if (ev.type === 'message') ev.connection.send(ev.data);
    if (ev.type === 'disconnect') { const c: number = ev.code; }
  }
  await server.close(1001, 'bye');

  const client = new Client(`ws://127.0.0.1:${port}/ws`, { reconnect: true, headers: { Authorization: 'x' } });
  client.on('state', (s: ClientState, reason: string) => undefined);
  await client.connect();
  const ok: boolean = client.send(new Uint8Array([1]));
  for await (const m of client) { const d: string | Buffer = m.data; }
  const r: number = client.stats().reconnects;
  await client.close(4000, 'done');
  rt.close();
  // @ts-expect-error hooks are not available in Node
  new Server({ onUpgrade: () => undefined });
  // @ts-expect-error send takes strings or bytes
  client.send(42);
}
void websocket;

async function agentUsage(): Promise<void> {
  const agent = new Agent({
    url: 'ws://127.0.0.1:7420/agent', agentId: 'a1', keyId: 'k1', secret: '00ff',
    capabilities: ['shell'], metadata: { zone: 'eu' }, maxConcurrency: 2,
  });
  agent.on('state', (s: AgentState, reason: string, code: string | null) => undefined);
  agent.on('error', (e: HubError) => { const c: string = e.code; });
  agent.on('cancel', (task: AgentTask, reason: string) => undefined);
  await agent.start();
  for await (const task of agent.tasks()) {
    const cmd: string = task.params.command;
    task.accept();
    task.stream('line\n');
    task.stream(new Uint8Array([104, 105]), 'stderr');
    task.progress(50, 'half');
    task.on('cancel', (reason: string) => undefined);
    for await (const text of task.inputs()) { const t: string = text; }
    const aborted: boolean = task.signal.aborted;
    task.result({ success: true, result: { exitCode: 0 } });
    // @ts-expect-error: stream types are named
    task.stream('x', 'video');
  }
  const s: AgentState = agent.state;
  await agent.close();
  try { await agent.start(); } catch (e) { if (e instanceof AuthError) { const m: string = e.hubMessage; } }
  // @ts-expect-error: keyId is required
  new Agent({ url: 'ws://x/agent', agentId: 'a1', secret: '00' });
  const several = new Agent({ urls: ['ws://a/agent', 'ws://b/agent'], agentId: 'a1', keyId: 'k1', secret: '00' });
  several.on('failover', (url: string, reason: string) => undefined);
  several.on('state', (st: AgentState, reason: string, code: string | null, url: string) => undefined);
  const hubs: readonly string[] = several.urls;
  const now: string = several.url;
  const at: number = several.urlIndex;
}
void agentUsage;
