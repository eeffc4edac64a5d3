#!/usr/bin/env node
// ws_echo.js: a WebSocket echo server on node `ws` (Debian node-ws), an anchor for
// bench/ws_bench.py.   node ws_echo.js --port N [--host 127.0.0.1]
//
// Every message is sent back with its type (text or binary). ws's defaults otherwise, except:
// no permessage-deflate (the load generator does not offer it), maxPayload 64 MiB (ws's
// default is 100 MiB; the benchmarks send at most 1 MiB), a listen backlog of 4096.
// bench/ws_bench.py starts it as `node --single-threaded ws_echo.js` when it runs the servers
// under SCHED_FIFO (see priority_prefix there: V8's background compiler threads never get the
// core otherwise).
'use strict';
const WebSocket = require('/usr/share/nodejs/ws');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const port = parseInt(arg('--port', '0'), 10);
const host = arg('--host', '127.0.0.1');
if (!port) {
  console.error('usage: node ws_echo.js --port N [--host H]');
  process.exit(2);
}

const wss = new WebSocket.WebSocketServer({
  host, port, backlog: 4096, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`ws_echo.js: node ${process.version}, ws, port ${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
