#!/usr/bin/env node
// Reference echo server for the conformance suite: node `ws` (Debian node-ws).
// Usage: ws_echo_server.js --port N [--host H] [--deflate] [--max-size BYTES]
// Echoes every message with its opcode (text as text, binary as binary).
'use strict';
let WebSocket;
try { WebSocket = require('ws'); } catch (e) { WebSocket = require('/usr/share/nodejs/ws'); }

const args = process.argv.slice(2);
const opts = { port: 0, host: '127.0.0.1', deflate: false, maxSize: 16 * 1024 * 1024 };
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case '--port': opts.port = Number(args[++i]); break;
    case '--host': opts.host = args[++i]; break;
    case '--deflate': opts.deflate = true; break;
    case '--max-size': opts.maxSize = Number(args[++i]); break;
    default: console.error(`unknown argument ${args[i]}`); process.exit(2);
  }
}

const server = new WebSocket.WebSocketServer({
  port: opts.port,
  host: opts.host,
  maxPayload: opts.maxSize,
  // threshold 0: compress every message, so the suite sees the negotiated parameters at work.
  perMessageDeflate: opts.deflate ? { threshold: 0 } : false,
});
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
server.on('listening', () => console.log(`listening on ${opts.host}:${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
