"""The messages every interop test exchanges (mirrors messages.js)."""
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 300000, 1 << 20]


def messages():
    out = []
    for k, n in enumerate(SIZES):
        out.append(bytes((j * 31 + k) & 0xFF for j in range(n)))
        out.append("héllo wörld ✓ 🎵 " * (n // 20 + 1))
    return out
