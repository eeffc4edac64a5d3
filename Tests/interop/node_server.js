// A node `ws` server for our client: on connection it sends the interop messages one by one,
// expects each echoed unchanged, then closes with 1000. Prints "listening" when ready and one
// JSON line per finished connection.
const WebSocket = require('/usr/share/nodejs/ws');
const port = Number(process.argv[2]);
const deflate = process.argv[3] === 'deflate';
const messages = require('./messages.js');
const wss = new WebSocket.Server({ host: '127.0.0.1', port, perMessageDeflate: deflate, maxPayload: 64 << 20 }, () => console.log('listening'));
wss.on('connection', (ws, req) => {
  let i = 0;
  const send = () => ws.send(messages[i].data, { binary: messages[i].binary });
  ws.on('message', (data, isBinary) => {
    const m = messages[i];
    if (isBinary !== m.binary || Buffer.compare(Buffer.from(data), Buffer.from(m.data)) !== 0) {
      console.log(JSON.stringify({ error: 'mismatch', at: i })); ws.close(1011); return;
    }
    i++;
    if (i < messages.length) send(); else ws.close(1000, 'done');
  });
  ws.on('close', (code) => console.log(JSON.stringify({ echoed: i, code, extensions: req.headers['sec-websocket-extensions'] || '' })));
  send();
});
