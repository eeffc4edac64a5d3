"""permessage-deflate (RFC 7692) cases, Autobahn groups 12 (compressed messages) and 13
(negotiated parameters), plus protocol cases of our own numbered 12.9.x (RSV1 rules, corrupt
data, the empty-message and BFINAL forms of section 7.2.3). The same cases judge a server and a
client once permessage-deflate is negotiated."""
from __future__ import annotations

import random
import zlib

from engine import Case, Echo, F, Fail, Send
from wsraw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RSV1, RSV2, close_payload

T, B, C = OP_TEXT, OP_BINARY, OP_CONT
_rng = random.Random(7692)


def rand(n: int) -> bytes:
    return _rng.randbytes(n)


def words(n: int) -> bytes:
    vocab = [b"orchestra", b"agent", b"task", b"stream", b"hub", b"message", b"queue", b"router", b"\xce\xba\xe1\xbd\xb9"]
    out = bytearray()
    while len(out) < n:
        out += _rng.choice(vocab) + b" "
    s = bytes(out[:n])
    while True:  # never cut a code point in two
        try:
            s.decode()
            return s
        except UnicodeDecodeError:
            s = s[:-1] + b" "


# Data a compressor can only shrink with back-references across the whole window: a random
# 4 KiB block repeated. A peer that compresses with a larger window than negotiated produces
# distances our inflater (set to the negotiated window) rejects.
BLOCK = rand(4096)
FAR = BLOCK * 3
# A random message sent twice: the second copy compresses to back-references into the first
# message when context takeover is on; a peer that promised no context takeover must not.
TWICE = rand(2048)


def exchange_case(id: str, title: str) -> Case:
    """Messages that exercise the negotiated parameters: context takeover across messages,
    window sizes, empty, compressible and incompressible, text and binary."""
    msgs = [(T, words(1000)), (T, words(1000)), (B, TWICE), (B, TWICE), (B, FAR), (T, b""),
            (B, bytes(65536)), (T, words(20000))]
    return Case(id, title, [Send([F(op, p, compress=True) for op, p in msgs])], Echo(msgs))


SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 1 << 20]
DATA_CASES: list[Case] = []
for i, n in enumerate(SIZES, 1):
    msgs = [(T, words(n)) for _ in range(5)]
    DATA_CASES.append(Case(f"12.1.{i}", f"5 compressed text messages of {n} bytes (compressible) -> echoes",
                           [Send([F(op, p, compress=True) for op, p in msgs])], Echo(msgs)))
    msgs = [(B, rand(n)) for _ in range(5)]
    DATA_CASES.append(Case(f"12.2.{i}", f"5 compressed binary messages of {n} random bytes -> echoes",
                           [Send([F(op, p, compress=True) for op, p in msgs])], Echo(msgs)))


def _deflate_once(data: bytes, *, final: bool) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    if final:
        return c.compress(data) + c.flush(zlib.Z_FINISH)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


PROTOCOL_CASES: list[Case] = []


def pcase(id, title, actions, expect):
    PROTOCOL_CASES.append(Case(id, title, actions, expect))


_msg = words(3000)
_z = _deflate_once(_msg, final=False)
pcase("12.9.1", "compressed message in 3 fragments, RSV1 on the first only -> echo",
      [Send([F(T, _z[:10], fin=False, rsv=RSV1), F(C, _z[10:20], fin=False), F(C, _z[20:])])], Echo([(T, _msg)]))
pcase("12.9.2", "uncompressed message (RSV1 clear) in a deflate session -> echo",
      [Send([F(T, b"not compressed")])], Echo([(T, b"not compressed")]))
pcase("12.9.3", "compressed, uncompressed, compressed (context kept across the plain one) -> echoes",
      [Send([F(T, _msg, compress=True), F(B, b"plain"), F(T, _msg, compress=True)])],
      Echo([(T, _msg), (B, b"plain"), (T, _msg)]))
pcase("12.9.4", "compressed message in 2 fragments with a ping between -> pong, echo",
      [Send([F(T, _z[:15], fin=False, rsv=RSV1), F(OP_PING, b"between"), F(C, _z[15:])])],
      Echo([(T, _msg)], pongs=[b"between"]))
pcase("12.9.5", "empty message as the single byte 0x00 (RFC 7692 7.2.3.6) -> echo of an empty message",
      [Send([F(T, b"\x00", rsv=RSV1)])], Echo([(T, b"")]))
pcase("12.9.6", "messages compressed with BFINAL blocks, each a new stream (RFC 7692 7.2.3.4) -> echoes",
      [Send([F(T, _deflate_once(b"first final block", final=True), rsv=RSV1),
             F(T, _deflate_once(b"second final block", final=True), rsv=RSV1)])],
      Echo([(T, b"first final block"), (T, b"second final block")]))
pcase("12.9.7", "RSV1 on a continuation frame -> fail 1002 (RFC 7692 6.1)",
      [Send([F(T, _z[:10], fin=False, rsv=RSV1), F(C, _z[10:], rsv=RSV1)])], Fail({1002}))
pcase("12.9.8", "RSV1 on a ping -> fail 1002 (RFC 7692 6.1: control frames never set it)",
      [Send([F(OP_PING, b"x", rsv=RSV1)])], Fail({1002}))
pcase("12.9.9", "RSV1 on a close -> fail 1002", [Send([F(OP_CLOSE, close_payload(1000), rsv=RSV1)])], Fail({1002}))
pcase("12.9.10", "RSV2 in a deflate session (only RSV1 is negotiated) -> fail 1002",
      [Send([F(T, b"rsv2", rsv=RSV2)])], Fail({1002}))
pcase("12.9.11", "compressed payload that is not DEFLATE data -> fail (1002 or 1007)",
      [Send([F(B, b"\xff\xff\xff\xff not deflate at all", rsv=RSV1)])], Fail({1002, 1007}))
pcase("12.9.12", "compressed text that inflates to invalid UTF-8 -> fail 1007",
      [Send([F(T, _deflate_once("κόσμε".encode() + b"\xed\xa0\x80edited", final=False), rsv=RSV1)])], Fail({1007}))
