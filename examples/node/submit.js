#!/usr/bin/env node
'use strict';
// Submits a shell command to an orchestra hub as a web client and prints its output.
//
//   ORC_HUB_TOKEN=<jwt> node examples/node/submit.js 'ls -l /tmp'
//
// Joins a session, sends task.submit { parameters: { command } }, prints each task.stream chunk
// as it arrives (stderr chunks to stderr) and the result, and exits with the command's exit
// code (1 when the task failed without one, 2 when the hub refused the request).
// Environment: ORC_HUB_URL (default ws://127.0.0.1:7420), ORC_HUB_TOKEN (a JWT the hub accepts).
const { randomUUID } = require('node:crypto');
const { Client } = require('../../bindings/node/lib/index.js');

const envelope = (type, payload) => ({ id: randomUUID(), type, version: '1.0', timestamp: Date.now(), payload });

async function main(command) {
  const base = (process.env.ORC_HUB_URL ?? 'ws://127.0.0.1:7420').replace(/\/$/, '');
  const ws = new Client(`${base}/web?token=${encodeURIComponent(process.env.ORC_HUB_TOKEN ?? '')}`);
  await ws.connect();
  const sessionId = `submit-${randomUUID()}`;
  const taskId = randomUUID();            // ours, so no event of the task can be missed
  const join = envelope('session.join', { sessionId });
  const submit = envelope('task.submit', {
    taskId, type: 'shell', capabilities: ['shell'], parameters: { command }, sessionId,
  });
  const requests = new Map([[join.id, join], [submit.id, submit]]);
  ws.send(JSON.stringify(join));
  ws.send(JSON.stringify(submit));
  try {
    for await (const { data } of ws) {
      const env = JSON.parse(data);
      const p = env.payload ?? {};
      if (env.type === 'error' && requests.has(env.correlationId)) {
        console.error(`${requests.get(env.correlationId).type}: ${p.code}: ${p.message}`);
        return 2;
      }
      if (p.taskId !== taskId) continue;
      if (env.type === 'task.stream') {
        (p.type === 'stderr' ? process.stderr : process.stdout).write(p.data ?? '');
      } else if (env.type === 'task.result') {
        console.error(`result: ${JSON.stringify(p)}`);
        const code = p.result?.exitCode;
        return Number.isInteger(code) ? code : (p.success ? 0 : 1);
      }
    }
    console.error('the hub closed the connection before the result');
    return 1;
  } finally {
    await ws.close();
  }
}

if (process.argv.length !== 3) {
  console.error('usage: submit.js COMMAND');
  process.exit(2);
}
main(process.argv[2]).then((code) => { process.exitCode = code; }, (e) => {
  console.error(e.message);
  process.exitCode = 1;
});
