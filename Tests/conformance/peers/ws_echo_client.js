#!/usr/bin/env node
// Reference echo client for the conformance suite: node `ws` (Debian node-ws).
// Usage: ws_echo_client.js URL
// Connects (offering permessage-deflate, ws's default), echoes every message with its opcode,
// exits 0 after a close handshake and 1 when the connection failed.
'use strict';
let WebSocket;
try { WebSocket = require('ws'); } catch (e) { WebSocket = require('/usr/share/nodejs/ws'); }

const url = process.argv[2];
if (!url) { console.error('usage: ws_echo_client.js URL'); process.exit(2); }
let failed = false;
const ws = new WebSocket(url, { maxPayload: 64 * 1024 * 1024 });
ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
ws.on('error', (err) => { failed = true; console.error(`error: ${err.message}`); });
ws.on('close', (code) => process.exit(failed || code === 1006 ? 1 : 0));
