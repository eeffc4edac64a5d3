"""The frame-level cases, numbered after the Autobahn|Testsuite case groups:

1 framing, 2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close
handling, 9 limits/large messages, 10 misc. (Groups 12/13, permessage-deflate, and the
opening handshake live in their own test files: they need a negotiation.)

Every expectation is what RFC 6455 requires of the peer (or, where Autobahn is stricter and
the project wants it, says so in the title: fail-fast UTF-8, 6.4.x).
"""
from __future__ import annotations

import struct

from engine import (Await, AwaitFail, Case, CloseReply, Echo, F, Fail, Framewise, Send, Sleep,
                    SplitFrame)
from wsraw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, close_payload

T, B, C, PING, PONG, CLOSE = OP_TEXT, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_CLOSE
PROTOCOL, INVALID_DATA, TOO_BIG = 1002, 1007, 1009


def text(n: int) -> bytes:
    return (b"*" * n)


def binary(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(min(n, 65536))) * (n // 65536) + \
        bytes((i * 7 + 3) & 0xFF for i in range(n % 65536))


CASES: list[Case] = []


def case(id, title, actions, expect, **kw):
    CASES.append(Case(id, title, actions, expect, **kw))


# --- 1 framing ----------------------------------------------------------------------------------
for i, n in enumerate([0, 125, 126, 127, 128, 65535, 65536], 1):
    case(f"1.1.{i}", f"text message of {n} bytes", [Send([F(T, text(n))])], Echo([(T, text(n))]))
    case(f"1.2.{i}", f"binary message of {n} bytes", [Send([F(B, binary(n))])], Echo([(B, binary(n))]))
case("1.1.8", "text message of 65536 bytes written in 997-byte chops",
     [Send([F(T, text(65536))], chop=997, pause=0.0005)], Echo([(T, text(65536))]))
case("1.2.8", "binary message of 65536 bytes written in 997-byte chops",
     [Send([F(B, binary(65536))], chop=997, pause=0.0005)], Echo([(B, binary(65536))]))

# --- 2 pings and pongs --------------------------------------------------------------------------
case("2.1", "ping without payload -> pong", [Send([F(PING)])], Echo(pongs=[b""]))
case("2.2", "ping with text payload -> pong with it", [Send([F(PING, b"Hello, world!")])], Echo(pongs=[b"Hello, world!"]))
BIN8 = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
case("2.3", "ping with binary payload -> pong with it", [Send([F(PING, BIN8)])], Echo(pongs=[BIN8]))
case("2.4", "ping with 125-byte payload -> pong", [Send([F(PING, b"\xfe" * 125)])], Echo(pongs=[b"\xfe" * 125]))
case("2.5", "ping with 126-byte payload (control frames carry at most 125) -> fail 1002",
     [Send([F(PING, b"\xfe" * 126)])], Fail({PROTOCOL}))
case("2.6", "ping with 125-byte payload written 1 byte at a time -> pong",
     [Send([F(PING, b"\xfe" * 125)], chop=1, pause=0.0005)], Echo(pongs=[b"\xfe" * 125]))
case("2.7", "unsolicited pong without payload is ignored", [Send([F(PONG)])], Echo())
case("2.8", "unsolicited pong with payload is ignored", [Send([F(PONG, b"unsolicited pong payload")])], Echo())
case("2.9", "unsolicited pong, then ping -> pong for the ping only",
     [Send([F(PONG, b"unsolicited pong payload"), F(PING, b"ping payload")])], Echo(pongs=[b"ping payload"]))
PINGS = [b"payload-%d" % i for i in range(10)]
case("2.10", "10 pings -> pongs (at least for the last, RFC 6455 5.5.3), in order",
     [Send([F(PING, p) for p in PINGS])], Echo(pongs=PINGS, last_pong_only=True))
case("2.11", "10 pings written frame by frame -> pongs (at least for the last), in order",
     [Framewise([F(PING, p) for p in PINGS])], Echo(pongs=PINGS, last_pong_only=True))

# --- 3 reserved bits (no extension negotiated) --------------------------------------------------
case("3.1", "text frame with RSV3 set -> fail 1002", [Send([F(T, b"Hello, world!", rsv=1)])], Fail({PROTOCOL}))
case("3.2", "text echoed, then text with RSV2, then ping -> fail 1002 with no pong",
     [Send([F(T, b"small")]), Await([(T, b"small")]), Send([F(T, b"Hello, world!", rsv=2), F(PING, b"p")])],
     Fail({PROTOCOL}))
case("3.3", "text, text with RSV2|RSV3, ping, in one write -> echo, then fail 1002",
     [Send([F(T, b"small"), F(T, b"Hello, world!", rsv=3), F(PING, b"p")])],
     Fail({PROTOCOL}, messages=[(T, b"small")], echo_may_be_lost=True))
case("3.4", "as 3.3 with RSV1 (no extension negotiated), written 1 byte at a time -> fail 1002",
     [Send([F(T, b"small"), F(T, b"Hello, world!", rsv=4), F(PING, b"p")], chop=1, pause=0.0005)],
     Fail({PROTOCOL}, messages=[(T, b"small")], echo_may_be_lost=True))
case("3.5", "binary frame with RSV1|RSV3 -> fail 1002", [Send([F(B, BIN8, rsv=5)])], Fail({PROTOCOL}))
case("3.6", "ping with RSV1|RSV2 -> fail 1002, no pong", [Send([F(PING, b"p", rsv=6)])], Fail({PROTOCOL}))
case("3.7", "close with all RSV bits -> fail 1002", [Send([F(CLOSE, close_payload(1000), rsv=7)])], Fail({PROTOCOL}))

# --- 4 opcodes ----------------------------------------------------------------------------------
for i, op in enumerate([3, 4, 5, 6, 7], 1):
    if i in (1, 2):
        acts = [Send([F(op, b"" if i == 1 else b"reserved opcode payload")])]
        exp = Fail({PROTOCOL})
    elif i in (3, 4):
        acts = [Send([F(T, b"small")]), Await([(T, b"small")]),
                Send([F(op, b"" if i == 3 else b"reserved opcode payload"), F(PING, b"p")])]
        exp = Fail({PROTOCOL})
    else:
        acts = [Send([F(T, b"small"), F(op, b"reserved opcode payload"), F(PING, b"p")], chop=1, pause=0.0005)]
        exp = Fail({PROTOCOL}, messages=[(T, b"small")], echo_may_be_lost=True)
    case(f"4.1.{i}", f"reserved data opcode {op:#x} -> fail 1002", acts, exp)
for i, op in enumerate([11, 12, 13, 14, 15], 1):
    if i in (1, 2):
        acts = [Send([F(op, b"" if i == 1 else b"reserved opcode payload")])]
        exp = Fail({PROTOCOL})
    elif i in (3, 4):
        acts = [Send([F(T, b"small")]), Await([(T, b"small")]),
                Send([F(op, b"" if i == 3 else b"reserved opcode payload"), F(PING, b"p")])]
        exp = Fail({PROTOCOL})
    else:
        acts = [Send([F(T, b"small"), F(op, b"reserved opcode payload"), F(PING, b"p")], chop=1, pause=0.0005)]
        exp = Fail({PROTOCOL}, messages=[(T, b"small")], echo_may_be_lost=True)
    case(f"4.2.{i}", f"reserved control opcode {op:#x} -> fail 1002", acts, exp)

# --- masking (RFC 6455 5.1; Autobahn has no group for it) --------------------------------------
case("5.0.1", "data frame with the wrong masking for the sender's role -> fail 1002",
     [Send([F(T, b"Hello, world!", masked="wrong")])], Fail({PROTOCOL}))
case("5.0.2", "ping with the wrong masking for the sender's role -> fail 1002, no pong",
     [Send([F(PING, b"p", masked="wrong")])], Fail({PROTOCOL}))

# --- 5 fragmentation ----------------------------------------------------------------------------
FRAG = [F(T, b"fragment1", fin=False), F(C, b"fragment2")]
case("5.1", "ping fragmented into 2 frames -> fail 1002",
     [Send([F(PING, b"fragment1", fin=False), F(C, b"fragment2")])], Fail({PROTOCOL}))
case("5.2", "pong fragmented into 2 frames -> fail 1002",
     [Send([F(PONG, b"fragment1", fin=False), F(C, b"fragment2")])], Fail({PROTOCOL}))
case("5.3", "text in 2 fragments -> echo", [Send(FRAG)], Echo([(T, b"fragment1fragment2")]))
case("5.4", "text in 2 fragments, written frame by frame -> echo", [Framewise(FRAG)], Echo([(T, b"fragment1fragment2")]))
case("5.5", "text in 2 fragments, written 1 byte at a time -> echo",
     [Send(FRAG, chop=1, pause=0.0005)], Echo([(T, b"fragment1fragment2")]))
FRAG_PING = [F(T, b"fragment1", fin=False), F(PING, b"ping payload"), F(C, b"fragment2")]
case("5.6", "text in 2 fragments with a ping between -> pong, echo",
     [Send(FRAG_PING)], Echo([(T, b"fragment1fragment2")], pongs=[b"ping payload"]))
case("5.7", "as 5.6, written frame by frame",
     [Framewise(FRAG_PING)], Echo([(T, b"fragment1fragment2")], pongs=[b"ping payload"]))
case("5.8", "as 5.6, written 1 byte at a time",
     [Send(FRAG_PING, chop=1, pause=0.0005)], Echo([(T, b"fragment1fragment2")], pongs=[b"ping payload"]))
for base, fin in ((9, True), (12, False)):
    frames = [F(C, b"non-continuation payload", fin=fin), F(T, b"Hello, world!"), F(PING, b"p")]
    what = f"continuation (FIN={int(fin)}) with nothing to continue -> fail 1002"
    case(f"5.{base}", what, [Send(frames)], Fail({PROTOCOL}))
    case(f"5.{base + 1}", what + ", written frame by frame", [Framewise(frames)], Fail({PROTOCOL}))
    case(f"5.{base + 2}", what + ", written 1 byte at a time", [Send(frames, chop=1, pause=0.0005)], Fail({PROTOCOL}))
case("5.15", "text in 2 fragments (echoed), continuation FIN=0 with nothing to continue, text -> fail 1002",
     [Send(FRAG), Await([(T, b"fragment1fragment2")]),
      Send([F(C, b"fragment3", fin=False), F(C, b"fragment4"), F(T, b"fragment5")])], Fail({PROTOCOL}))
for n, fin in ((16, False), (17, True)):
    frames = [F(C, b"fragment1", fin=fin), F(T, b"fragment2", fin=False), F(C, b"fragment3")] * 2
    case(f"5.{n}", f"(continuation FIN={int(fin)} with nothing to continue, text in 2 fragments) x2 -> fail 1002",
         [Send(frames)], Fail({PROTOCOL}))
case("5.18", "text in 2 fragments where the second is also a text frame -> fail 1002",
     [Send([F(T, b"fragment1", fin=False), F(T, b"fragment2")])], Fail({PROTOCOL}))
case("5.18.1", "binary data frame inside a fragmented text message -> fail 1002",
     [Send([F(T, b"fragment1", fin=False), F(B, b"fragment2"), F(C, b"fragment3")])], Fail({PROTOCOL}))
FIVE = [F(T, b"fragment1", fin=False), F(C, b"fragment2", fin=False), F(PING, b"pongme 1!"),
        F(C, b"fragment3", fin=False), F(C, b"fragment4", fin=False), F(PING, b"pongme 2!"),
        F(C, b"fragment5")]
case("5.19", "text in 5 fragments with 2 pings between, pauses between frames -> 2 pongs, echo",
     [Framewise(FIVE, pause=0.05)], Echo([(T, b"fragment1fragment2fragment3fragment4fragment5")],
                                         pongs=[b"pongme 1!", b"pongme 2!"]))
case("5.20", "as 5.19, the pongs awaited between the fragments",
     [Send(FIVE[:3]), Await(pongs=[b"pongme 1!"]), Send(FIVE[3:6]), Await(pongs=[b"pongme 2!"]), Send(FIVE[6:])],
     Echo([(T, b"fragment1fragment2fragment3fragment4fragment5")]))

# --- 6 UTF-8 ------------------------------------------------------------------------------------
KOSME = "κόσμε".encode()
HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()
case("6.1.1", "empty text message -> echo", [Send([F(T)])], Echo([(T, b"")]))
case("6.1.2", "text in 3 empty fragments -> echo of an empty message",
     [Send([F(T, fin=False), F(C, fin=False), F(C)])], Echo([(T, b"")]))
case("6.1.3", "text in 3 fragments, first and last empty -> echo",
     [Send([F(T, fin=False), F(C, b"middle frame payload", fin=False), F(C)])], Echo([(T, b"middle frame payload")]))
case("6.2.1", "valid UTF-8 in one frame -> echo", [Send([F(T, HELLO)])], Echo([(T, HELLO)]))
case("6.2.2", "valid UTF-8 in 2 fragments split at a code point boundary -> echo",
     [Send([F(T, HELLO[:12], fin=False), F(C, HELLO[12:])])], Echo([(T, HELLO)]))


def octet_fragments(data: bytes, opcode=T) -> list:
    if not data:
        return [F(opcode)]
    return [F(opcode if i == 0 else C, data[i:i + 1], fin=(i == len(data) - 1)) for i in range(len(data))]


case("6.2.3", "valid UTF-8 in 1-byte fragments (code points split across frames) -> echo",
     [Send(octet_fragments(HELLO))], Echo([(T, HELLO)]))
case("6.2.4", "κόσμε in 1-byte fragments -> echo", [Send(octet_fragments(KOSME))], Echo([(T, KOSME)]))
BAD = KOSME + b"\xed\xa0\x80" + b"edited"  # a UTF-16 surrogate encoded in UTF-8
case("6.3.1", "invalid UTF-8 (an encoded surrogate) in one frame -> fail 1007",
     [Send([F(T, BAD)])], Fail({INVALID_DATA}))
case("6.3.2", "invalid UTF-8 in 1-byte fragments -> fail 1007", [Send(octet_fragments(BAD))], Fail({INVALID_DATA}))

# 6.4: fail fast. Autobahn is stricter than RFC 6455 (which says only that the connection is
# failed): the peer must fail as soon as the bytes it has cannot start valid UTF-8, before the
# rest of the message arrives.
P1, P2, P3 = KOSME, b"\xf4\x90\x80\x80", b"edited"  # P2: U+110000, past the last code point
case("6.4.1", "fail fast: 3 fragments, the 2nd holds an invalid code point -> fail 1007 before the 3rd",
     [Send([F(T, P1, fin=False)]), Sleep(0.05), Send([F(C, P2, fin=False)]), AwaitFail(2.0), Send([F(C, P3)])],
     Fail({INVALID_DATA}))
case("6.4.2", "fail fast: the 1st fragment ends in a lead byte the 2nd cannot continue -> fail 1007 before the 3rd",
     [Send([F(T, P1 + b"\xf4", fin=False)]), Sleep(0.05), Send([F(C, b"\x90", fin=False)]), AwaitFail(2.0),
      Send([F(C, b"\x80\x80" + P3)])],
     Fail({INVALID_DATA}))
case("6.4.3", "fail fast within a frame: invalid code point, rest of the frame withheld -> fail 1007",
     [Send([F(T, P1, fin=False)]), SplitFrame(F(C, P2 + P3), cut=4)], Fail({INVALID_DATA}))
case("6.4.4", "fail fast within a frame: invalid continuation byte, rest withheld -> fail 1007",
     [SplitFrame(F(T, P1 + b"\xf4\x90" + P3), cut=len(P1) + 2)], Fail({INVALID_DATA}))

# 6.5 - 6.23: Markus Kuhn's UTF-8 decoder stress test, as Autobahn sends it. Each vector goes
# once in one frame and once in 1-byte fragments. Python's strict decoder (RFC 3629: no
# overlongs, no surrogates, nothing past U+10FFFF) says which are valid; the table agrees.
V = []  # (group, bytes)
V += [("6.5", KOSME)]
V += [("6.6", KOSME[:k]) for k in range(1, len(KOSME) + 1)]
V += [("6.7", b) for b in (b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80")]
V += [("6.8", b) for b in (b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80")]
V += [("6.9", b) for b in (b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf")]
V += [("6.10", b) for b in (b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf\xbf")]
V += [("6.11", b) for b in (b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80")]
V += [("6.12", b) for b in (b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
                            b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf", bytes(range(0x80, 0xc0)))]
V += [("6.13", b" ".join(bytes([c]) for c in rng)) for rng in
      (range(0xc0, 0xe0), range(0xe0, 0xf0), range(0xf0, 0xf8), range(0xf8, 0xfc), range(0xfc, 0xfe))]
MISSING_LAST = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
                b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
V += [("6.14", b) for b in MISSING_LAST]
V += [("6.15", b"".join(MISSING_LAST))]
V += [("6.16", b) for b in (b"\xfe", b"\xff", b"\xfe\xfe\xff\xff")]
V += [("6.17", b) for b in (b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf",
                            b"\xfc\x80\x80\x80\x80\xaf")]
V += [("6.18", b) for b in (b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf",
                            b"\xfc\x83\xbf\xbf\xbf\xbf")]
V += [("6.19", b) for b in (b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80",
                            b"\xfc\x80\x80\x80\x80\x80")]
V += [("6.20", b) for b in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
                            b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf")]
V += [("6.21", hi + lo) for hi in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf")
      for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]
V += [("6.22", b) for b in (b"\xef\xbf\xbe", b"\xef\xbf\xbf", b"\xf0\x9f\xbf\xbe", b"\xf0\x9f\xbf\xbf",
                            b"\xf3\xbf\xbf\xbe", b"\xf4\x8f\xbf\xbe", b"\xf4\x8f\xbf\xbf",
                            b"\xef\xb7\x90", b"\xef\xb7\xaf")]
V += [("6.23", b) for b in (b"\xef\xbf\xbd", b"\xef\xbb\xbf", b"\x00\x00", b"\xe2\x82\xac" * 3)]
# The table's own claims, checked against the decoder's verdicts where they are certain.
_VALID_GROUPS = {"6.5", "6.7", "6.9", "6.22", "6.23"}
_INVALID_GROUPS = {"6.8", "6.10", "6.12", "6.13", "6.14", "6.15", "6.16", "6.17", "6.18", "6.19", "6.20", "6.21"}


def utf8_valid(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


UTF8_VECTORS = []
_count: dict = {}
for group, data in V:
    ok = utf8_valid(data)
    assert not (group in _VALID_GROUPS and not ok), (group, data)
    assert not (group in _INVALID_GROUPS and ok), (group, data)
    _count[group] = _count.get(group, 0) + 1
    UTF8_VECTORS.append((f"{group}.{_count[group]}", data, ok))

for vid, data, ok in UTF8_VECTORS:
    what = "valid" if ok else "invalid"
    expect = (lambda: Echo([(T, data)])) if ok else (lambda: Fail({INVALID_DATA}))
    case(vid, f"{what} UTF-8 {data[:16].hex(' ')}{'...' if len(data) > 16 else ''} in one frame -> "
         f"{'echo' if ok else 'fail 1007'}", [Send([F(T, data)])], expect())
    case(vid + ".f", f"{what} UTF-8 {data[:16].hex(' ')}{'...' if len(data) > 16 else ''} in 1-byte "
         f"fragments -> {'echo' if ok else 'fail 1007'}", [Send(octet_fragments(data))], expect(),
         roles=("server",))  # the client suite: 6.2.3, 6.2.4, 6.3.2 and the batch below
# The client suite sends the valid vectors in a handful of connections instead of one each.
_valid = [d for _, d, ok in UTF8_VECTORS if ok]
case("6.x.valid", f"all {len(_valid)} valid vectors of 6.5-6.23, one message each, in one connection -> echoes",
     [Send([F(T, d) for d in _valid])], Echo([(T, d) for d in _valid]), roles=("client",))
case("6.x.valid.f", f"all {len(_valid)} valid vectors in 1-byte fragments, in one connection -> echoes",
     [Send([f for d in _valid for f in octet_fragments(d)])], Echo([(T, d) for d in _valid]), roles=("client",))

# --- 7 close handling ---------------------------------------------------------------------------
case("7.1.1", "text echoed, then close 1000 -> close 1000", [Send([F(T, b"Hello World!")]), Await([(T, b"Hello World!")]),
                                                           Send([F(CLOSE, close_payload(1000))])], CloseReply({1000}))
case("7.1.2", "close twice -> one close reply, then the end",
     [Send([F(CLOSE, close_payload(1000)), F(CLOSE, close_payload(1000))])], CloseReply({1000}))
case("7.1.3", "close, then ping -> close reply, no pong", [Send([F(CLOSE, close_payload(1000)), F(PING, b"ping")])],
     CloseReply({1000}))
case("7.1.4", "close, then text -> close reply, no echo", [Send([F(CLOSE, close_payload(1000)), F(T, b"after close")])],
     CloseReply({1000}))
case("7.1.5", "first fragment, close, last fragment -> close reply, no echo",
     [Send([F(T, b"fragment1", fin=False), F(CLOSE, close_payload(1000)), F(C, b"fragment2")])], CloseReply({1000}))
case("7.3.1", "close without payload -> close reply (no code or 1000)", [Send([F(CLOSE)])], CloseReply({None, 1000}))
case("7.3.2", "close with a 1-byte payload -> fail 1002", [Send([F(CLOSE, b"\x2a")])], Fail({PROTOCOL}))
case("7.3.3", "close 1000 without reason -> close 1000", [Send([F(CLOSE, close_payload(1000))])], CloseReply({1000}))
case("7.3.4", "close 1000 with a reason -> close 1000", [Send([F(CLOSE, close_payload(1000, b"Hello World!"))])],
     CloseReply({1000}))
case("7.3.5", "close 1000 with a 123-byte reason (125-byte payload) -> close 1000",
     [Send([F(CLOSE, close_payload(1000, b"*" * 123))])], CloseReply({1000}))
case("7.3.6", "close 1000 with a 124-byte reason (126-byte payload) -> fail 1002",
     [Send([F(CLOSE, close_payload(1000, b"*" * 124))])], Fail({PROTOCOL}))
case("7.5.1", "close 1000 with a reason that is not UTF-8 -> fail 1002 or 1007",
     [Send([F(CLOSE, close_payload(1000, KOSME + b"\xed\xa0\x80" + b"edited"))])], Fail({PROTOCOL, INVALID_DATA}))
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
for i, code in enumerate(VALID_CODES, 1):
    case(f"7.7.{i}", f"close {code} (a code that may be sent) -> close reply with it or 1000",
         [Send([F(CLOSE, close_payload(code))])], CloseReply({code, 1000}))
# 1012-1014 were reserved when RFC 6455 was written and have been registered since (IANA); the
# RFC leaves codes above 4999 undefined, so they are not asserted either way (Autobahn 7.13 is
# informational too).
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]
for i, code in enumerate(INVALID_CODES, 1):
    case(f"7.9.{i}", f"close {code} (a code that must not be sent) -> fail 1002",
         [Send([F(CLOSE, close_payload(code))])], Fail({PROTOCOL}))

# --- 9 large messages (the server's limit cases are in test_server_limits.py) -------------------
MiB = 1 << 20
for i, n in enumerate([64 * 1024, 256 * 1024, MiB, 4 * MiB, 8 * MiB, 16 * MiB], 1):
    case(f"9.1.{i}", f"text message of {n} bytes -> echo", [Send([F(T, text(n))])], Echo([(T, text(n))]))
    case(f"9.2.{i}", f"binary message of {n} bytes -> echo", [Send([F(B, binary(n))])], Echo([(B, binary(n))]))
for i, fs in enumerate([64, 256, 1024, 4096, 16384, 65536, 262144, MiB, 4 * MiB], 1):
    data = text(4 * MiB)
    frames = [F(T if j == 0 else C, data[j:j + fs], fin=(j + fs >= len(data))) for j in range(0, len(data), fs)]
    case(f"9.3.{i}", f"text message of 4 MiB in {fs}-byte fragments -> echo", [Send(frames)], Echo([(T, data)]))
for i, chop in enumerate([64, 4096, 65536], 1):
    case(f"9.5.{i}", f"text message of 1 MiB written in {chop}-byte chops -> echo",
         [Send([F(T, text(MiB))], chop=chop)], Echo([(T, text(MiB))]))
for i, n in enumerate([0, 16, 1024, 4096], 1):
    msg = binary(n)
    acts = []
    for _ in range(250):
        acts += [Send([F(B, msg)]), Await([(B, msg)])]
    case(f"9.7.{i}", f"250 binary messages of {n} bytes, each awaited before the next -> echoes", acts, Echo())

# --- 10 misc ------------------------------------------------------------------------------------
data = text(65536)
case("10.1.1", "text message of 65536 bytes in 1300-byte fragments -> echo",
     [Send([F(T if j == 0 else C, data[j:j + 1300], fin=(j + 1300 >= len(data))) for j in range(0, len(data), 1300)])],
     Echo([(T, data)]))

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), "duplicate case ids"
