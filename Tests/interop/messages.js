// The messages every interop test exchanges (mirrors messages.py).
const out = [];
const sizes = [0, 1, 125, 126, 127, 65535, 65536, 300000, 1 << 20];
sizes.forEach((n, k) => {
  const b = Buffer.alloc(n);
  for (let j = 0; j < n; j++) b[j] = (j * 31 + k) & 0xff;
  out.push({ binary: true, data: b });
  out.push({ binary: false, data: 'héllo wörld ✓ 🎵 '.repeat(Math.floor(n / 20) + 1) });
});
module.exports = out;
