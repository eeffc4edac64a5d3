"""A small raw WebSocket peer for the conformance suite (RFC 6455, RFC 7692).

It writes frames byte by byte, so it can send what a library refuses to: reserved bits and
opcodes, frames with the wrong masking, fragmented or oversized control frames, lengths that
lie, invalid UTF-8 and close payloads. It reads frames strictly: every frame the peer under
test sends is checked against what RFC 6455 requires of a sender (masking by role, minimal
length encoding, no reserved bits or opcodes, control frames short and unfragmented).
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIMEOUT = 5.0  # every socket operation of the suite is bounded by this

RSV1, RSV2, RSV3 = 4, 2, 1  # the 3-bit RSV field as Autobahn numbers it (RSV1 is the high bit)


class ProtocolViolation(AssertionError):
    """The peer under test sent something RFC 6455/7692 forbids a sender to send."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def mask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 masked: bool = True, mask_key: bytes | None = None,
                 length: int | None = None) -> bytes:
    """One frame. `length` overrides the announced payload length (the payload is sent as is)."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)])
    mbit = 0x80 if masked else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if masked:
        key = mask_key if mask_key is not None else os.urandom(4)
        return bytes(head) + key + mask(key, payload)
    return bytes(head) + payload


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes


@dataclass
class Message:
    opcode: int
    payload: bytes
    compressed: bool = False

    def __repr__(self) -> str:
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return f"Message(op={self.opcode}, len={len(self.payload)}, {p!r}, compressed={self.compressed})"


@dataclass
class Deflate:
    """A negotiated permessage-deflate configuration, seen from our end of the connection."""
    our_no_context_takeover: bool = False   # we reset our compressor after each message
    peer_no_context_takeover: bool = False  # the peer resets its compressor (we check it)
    our_max_window_bits: int = 15
    peer_max_window_bits: int = 15
    _comp: object = field(default=None, repr=False)
    _decomp: object = field(default=None, repr=False)

    def compress(self, data: bytes) -> bytes:
        if self._comp is None or self.our_no_context_takeover:
            self._comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.our_max_window_bits)
        out = self._comp.compress(data) + self._comp.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        # A fresh inflater per message when the peer promised no context takeover: a message
        # that refers back to an earlier one then fails here. The window is the negotiated one,
        # so a peer that compresses with a larger window fails with "distance too far back".
        if self._decomp is None or self.peer_no_context_takeover:
            self._decomp = zlib.decompressobj(-self.peer_max_window_bits)
        try:
            out = self._decomp.decompress(data + b"\x00\x00\xff\xff")
        except zlib.error as exc:
            raise ProtocolViolation(f"peer's compressed message does not inflate under the negotiated "
                                    f"parameters ({self}): {exc}") from exc
        return out


class Closed(Exception):
    """The peer closed the TCP connection."""


class Conn:
    """One WebSocket connection over a connected socket, from our side.

    role "client": we are the client (we mask, the peer must not); role "server": the reverse.
    """

    def __init__(self, sock: socket.socket, role: str, buffered: bytes = b"", deflate: Deflate | None = None):
        assert role in ("client", "server")
        self.sock = sock
        self.role = role
        self.buf = bytearray(buffered)
        self.deflate = deflate
        self.eof = False
        sock.settimeout(TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- sending -------------------------------------------------------------------------------
    @property
    def we_mask(self) -> bool:
        return self.role == "client"

    def frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
              masked: bool | None = None, length: int | None = None) -> bytes:
        return encode_frame(opcode, payload, fin=fin, rsv=rsv,
                            masked=self.we_mask if masked is None else masked, length=length)

    def send_raw(self, data: bytes, chop: int | None = None, pause: float = 0.0) -> bool:
        """Sends bytes, in pieces of `chop` bytes when given. False when the peer is gone."""
        self.sock.settimeout(TIMEOUT)  # reads shorten it to their deadline
        try:
            if not chop:
                self.sock.sendall(data)
            else:
                for i in range(0, len(data), chop):
                    self.sock.sendall(data[i:i + chop])
                    if pause:
                        time.sleep(pause)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send(self, opcode: int, payload: bytes = b"", **kw) -> bool:
        return self.send_raw(self.frame(opcode, payload, **kw))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> bool:
        return self.send(OP_CLOSE, close_payload(code, reason))

    # --- receiving -----------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the peer")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise TimeoutError("timed out waiting for the peer") from None
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def _need(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            self._fill(deadline)

    def wait_eof(self, timeout: float = TIMEOUT) -> bool:
        """True when the peer closes TCP within `timeout` (bytes it sends meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return True
        except TimeoutError:
            return False

    def recv_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame, checked against the sender rules. Raises Closed at EOF."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
        masked, n = bool(b1 & 0x80), b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack_from("!H", self.buf, 2)[0]
            pos = 4
            if n < 126:
                raise ProtocolViolation(f"peer used a 16-bit length for {n} bytes (RFC 6455 5.2: minimal encoding)")
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack_from("!Q", self.buf, 2)[0]
            pos = 10
            if n >> 63:
                raise ProtocolViolation("peer set the most significant bit of a 64-bit length")
            if n < 1 << 16:
                raise ProtocolViolation(f"peer used a 64-bit length for {n} bytes (RFC 6455 5.2: minimal encoding)")
        key = b""
        if masked:
            self._need(pos + 4, deadline)
            key = bytes(self.buf[pos:pos + 4])
            pos += 4
        self._need(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        if masked:
            payload = mask(key, payload)
        expect_masked = self.role == "server"
        if masked != expect_masked:
            raise ProtocolViolation(f"peer sent a{'' if masked else 'n un'}masked frame; a "
                                    f"{'client must' if expect_masked else 'server must not'} mask (RFC 6455 5.1)")
        if opcode in (3, 4, 5, 6, 7) or opcode > 0xA:
            raise ProtocolViolation(f"peer sent reserved opcode {opcode:#x}")
        if opcode >= 8:
            if not fin:
                raise ProtocolViolation("peer fragmented a control frame (RFC 6455 5.5)")
            if n > 125:
                raise ProtocolViolation(f"peer sent a control frame of {n} bytes (RFC 6455 5.5: at most 125)")
        allowed_rsv = RSV1 if (self.deflate and opcode in (OP_TEXT, OP_BINARY)) else 0
        if rsv & ~allowed_rsv:
            raise ProtocolViolation(f"peer set RSV bits {rsv:03b} on opcode {opcode:#x} without an extension that allows them")
        return Frame(fin, rsv, opcode, masked, payload)

    def recv_event(self, timeout: float = TIMEOUT):
        """The next message or control frame (a Message, or a Frame for control frames)."""
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        first: Frame | None = None
        while True:
            f = self.recv_frame(max(deadline - time.monotonic(), 0.001))
            if f.opcode >= 8:
                if f.opcode == OP_CLOSE:
                    check_close_payload_sent(f.payload)
                return f
            if first is None:
                if f.opcode == OP_CONT:
                    raise ProtocolViolation("peer sent a continuation frame with no message to continue")
                first = f
            else:
                if f.opcode != OP_CONT:
                    raise ProtocolViolation("peer started a new message inside a fragmented one")
                if f.rsv:
                    raise ProtocolViolation("peer set RSV1 on a continuation frame (RFC 7692 6.1)")
            parts.append(f.payload)
            if f.fin:
                break
        payload = b"".join(parts)
        compressed = bool(first.rsv & RSV1)
        if compressed:
            payload = self.deflate.decompress(payload)
        if first.opcode == OP_TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolViolation(f"peer sent a text message that is not UTF-8: {exc}") from exc
        return Message(first.opcode, payload, compressed)

    def close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def check_close_payload_sent(payload: bytes) -> None:
    """RFC 6455 5.5.1/7.4: what a peer may put in a close frame it sends."""
    if len(payload) == 1:
        raise ProtocolViolation("peer sent a close frame with a 1-byte payload")
    if len(payload) >= 2:
        code = struct.unpack("!H", payload[:2])[0]
        if not valid_close_code(code):
            raise ProtocolViolation(f"peer sent close code {code}, which must not be sent")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("peer sent a close reason that is not UTF-8") from None


def valid_close_code(code: int) -> bool:
    """Codes an endpoint may send: the defined 1000-1003, 1007-1011, the IANA-registered
    1012-1014, and 3000-4999 (RFC 6455 7.4.1/7.4.2)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code <= 4999


def close_code(frame: Frame) -> int | None:
    return struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None


# --- HTTP ---------------------------------------------------------------------------------------
@dataclass
class HTTPHead:
    start: str                 # request line or status line
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(vals) if vals else None

    def tokens(self, name: str) -> list[str]:
        v = self.get(name)
        return [t.strip().lower() for t in v.split(",")] if v else []


def read_head(sock: socket.socket, timeout: float = TIMEOUT) -> tuple[HTTPHead | None, bytes]:
    """Reads an HTTP head; returns (head, bytes after it). (None, b"") when the peer closed first."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for an HTTP head")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise TimeoutError("timed out waiting for an HTTP head") from None
        if not chunk:
            if buf:
                raise ProtocolViolation(f"peer closed in the middle of an HTTP head: {buf!r}")
            return None, b""
        buf += chunk
        if len(buf) > 65536:
            raise ProtocolViolation("HTTP head longer than 64 KiB")
    raw, rest = buf.split(b"\r\n\r\n", 1)
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep:
            raise ProtocolViolation(f"malformed header line {line!r}")
        headers.append((k.strip(), v.strip()))
    return HTTPHead(lines[0], headers), rest


def parse_extensions(value: str | None) -> list[tuple[str, dict[str, str | None]]]:
    """Sec-WebSocket-Extensions -> [(name, {param: value or None})] (RFC 6455 9.1)."""
    out = []
    if not value:
        return out
    for element in value.split(","):
        parts = [p.strip() for p in element.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str | None] = {}
        for p in parts[1:]:
            if not p:
                continue
            k, sep, v = p.partition("=")
            v = v.strip().strip('"') if sep else None
            if k.strip().lower() in params:
                raise ProtocolViolation(f"extension parameter {k} given twice in {value!r}")
            params[k.strip().lower()] = v
        out.append((parts[0].lower(), params))
    return out


def request_bytes(path: str, host: str, *, key: str | None = None, version: str | None = "13",
                  extensions: str | None = None, protocol: str | None = None, http: str = "HTTP/1.1",
                  method: str = "GET", upgrade: str | None = "websocket",
                  connection: str | None = "Upgrade", extra: list[tuple[str, str]] = ()) -> bytes:
    lines = [f"{method} {path} {http}", f"Host: {host}"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def status_code(head: HTTPHead) -> int:
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolViolation(f"malformed status line {head.start!r}")
    return int(parts[1])


def check_upgrade_response(head: HTTPHead, key: str) -> None:
    """RFC 6455 4.2.2 item 5 / 4.1: what a 101 response must hold."""
    code = status_code(head)
    assert code == 101, f"expected 101 Switching Protocols, got {head.start!r}"
    assert head.get("Upgrade") and head.get("Upgrade").lower() == "websocket", f"Upgrade: {head.get('Upgrade')!r}"
    assert "upgrade" in head.tokens("Connection"), f"Connection: {head.get('Connection')!r}"
    assert head.get("Sec-WebSocket-Accept") == accept_key(key), \
        f"Sec-WebSocket-Accept {head.get('Sec-WebSocket-Accept')!r} != {accept_key(key)!r}"


def connect(url_host: str, port: int, path: str = "/", *, extensions: str | None = None,
            timeout: float = TIMEOUT) -> tuple[Conn, HTTPHead]:
    """Opens a WebSocket connection as a client; returns the connection and the 101 response.
    A negotiated permessage-deflate is configured on the connection."""
    sock = socket.create_connection((url_host, port), timeout=timeout)
    key = new_key()
    sock.sendall(request_bytes(path, f"{url_host}:{port}", key=key, extensions=extensions))
    head, rest = read_head(sock, timeout)
    if head is None:
        sock.close()
        raise ProtocolViolation("server closed the connection instead of answering the handshake")
    check_upgrade_response(head, key)
    deflate = client_side_deflate(head, extensions)
    return Conn(sock, "client", rest, deflate), head


def client_side_deflate(head: HTTPHead, offer: str | None) -> Deflate | None:
    """Checks a server's Sec-WebSocket-Extensions answer against our offer (RFC 7692 7.1) and
    returns the resulting configuration (None when nothing was negotiated)."""
    exts = parse_extensions(head.get("Sec-WebSocket-Extensions"))
    offered = parse_extensions(offer)
    for name, _ in exts:
        assert name in [n for n, _ in offered], f"server accepted extension {name!r} that was not offered"
    pmd = [p for n, p in exts if n == "permessage-deflate"]
    if not pmd:
        return None
    assert len(pmd) == 1, "server accepted permessage-deflate more than once"
    p = pmd[0]
    allowed = {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
               "client_max_window_bits"}
    assert set(p) <= allowed, f"unknown permessage-deflate parameters in the answer: {p}"
    any_offer_has = lambda k: any(k in o for n, o in offered if n == "permessage-deflate")  # noqa: E731
    d = Deflate()
    if "server_no_context_takeover" in p:
        assert p["server_no_context_takeover"] is None
        d.peer_no_context_takeover = True
    if "client_no_context_takeover" in p:
        assert p["client_no_context_takeover"] is None
        d.our_no_context_takeover = True
    if "server_max_window_bits" in p:
        v = p["server_max_window_bits"]
        assert v is not None and v.isdigit() and 8 <= int(v) <= 15, f"server_max_window_bits={v!r}"
        d.peer_max_window_bits = max(int(v), 9)  # zlib's raw inflate needs 9 for an 8-bit window
    if "client_max_window_bits" in p:
        assert any_offer_has("client_max_window_bits"), \
            "server answered client_max_window_bits, which the offer did not hold (RFC 7692 7.1.2.2)"
        v = p["client_max_window_bits"]
        assert v is not None and v.isdigit() and 8 <= int(v) <= 15, f"client_max_window_bits={v!r}"
        d.our_max_window_bits = max(int(v), 9)
    return d
