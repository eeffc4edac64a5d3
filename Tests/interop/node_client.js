// A node `ws` client: sends the messages of the interop script to URL, checks every echo,
// pings, closes with 1000 and prints one JSON line with what it saw.
const WebSocket = require('/usr/share/nodejs/ws');
const [url, deflate] = [process.argv[2], process.argv[3] === 'deflate'];
const messages = require('./messages.js');
const ws = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 64 << 20 });
let i = 0, pong = false;
const timer = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', at: i })); process.exit(3); }, 20000);
ws.on('open', () => { ws.ping(Buffer.from('hello')); send(); });
ws.on('pong', (d) => { pong = d.toString() === 'hello'; });
function send() { const m = messages[i]; ws.send(m.data, { binary: m.binary }); }
ws.on('message', (data, isBinary) => {
  const m = messages[i];
  const same = isBinary === m.binary && Buffer.compare(Buffer.from(data), Buffer.from(m.data)) === 0;
  if (!same) { console.log(JSON.stringify({ error: 'mismatch', at: i, len: data.length })); process.exit(2); }
  i++;
  if (i < messages.length) send(); else ws.close(1000, 'done');
});
ws.on('close', (code) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ echoed: i, code, pong, extensions: ws.extensions }));
  process.exit(0);
});
ws.on('error', (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(4); });
