"""Runs one conformance case over an open connection, from either side.

A case is a list of actions (frames to send, pauses, points where the peer must already have
answered or failed) and an expectation for what follows. The same cases judge a server (we are
the client and mask) and a client (we are the server and do not): masking follows the role
unless a frame asks for the wrong one on purpose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from wsraw import (OP_CLOSE, OP_PING, OP_PONG, TIMEOUT, Closed, Conn, Frame, Message,
                   ProtocolViolation, close_code, close_payload)


# --- actions ------------------------------------------------------------------------------------
@dataclass
class F:
    """A frame to send. masked=None follows the role; "wrong" sends the other masking.
    compress=True deflates the payload with the connection's negotiated compressor."""
    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: object = None
    length: int | None = None
    compress: bool = False

    def encode(self, conn: Conn) -> bytes:
        masked = self.masked
        if masked == "wrong":
            masked = not conn.we_mask
        payload = conn.deflate.compress(self.payload) if self.compress else self.payload
        rsv = self.rsv | (4 if self.compress else 0)  # RSV1 marks a compressed message
        return conn.frame(self.opcode, payload, fin=self.fin, rsv=rsv, masked=masked, length=self.length)


@dataclass
class Send:
    """Frames sent together; chop=N writes them in N-byte pieces (pause seconds apart)."""
    frames: list
    chop: int | None = None
    pause: float = 0.0


@dataclass
class Framewise:
    """Frames sent one write per frame, `pause` seconds apart (Autobahn's "frame-wise chops")."""
    frames: list
    pause: float = 0.002


@dataclass
class SplitFrame:
    """One frame sent in two writes: the header and `cut` payload bytes, then the rest; between
    them the peer must fail the connection within `fail_within` seconds (fail fast)."""
    frame: F
    cut: int
    fail_within: float = 2.0


@dataclass
class Sleep:
    seconds: float


@dataclass
class AwaitFail:
    """The peer must have failed the connection (close frame or TCP close) within `seconds`."""
    seconds: float = 2.0


@dataclass
class Await:
    """The peer must send exactly these messages (in order) and pongs before we go on."""
    messages: list = field(default_factory=list)
    pongs: list = field(default_factory=list)


# --- expectations -------------------------------------------------------------------------------
@dataclass
class Echo:
    """The peer echoes `messages` and answers `pongs`, nothing else; then a clean close that we
    start with 1000. last_pong_only: the peer may answer only the most recent of several pings
    (RFC 6455 5.5.3), but then pongs it sends must be for pings we sent, in order."""
    messages: list = field(default_factory=list)
    pongs: list = field(default_factory=list)
    last_pong_only: bool = False


@dataclass
class Fail:
    """The peer fails the connection: a close frame with one of `codes`, or a TCP close
    without one (RFC 6455 7.1.7 lets an endpoint just drop the connection)."""
    codes: set
    messages: list = field(default_factory=list)  # what it must still send first
    pongs: list = field(default_factory=list)
    tcp_close_ok: bool = True
    # The valid message went in the same write as the violation: an endpoint may fail the
    # connection before its application echoed it (RFC 6455 says nothing about that order),
    # so the echo may be missing, but nothing else may come.
    echo_may_be_lost: bool = False


@dataclass
class CloseReply:
    """We sent a close frame: the peer answers with a close frame with one of `codes` (None: no
    status code) and nothing else first."""
    codes: set
    messages: list = field(default_factory=list)
    pongs: list = field(default_factory=list)


@dataclass
class Case:
    id: str          # the Autobahn case number, e.g. "5.15"
    title: str
    actions: list
    expect: object
    roles: tuple = ("server", "client")  # which suites run it
    deviations: dict = field(default_factory=dict)  # peer name -> reason (reference peers only)

    def largest_message(self) -> int:
        """The largest message the case sends, counting what DEFLATE may add to incompressible
        data, to skip cases a server with a small --max-size must refuse."""
        sizes = [len(p) for _, p in getattr(self.expect, "messages", [])]
        compressed = any(isinstance(a, Send) and any(f.compress for f in a.frames) for a in self.actions)
        n = max(sizes, default=0)
        return n + n // 100 + 1024 if compressed else n

    @property
    def test_id(self) -> str:
        return self.id.replace(".", "_")


class CaseFailure(AssertionError):
    pass


# --- running ------------------------------------------------------------------------------------
class Observer:
    """Reads what the peer sends and keeps it in order."""

    def __init__(self, conn: Conn):
        self.conn = conn
        self.events: list = []   # Message, or Frame (ping/pong/close)
        self.all_events: list = []  # the same, never cleared (run_case returns the observer)
        self.close: Frame | None = None
        self.eof = False

    def next(self, deadline: float):
        try:
            ev = self.conn.recv_event(max(deadline - time.monotonic(), 0.001))
        except Closed:
            self.eof = True
            return None
        if isinstance(ev, Frame) and ev.opcode == OP_CLOSE:
            self.close = ev
        elif isinstance(ev, Frame) and ev.opcode == OP_PING:
            # We answer the peer's pings as an endpoint must; they are not part of any expectation.
            self.conn.send(OP_PONG, ev.payload)
            return self.next(deadline)
        self.events.append(ev)
        self.all_events.append(ev)
        return ev

    @property
    def ended(self) -> bool:
        return self.eof or self.close is not None


def describe(events) -> str:
    out = []
    for e in events:
        if isinstance(e, Message):
            out.append(repr(e))
        else:
            name = {OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}.get(e.opcode, hex(e.opcode))
            extra = f" code={close_code(e)}" if e.opcode == OP_CLOSE else ""
            out.append(f"{name}({e.payload[:40]!r}{extra})")
    return "[" + ", ".join(out) + "]"


def _split(events):
    msgs = [(e.opcode, e.payload) for e in events if isinstance(e, Message)]
    pongs = [e.payload for e in events if isinstance(e, Frame) and e.opcode == OP_PONG]
    return msgs, pongs


def _norm(messages):
    return [(op, p) for op, p in messages]


def _check_seen(events, messages, pongs, what: str, last_pong_only=False):
    msgs, got_pongs = _split(events)
    if msgs != _norm(messages):
        raise CaseFailure(f"{what}: expected messages {describe([Message(o, p) for o, p in messages])}, "
                          f"got {describe(events)}")
    if last_pong_only and pongs:
        it = iter(pongs)
        if not got_pongs or got_pongs[-1] != pongs[-1] or not all(p in it for p in got_pongs):
            raise CaseFailure(f"{what}: expected pongs for the pings (at least the last), in order; got {describe(events)}")
    elif got_pongs != list(pongs):
        raise CaseFailure(f"{what}: expected pongs {pongs!r}, got {describe(events)}")


def _await(obs: Observer, messages, pongs, timeout: float, what: str, last_pong_only=False):
    """Reads until `messages` and `pongs` all arrived; anything unexpected fails."""
    deadline = time.monotonic() + timeout
    want_msgs, want_pongs = _norm(messages), list(pongs)
    start = len(obs.events)
    while True:
        seen = obs.events[start:]
        msgs, got_pongs = _split(seen)
        done_pongs = (got_pongs[-1:] == want_pongs[-1:]) if (last_pong_only and want_pongs) else (got_pongs == want_pongs)
        if msgs == want_msgs and done_pongs:
            _check_seen(seen, messages, pongs, what, last_pong_only)
            return
        if msgs != want_msgs[:len(msgs)] or (not last_pong_only and got_pongs != want_pongs[:len(got_pongs)]):
            raise CaseFailure(f"{what}: unexpected {describe(seen)}; expected messages "
                              f"{describe([Message(o, p) for o, p in want_msgs])} and pongs {want_pongs!r}")
        if obs.ended:
            raise CaseFailure(f"{what}: the peer closed ({'close ' + str(close_code(obs.close)) if obs.close else 'TCP'}) "
                              f"after {describe(seen)}; expected messages {describe([Message(o, p) for o, p in want_msgs])} "
                              f"and pongs {want_pongs!r}")
        try:
            obs.next(deadline)
        except TimeoutError:
            raise CaseFailure(f"{what}: timed out; got {describe(seen)}, expected messages "
                              f"{describe([Message(o, p) for o, p in want_msgs])} and pongs {want_pongs!r}") from None


def _await_end(obs: Observer, timeout: float) -> bool:
    """Reads until the peer sends a close frame or closes TCP; False on timeout."""
    deadline = time.monotonic() + timeout
    try:
        while not obs.ended:
            obs.next(deadline)
        return True
    except TimeoutError:
        return False


def _finish_after_peer_close(conn: Conn, obs: Observer, role: str):
    """The peer sent a close frame: it must send nothing after it (RFC 6455 5.5.1). We answer,
    then the server closes TCP (RFC 6455 7.1.1: a server closes first; a client waits)."""
    if obs.eof:
        return
    code = close_code(obs.close)
    conn.send_raw(conn.frame(OP_CLOSE, close_payload(code)))
    if role == "client":  # we are the client: the server must close TCP
        _expect_nothing_then_eof(conn)
    else:
        conn.close_socket()


def _expect_nothing_then_eof(conn: Conn):
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            f = conn.recv_frame(max(deadline - time.monotonic(), 0.001))
            raise CaseFailure(f"the peer sent a frame (opcode {f.opcode:#x}) after its close frame")
    except Closed:
        return
    except TimeoutError:
        raise CaseFailure("the server did not close the TCP connection after the closing handshake "
                          "(RFC 6455 7.1.1)") from None


def run_case(conn: Conn, case: Case) -> Observer:
    obs = Observer(conn)
    role = conn.role
    peer_gone = False
    for action in case.actions:
        if peer_gone:
            break
        if isinstance(action, Send):
            data = b"".join(f.encode(conn) for f in action.frames)
            peer_gone = not conn.send_raw(data, action.chop, action.pause)
        elif isinstance(action, Framewise):
            for f in action.frames:
                if not conn.send_raw(f.encode(conn)):
                    peer_gone = True
                    break
                time.sleep(action.pause)
        elif isinstance(action, SplitFrame):
            data = action.frame.encode(conn)
            head = len(data) - len(action.frame.payload)
            conn.send_raw(data[:head + action.cut])
            if not _await_end(obs, action.fail_within):
                raise CaseFailure(f"the peer did not fail the connection within {action.fail_within} s of "
                                  f"receiving the invalid bytes (the rest of the frame was still to come); "
                                  f"got {describe(obs.events)}")
            peer_gone = True
        elif isinstance(action, Sleep):
            time.sleep(action.seconds)
        elif isinstance(action, AwaitFail):
            if not _await_end(obs, action.seconds):
                raise CaseFailure(f"the peer did not fail the connection within {action.seconds} s "
                                  f"(the message was not complete yet); got {describe(obs.events)}")
            peer_gone = True
        elif isinstance(action, Await):
            _await(obs, action.messages, action.pongs, TIMEOUT, "before going on")
            obs.events.clear()
        else:
            raise TypeError(action)

    exp = case.expect
    if isinstance(exp, Echo):
        _await(obs, exp.messages, exp.pongs, TIMEOUT, "echo", exp.last_pong_only)
        seen = len(obs.events)
        conn.send_close(1000)
        if not _await_end(obs, TIMEOUT):
            raise CaseFailure("the peer did not answer our close frame")
        extra = [e for e in obs.events[seen:] if e is not obs.close]
        if extra:
            raise CaseFailure(f"the peer sent more than expected: {describe(extra)}")
        if obs.close is None:
            raise CaseFailure("the peer closed TCP instead of answering our close frame (RFC 6455 5.5.1)")
        if close_code(obs.close) not in (1000, None):
            raise CaseFailure(f"the peer answered our close 1000 with code {close_code(obs.close)}")
        if role == "client":
            _expect_nothing_then_eof(conn)
        else:
            conn.close_socket()
    elif isinstance(exp, CloseReply):
        if not _await_end(obs, TIMEOUT):
            raise CaseFailure(f"the peer did not answer our close frame; got {describe(obs.events)}")
        before = [e for e in obs.events if e is not obs.close]
        _check_seen(before, exp.messages, exp.pongs, "before the close reply")
        if obs.close is None:
            raise CaseFailure(f"the peer closed TCP instead of answering our close frame (RFC 6455 5.5.1); "
                              f"got {describe(before)}")
        if close_code(obs.close) not in exp.codes:
            raise CaseFailure(f"the peer answered with close code {close_code(obs.close)}, expected one of "
                              f"{sorted(exp.codes, key=str)}")
        if role == "client":
            _expect_nothing_then_eof(conn)
        else:
            conn.close_socket()
    elif isinstance(exp, Fail):
        if not _await_end(obs, TIMEOUT):
            raise CaseFailure(f"the peer did not fail the connection; got {describe(obs.events)}")
        before = [e for e in obs.events if e is not obs.close]
        msgs = exp.messages
        if exp.echo_may_be_lost:
            msgs = msgs[:len(_split(before)[0])]
        _check_seen(before, msgs, exp.pongs, "before failing")
        if obs.close is not None:
            if close_code(obs.close) not in exp.codes:
                raise CaseFailure(f"the peer failed the connection with close code {close_code(obs.close)}, "
                                  f"expected one of {sorted(exp.codes, key=str)}")
            _finish_after_peer_close(conn, obs, role)
        elif not exp.tcp_close_ok:
            raise CaseFailure(f"the peer closed TCP without a close frame; expected close code "
                              f"{sorted(exp.codes, key=str)}")
    else:
        raise TypeError(exp)
    conn.close_socket()
    return obs
