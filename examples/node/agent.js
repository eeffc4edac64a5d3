#!/usr/bin/env node
'use strict';
// An orchestra agent that runs shell commands.
//
//   ORC_AGENT_ID=a1 ORC_KEY_ID=k1 ORC_AGENT_SECRET=<hex from `orchestra-hub key add`> \
//     node examples/node/agent.js
//
// For each task it runs task.params.command in a shell, streams every stdout and stderr line,
// reports progress, and sends the result { exitCode }. A cancelled task's processes (the shell
// and whatever it started) are killed (task.signal). Environment: ORC_HUB_URL (default ws://127.0.0.1:7420; several hubs separated
// by commas, tried round robin when one goes away), ORC_AGENT_ID, ORC_KEY_ID, ORC_AGENT_SECRET;
// ORC_MAX_CONCURRENCY (default 4). The package is loaded from this repository; in your
// project, require('orchestra').
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { Agent } = require('../../bindings/node/lib/index.js');

function run(task) {
  const { command } = task.params;
  if (typeof command !== 'string') {
    task.reject('parameters.command must be a string');
    return;
  }
  task.accept();
  task.progress(0, `running ${command}`);
  // A process group of its own (detached), so that a cancel also kills what the shell started
  // (which would otherwise keep the output pipes open).
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.on('error', () => {});     // e.g. no /bin/sh: 'close' reports it
  task.signal.addEventListener('abort', () => {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
  }, { once: true });
  for (const [stream, type] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']]) {
    readline.createInterface({ input: stream, crlfDelay: Infinity })
      .on('line', (line) => { if (!task.done) task.stream(`${line}\n`, type); });
  }
  child.on('close', (code, signal) => {
    if (task.cancelled) {
      console.log(`task ${task.id}: cancelled (${task.cancelReason})`);
      return;
    }
    const exitCode = code ?? 128;
    task.progress(100, 'done');
    task.result({ success: exitCode === 0, result: { exitCode }, error: exitCode === 0 ? undefined : `exit code ${exitCode}${signal ? ` (${signal})` : ''}` });
    console.log(`task ${task.id}: exit code ${exitCode}`);
  });
}

async function main() {
  // The hubs' base URLs; agents connect to their /agent.
  const urls = (process.env.ORC_HUB_URL ?? 'ws://127.0.0.1:7420').split(',')
    .map((u) => u.trim().replace(/\/+$/, '')).filter((u) => u !== '')
    .map((u) => (u.endsWith('/agent') ? u : `${u}/agent`));
  const agent = new Agent({
    urls,
    agentId: process.env.ORC_AGENT_ID,
    keyId: process.env.ORC_KEY_ID,
    secret: process.env.ORC_AGENT_SECRET,
    capabilities: (process.env.ORC_AGENT_CAPABILITIES ?? 'shell').split(','),
    maxConcurrency: Number(process.env.ORC_MAX_CONCURRENCY ?? 4),
  });
  agent.on('state', (state, reason) => console.log(`agent: ${state}${reason ? ` (${reason})` : ''}`));
  agent.on('failover', (url, reason) => console.log(`agent: failing over to ${url} (${reason})`));
  process.once('SIGINT', () => agent.close());
  await agent.start();
  for await (const task of agent.tasks()) run(task);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
