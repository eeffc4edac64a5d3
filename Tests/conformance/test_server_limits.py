"""Server suite, message size limit (group 9.limit, ours: Autobahn's 9.x only measures large
messages). The server under test was started with a limit of `max_size` bytes (--max-size,
default 16 MiB, passed to the server command as {max_size}): a message of exactly that size is
echoed, one byte more fails the connection with 1009, whether the size is announced in one
frame, reached across fragments or reached only after inflating."""
import zlib

import pytest

import wsraw
from engine import Case, Echo, F, Fail, Send, run_case
from wsraw import OP_BINARY, OP_CONT, OP_TEXT, RSV1

MiB = 1 << 20


def _frames(opcode, data, size):
    return [F(opcode if i == 0 else OP_CONT, data[i:i + size], fin=i + size >= len(data))
            for i in range(0, len(data), size)]


def test_9_limit_1_exactly_max_size_echoed(ws_server, max_size):
    """9.limit.1: a binary message of exactly max_size bytes is echoed."""
    data = bytes(range(256)) * (max_size // 256) + bytes(max_size % 256)
    conn, _ = ws_server.connect("limit_1")
    run_case(conn, Case("9.limit.1", "", [Send([F(OP_BINARY, data)])], Echo([(OP_BINARY, data)])))


def test_9_limit_2_one_frame_over(ws_server, max_size):
    """9.limit.2: a text frame of max_size + 1 bytes -> close 1009."""
    conn, _ = ws_server.connect("limit_2")
    run_case(conn, Case("9.limit.2", "", [Send([F(OP_TEXT, b"*" * (max_size + 1))])], Fail({1009}, tcp_close_ok=False)))


def test_9_limit_3_fragments_over(ws_server, max_size):
    """9.limit.3: a binary message of max_size + 1 bytes in 1 MiB fragments -> close 1009."""
    conn, _ = ws_server.connect("limit_3")
    frames = _frames(OP_BINARY, b"\x01" * (max_size + 1), MiB)
    run_case(conn, Case("9.limit.3", "", [Send(frames)], Fail({1009}, tcp_close_ok=False)))


def test_9_limit_4_huge_length(ws_server):
    """9.limit.4: a frame announcing 2^62 bytes (nothing follows) -> the connection fails
    (1009 or 1002, or a plain TCP close) without the server waiting for the payload."""
    conn, _ = ws_server.connect("limit_4")
    run_case(conn, Case("9.limit.4", "", [Send([F(OP_BINARY, b"", length=1 << 62)])], Fail({1009, 1002})))


def test_9_limit_5_length_msb_set(ws_server):
    """9.limit.5: a 64-bit length with its most significant bit set (RFC 6455 5.2: MUST be 0)
    -> the connection fails (1002 or 1009, or a plain TCP close)."""
    conn, _ = ws_server.connect("limit_5")
    run_case(conn, Case("9.limit.5", "", [Send([F(OP_BINARY, b"", length=(1 << 63) + 5)])], Fail({1002, 1009})))


def test_9_limit_6_inflated_over(ws_server, max_size, deflate_enabled):
    """9.limit.6: a compressed message of a few KiB that inflates past max_size -> close 1009
    (the server inflates under its limit instead of expanding a bomb)."""
    if not deflate_enabled:
        pytest.skip("--no-deflate")
    conn, _ = ws_server.connect("limit_6", extensions="permessage-deflate")
    assert conn.deflate is not None, "the server did not accept permessage-deflate"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = c.compress(bytes(max_size + 1)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert len(z) < max_size // 100
    run_case(conn, Case("9.limit.6", "", [Send([F(OP_BINARY, z[:-4], rsv=RSV1)])], Fail({1009}, tcp_close_ok=False)))


def test_9_limit_7_connection_usable_limit_not_cumulative(ws_server, max_size):
    """9.limit.7: the limit is per message: three messages of max_size / 2 in a row are echoed."""
    half = b"h" * (max_size // 2)
    conn, _ = ws_server.connect("limit_7")
    run_case(conn, Case("9.limit.7", "", [Send([F(OP_TEXT, half)] * 3)], Echo([(OP_TEXT, half)] * 3)))


assert wsraw.TIMEOUT >= 5
