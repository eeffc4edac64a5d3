"""WebSocket servers and clients on asyncio, over the library's C ABI.

The protocol runs in the library; this module only converts. Made inside a running asyncio
loop, a server or client runs on that loop's embedded runtime (``Runtime.for_loop()``: the
loop itself runs the library's event loop); made elsewhere, on the shared runtime's I/O
thread. Incoming messages and connection events reach Python through an h2A queue, read right
after the run that filled it (embedded) or when its readiness fd is readable (I/O thread), and
sends go straight to the library, which coalesces writes. ``await send(...)`` honours
backpressure: when the connection's send buffer is above its high watermark it waits until it
has drained to the low watermark.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import ctypes
import json
import math
import threading
import weakref
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_int, c_size_t, c_uint16,
                    c_uint32, c_uint64, c_void_p, sizeof)
from dataclasses import dataclass
from enum import IntEnum
from typing import AsyncIterator, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _abi, _lib
from .errors import Closed, InvalidArgument, check, error_for
from .message import Message
from .queue import _EAGAIN, _ECLOSED, Policy, Queue, _adopt

Data = Union[str, bytes, bytearray, memoryview]

TEXT, BINARY = _abi.ORC_WS_TEXT, _abi.ORC_WS_BINARY
_ABOVE_HIGH_WATERMARK = _abi.ORC_WS_ABOVE_HIGH_WATERMARK


class SlowConsumer(IntEnum):
    """What a connection does when a send finds ``max_buffered`` bytes already waiting."""
    CLOSE_1008 = _abi.ORC_SLOW_CONSUMER_CLOSE_1008
    CLOSE_1013 = _abi.ORC_SLOW_CONSUMER_CLOSE_1013
    DROP = _abi.ORC_SLOW_CONSUMER_DROP


class ClientState(IntEnum):
    CONNECTING = _abi.ORC_CLIENT_CONNECTING
    OPEN = _abi.ORC_CLIENT_OPEN
    RECONNECTING = _abi.ORC_CLIENT_RECONNECTING
    CLOSING = _abi.ORC_CLIENT_CLOSING
    CLOSED = _abi.ORC_CLIENT_CLOSED


# ---------------------------------------------------------------------------------- C types
class _WSOptions(Structure):
    _fields_ = [("max_frame_size", c_size_t), ("max_message_size", c_size_t),
                ("ping_interval_ms", c_uint32), ("pong_timeout_ms", c_uint32),
                ("close_timeout_ms", c_uint32), ("handshake_timeout_ms", c_uint32),
                ("high_watermark", c_size_t), ("low_watermark", c_size_t), ("max_buffered", c_size_t),
                ("slow_consumer", c_int), ("deflate", c_int), ("server_no_context_takeover", c_int),
                ("client_no_context_takeover", c_int), ("server_max_window_bits", c_int),
                ("client_max_window_bits", c_int), ("compression_threshold", c_size_t),
                ("compression_level", c_int), ("compression_mem_level", c_int)]


_OPEN_CB = CFUNCTYPE(None, c_void_p, c_void_p)
_MESSAGE_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_int, c_void_p, c_size_t)
_PONG_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_uint64)
_CLOSE_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_int, c_char_p, c_int)
_STATE_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_int, c_char_p)


class _Callbacks(Structure):
    _fields_ = [("on_open", _OPEN_CB), ("on_message", _MESSAGE_CB), ("on_drain", _OPEN_CB),
                ("on_pong", _PONG_CB), ("on_close", _CLOSE_CB), ("user_data", c_void_p)]


class _Header(Structure):
    _fields_ = [("name", c_char_p), ("value", c_char_p)]


class _ServerOptions(Structure):
    _fields_ = [("struct_size", c_size_t), ("host", c_char_p), ("port", c_uint16), ("backlog", c_int),
                ("ipv6_only", c_int), ("paths", POINTER(c_char_p)), ("path_count", c_size_t),
                ("subprotocols", POINTER(c_char_p)), ("subprotocol_count", c_size_t),
                ("max_connections", c_size_t), ("ws", _WSOptions), ("callbacks", _Callbacks),
                ("queue", c_void_p), ("queue_events", c_int), ("on_upgrade", c_void_p),
                ("on_http", c_void_p), ("hook_user_data", c_void_p), ("user_data_free", c_void_p),
                ("tls_cert_file", c_char_p), ("tls_key_file", c_char_p), ("tls_client_ca_file", c_char_p)]


class _ClientOptions(Structure):
    _fields_ = [("struct_size", c_size_t), ("headers", POINTER(_Header)), ("header_count", c_size_t),
                ("subprotocols", POINTER(c_char_p)), ("subprotocol_count", c_size_t),
                ("connect_timeout_ms", c_uint32), ("reconnect", c_int),
                ("reconnect_initial_delay_ms", c_uint32), ("reconnect_max_delay_ms", c_uint32),
                ("reconnect_max_attempts", c_uint32), ("offline_buffer_messages", c_size_t),
                ("offline_buffer_bytes", c_size_t), ("ws", _WSOptions), ("callbacks", _Callbacks),
                ("on_state", _STATE_CB), ("queue", c_void_p), ("queue_events", c_int),
                ("user_data_free", c_void_p), ("tls_ca_file", c_char_p), ("tls_use_system_store", c_int),
                ("tls_verify_peer", c_int), ("tls_cert_file", c_char_p), ("tls_key_file", c_char_p)]


class _Stats(Structure):
    _fields_ = [(n, c_uint64) for n in (
        "bytes_in", "bytes_out", "messages_in", "messages_out", "messages_dropped", "errors",
        "rtt_us", "uptime_us", "buffered_amount", "reconnects")]


_f = _lib.fn
vp, P = c_void_p, POINTER


class _RuntimeOptions(Structure):
    _fields_ = [("struct_size", c_size_t), ("name", c_char_p), ("embedded", c_int)]


_runtime_options_init = _f("orc_runtime_options_init_sized", c_int, P(_RuntimeOptions), c_size_t)
_runtime_new = _f("orc_runtime_new", c_int, P(_RuntimeOptions), P(vp))
_runtime_free = _f("orc_runtime_free", None, vp)
_runtime_fd = _f("orc_runtime_fd", c_int, vp, P(c_int))
_runtime_run_once = _lib.fn_unchecked("orc_runtime_run_once", c_int)   # (c_void_p, byref(c_int))
_server_options_init = _f("orc_server_options_init_sized", c_int, P(_ServerOptions), c_size_t)
_server_new = _f("orc_server_new", c_int, vp, P(_ServerOptions), P(vp))
_server_start = _f("orc_server_start", c_int, vp)
_server_port = _f("orc_server_port", c_uint16, vp)
_server_connection_count = _f("orc_server_connection_count", c_size_t, vp)
_server_broadcast = _f("orc_server_broadcast", c_int, vp, c_int, c_char_p, c_size_t)
_server_send = _f("orc_server_send", c_int, vp, c_uint64, c_int, c_char_p, c_size_t)
_server_connection_stats = _f("orc_server_connection_stats", c_int, vp, c_uint64, P(_Stats))
_server_close_connection = _f("orc_server_close_connection", c_int, vp, c_uint64, c_int, c_char_p)
_server_close = _f("orc_server_close", c_int, vp, c_int, c_char_p)
_server_free = _f("orc_server_free", None, vp)
_client_options_init = _f("orc_client_options_init_sized", c_int, P(_ClientOptions), c_size_t)
_client_new = _f("orc_client_new", c_int, vp, c_char_p, P(_ClientOptions), P(vp))
_client_connect = _f("orc_client_connect", c_int, vp)
_client_send = _f("orc_client_send", c_int, vp, c_int, c_char_p, c_size_t)
_client_ping = _f("orc_client_ping", c_int, vp)
_client_close = _f("orc_client_close", c_int, vp, c_int, c_char_p)
_client_state = _f("orc_client_state", c_int, vp)
_client_stats = _f("orc_client_stats", c_int, vp, P(_Stats))
_client_free = _f("orc_client_free", None, vp)
_msg_connection_id = _f("orc_msg_connection_id", c_uint64, vp)
_msg_payload = _lib.orc_msg_payload
_msg_release = _lib.orc_msg_release
_queue_pop_batch = _lib.orc_queue_pop_batch
# (c_void_p, c_int64, buffer, c_size_t, c_size_t array, c_int array, c_size_t, byref, byref)
_queue_pop_payloads = _lib.fn_unchecked("orc_queue_pop_payloads", c_int)
_queue_depth = _lib.orc_queue_depth
_CT_TEXT = _abi.ORC_CONTENT_TEXT


# ---------------------------------------------------------------------------------- runtime
class Runtime:
    """The library's event loop (``orc_runtime_t``), of two kinds.

    ``Runtime.for_loop()``: an *embedded* runtime with no thread, run by the asyncio loop itself
    (the loop watches the runtime's descriptor and runs it when it is readable or a timer of it
    is due); one per loop, and what a Server or Client made inside a running loop uses. It
    saves the two thread switches per batch of messages that the hand-off to an I/O thread
    costs; the price is that nothing of it runs while the asyncio loop is blocked (no pongs, no
    agent heartbeats), so use it for code that does not block its loop.

    ``Runtime.shared()`` (or ``Runtime()``): an I/O thread of its own; the shared one serves
    every server and client made outside a running loop, and every agent not given another.
    Blocking calls (``SyncAgent``) need a runtime with a thread."""

    _shared: Optional["Runtime"] = None
    _lock = threading.Lock()
    _per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime]" = weakref.WeakKeyDictionary()

    def __init__(self, *, embedded: bool = False, name: Optional[str] = None) -> None:
        o = _RuntimeOptions()
        check(_runtime_options_init(byref(o), sizeof(o)))
        o.embedded = 1 if embedded else 0
        if name is not None:
            o.name = name.encode()
        ptr = c_void_p()
        check(_runtime_new(byref(o), byref(ptr)))
        self._ptr = ptr.value
        self.embedded = embedded
        self._driver: Optional[_LoopDriver] = None

    @classmethod
    def shared(cls) -> "Runtime":
        with cls._lock:
            if cls._shared is None:
                cls._shared = Runtime()
                atexit.register(cls._shared.close)
            return cls._shared

    @classmethod
    def for_loop(cls, loop: Optional[asyncio.AbstractEventLoop] = None) -> "Runtime":
        """The embedded runtime run by `loop` (default: the running loop), made on first use;
        pass it as ``runtime=`` to Client, Server or Agent."""
        loop = loop or asyncio.get_running_loop()
        rt = cls._per_loop.get(loop)
        if rt is None or not rt._ptr:
            rt = Runtime(embedded=True, name="orchestra-asyncio")
            rt._driver = _LoopDriver(rt, loop)
            cls._per_loop[loop] = rt
        return rt

    def close(self) -> None:
        """Closes every handle and joins the I/O thread (embedded: runs the loop here until
        everything is closed)."""
        d, self._driver = getattr(self, "_driver", None), None
        if d is not None:
            d.stop()
        ptr, self._ptr = self._ptr, None
        if ptr:
            _runtime_free(ptr)

    def __del__(self) -> None:
        if getattr(self, "embedded", False):
            self.close()


class _LoopDriver:
    """Runs an embedded runtime on an asyncio loop: a reader on the runtime's descriptor, and
    one timer for the runtime's next due timer (moved only when an earlier one appears)."""

    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        fd = c_int()
        check(_runtime_fd(rt._ptr, byref(fd)))
        # The loop keeps the driver (its reader); the driver keeps only a weak reference to the
        # runtime, which the clients using it keep alive.
        self._rt = weakref.ref(rt)
        self._ptr = rt._ptr
        self._fd = fd.value
        self._loop = loop
        self._timeout = c_int()
        self._run_args = (c_void_p(self._ptr), byref(self._timeout))
        self._timer: Optional[asyncio.TimerHandle] = None
        self._due = math.inf
        self._soon = False
        # Called after each run: consumers of queues the run may have filled (an Agent's
        # events) read them now instead of one loop turn later through the queue's fd.
        self.after_run: Dict[int, Callable[[], None]] = {}
        loop.add_reader(self._fd, self.run)

    def run(self) -> None:
        self._soon = False
        if self._ptr is None:
            return
        rc = _runtime_run_once(*self._run_args)
        if rc < 0:
            self.stop()
            if rc != _ECLOSED:
                raise error_for(rc)
            return
        t = self._timeout.value
        if t == 0:
            if not self._soon:
                self._soon = True
                self._loop.call_soon(self.run)
        elif t > 0:
            due = self._loop.time() + t / 1000.0
            if due < self._due:
                if self._timer is not None:
                    self._timer.cancel()
                self._due = due
                self._timer = self._loop.call_at(due, self._fire)
        if self.after_run:   # last: the next run is scheduled even if one of them raises
            for fn in list(self.after_run.values()):
                fn()

    def _fire(self) -> None:
        self._timer, self._due = None, math.inf
        self.run()

    def stop(self) -> None:
        """No more runs from the loop (the runtime is closing)."""
        self._ptr = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._loop.is_closed():
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass


def _default_runtime() -> Runtime:
    """The runtime of a Server or Client made without one: inside a running asyncio loop, that
    loop's embedded runtime (``Runtime.for_loop()``); elsewhere the shared one with its I/O
    thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return Runtime.shared()
    return Runtime.for_loop()


def _ws_options(o: _WSOptions, *, deflate: bool, max_message_size: int, ping_interval: Optional[float],
                pong_timeout: float, high_watermark: int, low_watermark: int, max_buffered: int,
                slow_consumer: SlowConsumer, compression_threshold: int) -> None:
    o.deflate = 1 if deflate else 0
    o.max_message_size = max_message_size
    o.max_frame_size = max_message_size
    o.ping_interval_ms = 0 if not ping_interval else int(ping_interval * 1000)
    o.pong_timeout_ms = int(pong_timeout * 1000)
    o.high_watermark = high_watermark
    o.low_watermark = low_watermark
    o.max_buffered = max_buffered
    o.slow_consumer = int(slow_consumer)
    o.compression_threshold = compression_threshold


def _payload(data: Data):
    t = type(data)
    if t is bytes:
        return BINARY, data
    if t is str:
        return TEXT, data.encode()
    if isinstance(data, str):
        return TEXT, data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return BINARY, bytes(data)
    raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")


def _strings(items: Sequence[str]):
    arr = (c_char_p * max(len(items), 1))(*[s.encode() for s in items])
    return arr, len(items)


@dataclass
class Event:
    """One thing that happened on a server connection: ``type`` is "message", "open", "close"
    or "drain". ``data`` is str (text) or bytes (binary) for messages; ``code``/``reason``/
    ``clean`` for closes."""
    type: str
    connection: int
    data: Union[str, bytes, None] = None
    code: int = 0
    reason: str = ""
    clean: bool = False


def _event(m: Message) -> Event:
    ptr = m._ptr
    conn = _msg_connection_id(ptr)
    kind = m.type
    if kind == "ws.message":
        from .message import ContentType
        raw = m.payload_bytes
        return Event("message", conn, raw.decode() if m.content_type == ContentType.TEXT else raw)
    if kind == "ws.close":
        info = json.loads(m.payload_bytes or b"{}")
        return Event("close", conn, None, info.get("code", 1006), info.get("reason", ""), info.get("clean", False))
    return Event(kind[3:], conn)


_EMPTY = object()


def _message_data(ptr: int) -> Union[str, bytes]:
    """The data of a "ws.message" the caller owns (and releases): str for text, else bytes.
    (Fresh out-parameters each call: the call releases the GIL, so loops on other threads
    may decode at the same time.)"""
    p, n, ct = c_void_p(), c_size_t(), c_int()
    check(_msg_payload(ptr, byref(p), byref(n), byref(ct)))
    raw = ctypes.string_at(p.value, n.value) if n.value else b""
    return raw.decode() if ct.value == _CT_TEXT else raw


def _client_decoder():
    """A decoder for one client's inbox: a client's queue holds only "ws.message" (no
    queue_events), and its data is read, then the message released. The inbox is read on one
    asyncio loop, so the out-parameters are made once per client, not per message."""
    p, n, ct = c_void_p(), c_size_t(), c_int()
    rp, rn, rct = byref(p), byref(n), byref(ct)
    string_at = ctypes.string_at

    def decode(ptr: int) -> Union[str, bytes]:
        try:
            rc = _msg_payload(ptr, rp, rn, rct)
            if rc < 0:
                raise error_for(rc)
            raw = string_at(p.value, n.value) if n.value else b""
            return raw.decode() if ct.value == _CT_TEXT else raw
        finally:
            _msg_release(ptr)
    return decode


class _Inbox:
    """The queue the library delivers into, read on an asyncio loop: pops without blocking, in
    batches, and waits on the queue's readiness fd through one reader that stays registered
    while someone keeps waiting (no epoll_ctl per message, no task per message). `decode`
    turns a popped orc_msg_t pointer (owned by it) into what `next` returns.

    With `driver` (the endpoint runs on an embedded runtime) the queue is filled only inside
    that runtime's runs, which the driver makes on its loop: a waiter on that loop gets what a
    run queued right after that run (no readiness fd, so pushes take the queue's fast path with
    no eventfd write, and no loop turn between the push and the wake-up), a wait first runs the
    runtime once (what was sent goes out before the task sleeps, not one loop turn later), and
    a pop between two runs that found the queue empty is not repeated. Read from another loop,
    the inbox falls back to the readiness fd."""

    BATCH = 64
    PAYLOAD_BYTES = 256 << 10

    def __init__(self, capacity: int, decode, payloads: bool = False,
                 driver: Optional["_LoopDriver"] = None) -> None:
        self.queue = Queue(capacity=capacity, policy=Policy.BLOCK)
        self._qptr = self.queue._ptr
        self._driver = driver
        self._fd: Optional[int] = None if driver is not None else self.queue.fileno()
        self._reader_loop: Optional[asyncio.AbstractEventLoop] = None   # where a reader on _fd is
        self._decode = decode
        self._arr = (c_void_p * self.BATCH)()
        self._n = c_size_t()
        self._buf: collections.deque = collections.deque()
        self._waiter: Optional[asyncio.Future] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None   # the loop reading, while it waits
        # Driven: read on the loop that runs the runtime (until read from another one).
        self._driven = driver is not None
        # Driven: the queue was found empty and no run of the runtime has happened since, so
        # it still is (a pop would only cost a call).
        self._known_empty = False
        if driver is not None:
            driver.after_run[id(self)] = self._after_run
        # payloads: the queue holds only messages whose payload is the item (a client's
        # "ws.message"s): one orc_queue_pop_payloads copies a batch of them into one buffer,
        # instead of three calls per message; a message too big for it is read by `decode`.
        self._payloads = payloads
        if payloads:
            self._pbuf = ctypes.create_string_buffer(self.PAYLOAD_BYTES)
            self._plens = (c_size_t * self.BATCH)()
            self._ptypes = (c_int * self.BATCH)()
            self._pover = c_void_p()
            self._pop_args = (c_void_p(self._qptr), ctypes.c_int64(0), self._pbuf, c_size_t(self.PAYLOAD_BYTES),
                              self._plens, self._ptypes, c_size_t(self.BATCH), byref(self._n), byref(self._pover))

    def pop_nowait(self):
        """The next item, _EMPTY when none is queued; StopAsyncIteration once the queue is
        closed and drained."""
        if self._buf:
            return self._buf.popleft()
        if self._known_empty:
            return _EMPTY
        rc = self._fill_payloads() if self._payloads else self._fill_messages()
        if rc == 0:
            return self._buf.popleft()
        if rc == _EAGAIN:
            self._known_empty = self._driven
            return _EMPTY
        if rc == _ECLOSED:
            raise StopAsyncIteration
        raise error_for(rc)

    def _fill_messages(self) -> int:
        """One orc_queue_pop_batch into _buf (decoded); its return code."""
        rc = _queue_pop_batch(self._qptr, self._arr, self.BATCH, 0, byref(self._n))
        if rc == 0:
            arr, dec, buf = self._arr, self._decode, self._buf
            count = self._n.value
            # A batch short of BATCH emptied the queue; driven, it stays empty until a run.
            self._known_empty = count < self.BATCH and self._driven
            for i in range(count):
                try:
                    buf.append(dec(arr[i]))
                except BaseException:
                    for j in range(i + 1, count):   # the rest are ours to release
                        _msg_release(arr[j])
                    raise
        return rc

    def _fill_payloads(self) -> int:
        """One orc_queue_pop_payloads into _buf; its return code."""
        rc = _queue_pop_payloads(*self._pop_args)
        if rc == 0:
            pbuf, lens, types, buf = self._pbuf, self._plens, self._ptypes, self._buf
            off = 0
            count = self._n.value
            for i in range(count):
                end = off + lens[i]
                raw = pbuf[off:end]
                buf.append(raw.decode() if types[i] == _CT_TEXT else raw)
                off = end
            over = self._pover.value
            # A batch short of BATCH and not cut by a big message emptied the queue; driven,
            # it stays empty until a run.
            self._known_empty = count < self.BATCH and not over and self._driven
            if over:
                buf.append(self._decode(over))   # releases it
        return rc

    def pop_many(self, limit: int) -> list:
        """Up to `limit` (>= 1) items without waiting, oldest first: [] when none is queued.
        StopAsyncIteration once the queue is closed and drained."""
        buf = self._buf
        if not buf:
            first = self.pop_nowait()   # one pop_batch call fills buf
            if first is _EMPTY:
                return []
            buf.appendleft(first)
        if len(buf) <= limit:
            items = list(buf)
            buf.clear()
            return items
        return [buf.popleft() for _ in range(limit)]

    def wait(self) -> asyncio.Future:
        """A future done when the queue may have something (or `wake` is called)."""
        loop = asyncio.get_running_loop()
        d = self._driver
        driven = d is not None and d._loop is loop
        if not driven:
            # Pushes come from runs on another thread: only the readiness fd tells.
            self._driven = self._known_empty = False
        if not driven and self._reader_loop is not loop:
            self._unwatch_reader()
            if self._fd is None:
                self._fd = self.queue.fileno()
            loop.add_reader(self._fd, self._ready)
            self._reader_loop = loop
        self.loop = loop
        fut = loop.create_future()
        self._waiter = fut
        if driven:
            # Run the runtime before sleeping: it writes what this task step sent (all of it
            # in one writev) and reads what already arrived (then _after_run completes fut).
            d.run()
        return fut

    def _after_run(self) -> None:
        """After each run of the embedded runtime: a waiter gets what the run queued (popped
        here, one call for the check and the batch) and is woken."""
        self._known_empty = False
        w = self._waiter
        if w is None or w.get_loop() is not self._driver._loop:
            return   # nobody waits, or a reader on another loop (it watches the readiness fd)
        if not self._buf:
            try:
                rc = self._fill_payloads() if self._payloads else self._fill_messages()
            except BaseException:
                rc = 0   # the reader meets it on its own pop
            if rc == _EAGAIN:
                self._known_empty = self._driven
                return
        self._waiter = None   # something to read, or an error the reader's pop reports
        if not w.done():
            w.set_result(None)

    def _ready(self) -> None:
        w, self._waiter = self._waiter, None
        if w is None or w.done():
            # Nobody waits: stop watching the (level-triggered) fd until someone does.
            self._unwatch_reader()
        else:
            w.set_result(None)

    def wake(self) -> None:
        """On the loop: ends the current wait (a state change the reader must look at)."""
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _unwatch_reader(self) -> None:
        loop, self._reader_loop = self._reader_loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)

    def unwatch(self) -> None:
        self.loop = None
        self._unwatch_reader()

    def unwatch_quietly(self) -> None:
        """unwatch from a finaliser: the loop may be on another thread or being torn down."""
        if self._driver is not None:
            self._driver.after_run.pop(id(self), None)
        try:
            self.unwatch()
        except Exception:
            pass

    async def next(self):
        while True:
            item = self.pop_nowait()
            if item is not _EMPTY:
                return item
            await self.wait()


# ---------------------------------------------------------------------------------- server
class Server:
    """A WebSocket server on asyncio.

        async with Server(port=0) as server:
            async for ev in server:
                if ev.type == "message":
                    await server.send(ev.connection, ev.data)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, paths: Sequence[str] = (),
                 subprotocols: Sequence[str] = (), deflate: bool = False,
                 max_message_size: int = 16 << 20, ping_interval: Optional[float] = 30.0,
                 pong_timeout: float = 10.0, max_connections: int = 0,
                 high_watermark: int = 1 << 20, low_watermark: int = 256 << 10,
                 max_buffered: int = 16 << 20, slow_consumer: SlowConsumer = SlowConsumer.CLOSE_1008,
                 compression_threshold: int = 1024, queue_capacity: int = 65536,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 runtime: Optional[Runtime] = None) -> None:
        self._runtime = runtime or _default_runtime()
        self._inbox = _Inbox(queue_capacity, lambda ptr: _event(_adopt(ptr)), driver=self._runtime._driver)
        self._low_watermark = low_watermark
        o = _ServerOptions()
        check(_server_options_init(byref(o), sizeof(o)))
        self._keep = [host.encode()]
        o.host = self._keep[0]
        o.port = port
        self._paths, o.path_count = _strings(list(paths))
        o.paths = ctypes.cast(self._paths, P(c_char_p))
        self._subs, o.subprotocol_count = _strings(list(subprotocols))
        o.subprotocols = ctypes.cast(self._subs, P(c_char_p))
        o.max_connections = max_connections
        _ws_options(o.ws, deflate=deflate, max_message_size=max_message_size, ping_interval=ping_interval,
                    pong_timeout=pong_timeout, high_watermark=high_watermark, low_watermark=low_watermark,
                    max_buffered=max_buffered, slow_consumer=slow_consumer,
                    compression_threshold=compression_threshold)
        o.queue = self._inbox.queue._ptr
        o.queue_events = 1
        if tls_cert or tls_key:
            o.tls_cert_file = (tls_cert or "").encode()
            o.tls_key_file = (tls_key or "").encode()
        ptr = c_void_p()
        check(_server_new(self._runtime._ptr, byref(o), byref(ptr)))
        self._ptr = ptr.value
        self._drain_waiters: Dict[int, List[asyncio.Future]] = {}
        self._open: set = set()

    def start(self) -> "Server":
        """Binds and listens (raises IOFailure with the reason)."""
        check(_server_start(self._ptr))
        return self

    async def __aenter__(self) -> "Server":
        return self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return _server_port(self._ptr)

    @property
    def connection_count(self) -> int:
        return _server_connection_count(self._ptr)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            try:
                ev = await self._inbox.next()
            except StopAsyncIteration:
                return
            if ev.type == "drain":
                self._wake(ev.connection)
            elif ev.type == "open":
                self._open.add(ev.connection)
            elif ev.type == "close":
                self._open.discard(ev.connection)
                self._wake(ev.connection)
            yield ev

    def _wake(self, conn: int) -> None:
        for fut in self._drain_waiters.pop(conn, []):
            if not fut.done():
                fut.set_result(None)

    def send_nowait(self, connection: int, data: Data) -> bool:
        """Queues a message; returns False when the send buffer is above its high watermark."""
        op, b = _payload(data)
        rc = _server_send(self._ptr, connection, op, b, len(b))
        if rc < 0:
            raise error_for(rc)
        return rc != _ABOVE_HIGH_WATERMARK

    async def send(self, connection: int, data: Data) -> None:
        """Sends a message; when the buffer is above its high watermark, waits until it has
        drained to the low watermark (raises Closed if the connection goes away)."""
        if self.send_nowait(connection, data):
            return
        await self._drained(connection)

    async def _drained(self, connection: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            s = _Stats()
            rc = _server_connection_stats(self._ptr, connection, byref(s))
            if rc < 0:
                raise Closed(_ECLOSED, f"connection {connection} closed while waiting for its send buffer to drain")
            if s.buffered_amount <= self._low_watermark:
                return
            fut = loop.create_future()
            self._drain_waiters.setdefault(connection, []).append(fut)
            # Woken by the drain event when someone iterates the server; checked again every
            # 10 ms otherwise.
            try:
                await asyncio.wait_for(asyncio.shield(fut), 0.01)
            except asyncio.TimeoutError:
                pass

    def broadcast(self, data: Data) -> None:
        """Sends one message to every open connection (encoded once)."""
        op, b = _payload(data)
        check(_server_broadcast(self._ptr, op, b, len(b)))

    def stats(self, connection: int) -> dict:
        s = _Stats()
        check(_server_connection_stats(self._ptr, connection, byref(s)))
        return {n: getattr(s, n) for n, _ in s._fields_ if n != "reconnects"}

    def close_connection(self, connection: int, code: int = 1000, reason: str = "") -> None:
        check(_server_close_connection(self._ptr, connection, code, reason.encode()))

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stops listening and closes every connection (their closing handshakes finish in
        the background)."""
        if self._ptr:
            check(_server_close(self._ptr, code, reason.encode()))
            for _ in range(100):
                if _server_connection_count(self._ptr) == 0:
                    break
                await asyncio.sleep(0.01)

    def __del__(self) -> None:
        inbox = getattr(self, "_inbox", None)
        if inbox is not None:
            inbox.unwatch_quietly()
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            _server_free(ptr)


# ---------------------------------------------------------------------------------- client
# Clients by the token passed to the library as user_data, until it lets go of it.
_clients: Dict[int, "weakref.ReferenceType[Client]"] = {}
_client_tokens = iter(range(1, 1 << 62))


def _client_token() -> int:
    return next(_client_tokens)


@_STATE_CB
def _on_client_state(ud, client, state, reason) -> None:
    ref = _clients.get(ud or 0)
    c = ref() if ref is not None else None
    if c is not None:
        c._state_changed(ud, client, state, reason)


@CFUNCTYPE(None, c_void_p)
def _on_client_released(ud) -> None:
    _clients.pop(ud or 0, None)


class Client:
    """A WebSocket client on asyncio, with optional reconnection.

        async with Client("ws://127.0.0.1:7420/ws") as ws:
            await ws.send("hello")
            print(await ws.recv())
    """

    def __init__(self, url: str, *, headers: Optional[Mapping[str, str]] = None,
                 subprotocols: Sequence[str] = (), deflate: bool = False, connect_timeout: float = 10.0,
                 reconnect: bool = False, reconnect_initial_delay: float = 0.1,
                 reconnect_max_delay: float = 30.0, reconnect_max_attempts: int = 0,
                 offline_buffer_messages: int = 1024, offline_buffer_bytes: int = 1 << 20,
                 max_message_size: int = 16 << 20, ping_interval: Optional[float] = 30.0,
                 pong_timeout: float = 10.0, high_watermark: int = 1 << 20,
                 low_watermark: int = 256 << 10, max_buffered: int = 16 << 20,
                 compression_threshold: int = 1024, queue_capacity: int = 65536,
                 tls_ca_file: Optional[str] = None, tls_use_system_store: bool = True,
                 tls_verify: bool = True, runtime: Optional[Runtime] = None) -> None:
        self._runtime = runtime or _default_runtime()
        self._inbox = _Inbox(queue_capacity, _client_decoder(), payloads=True, driver=self._runtime._driver)
        self._low_watermark = low_watermark
        self._state_lock = threading.Lock()
        self._state = ClientState.CONNECTING
        self._reason = ""
        self._watchers: List[tuple] = []   # (loop, future)
        o = _ClientOptions()
        check(_client_options_init(byref(o), sizeof(o)))
        hs = list((headers or {}).items())
        self._headers = (_Header * max(len(hs), 1))(*[_Header(k.encode(), v.encode()) for k, v in hs])
        o.headers = ctypes.cast(self._headers, P(_Header))
        o.header_count = len(hs)
        self._subs, o.subprotocol_count = _strings(list(subprotocols))
        o.subprotocols = ctypes.cast(self._subs, P(c_char_p))
        o.connect_timeout_ms = int(connect_timeout * 1000)
        o.reconnect = 1 if reconnect else 0
        o.reconnect_initial_delay_ms = max(1, int(reconnect_initial_delay * 1000))
        o.reconnect_max_delay_ms = max(1, int(reconnect_max_delay * 1000))
        o.reconnect_max_attempts = reconnect_max_attempts
        o.offline_buffer_messages = offline_buffer_messages
        o.offline_buffer_bytes = offline_buffer_bytes
        _ws_options(o.ws, deflate=deflate, max_message_size=max_message_size, ping_interval=ping_interval,
                    pong_timeout=pong_timeout, high_watermark=high_watermark, low_watermark=low_watermark,
                    max_buffered=max_buffered, slow_consumer=SlowConsumer.CLOSE_1008,
                    compression_threshold=compression_threshold)
        # The library calls on_state until it lets go of the client, which may be after this
        # object is gone (an unclosed client at exit, freed by the runtime's shutdown): the
        # callbacks are module-level and find the client through a weak reference.
        self._token = _client_token()
        _clients[self._token] = weakref.ref(self)
        o.on_state = _on_client_state
        o.callbacks.user_data = self._token
        o.user_data_free = ctypes.cast(_on_client_released, c_void_p)
        o.queue = self._inbox.queue._ptr
        o.queue_events = 0
        if tls_ca_file:
            o.tls_ca_file = tls_ca_file.encode()
        o.tls_use_system_store = 1 if tls_use_system_store else 0
        o.tls_verify_peer = 1 if tls_verify else 0
        ptr = c_void_p()
        rc = _client_new(self._runtime._ptr, url.encode(), byref(o), byref(ptr))
        if rc < 0:
            _clients.pop(self._token, None)
            raise error_for(rc)
        self._ptr = ptr.value

    # Runs on the library's I/O thread (ctypes takes the GIL).
    def _state_changed(self, _ud, _client, state, reason) -> None:
        with self._state_lock:
            self._state = ClientState(state)
            self._reason = (reason or b"").decode(errors="replace")
            watchers, self._watchers = self._watchers, []
        for loop, fut in watchers:
            try:
                loop.call_soon_threadsafe(_settle, fut)
            except RuntimeError:
                pass   # that loop is closed
        loop = self._inbox.loop
        if loop is not None:   # a recv may be waiting for messages that will not come
            try:
                loop.call_soon_threadsafe(self._inbox.wake)
            except RuntimeError:
                pass

    @property
    def state(self) -> ClientState:
        return ClientState(_client_state(self._ptr))

    async def _state_change(self) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._state_lock:
            self._watchers.append((loop, fut))
        await fut

    async def connect(self) -> "Client":
        """Connects and waits until open; raises IOFailure with the reason when the client
        closes first (refused, timed out, gave up reconnecting)."""
        check(_client_connect(self._ptr))
        await self.wait_open()
        return self

    async def wait_open(self) -> None:
        while True:
            st = self.state
            if st == ClientState.OPEN:
                return
            if st == ClientState.CLOSED:
                from .errors import IOFailure
                raise IOFailure(_abi.ORC_EIO, f"connection closed: {self._reason or 'closed'}")
            waiter = self._state_change()
            # The state may have changed between the read and the registration.
            if self.state != st:
                waiter.close()
                continue
            await waiter

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def send_nowait(self, data: Data) -> bool:
        if type(data) is bytes:   # the common case, without the conversion call
            rc = _client_send(self._ptr, BINARY, data, len(data))
        else:
            op, b = _payload(data)
            rc = _client_send(self._ptr, op, b, len(b))
        if rc < 0:
            raise error_for(rc)
        return rc != _ABOVE_HIGH_WATERMARK

    async def send(self, data: Data) -> None:
        """Sends (or buffers while reconnecting); waits for the send buffer to drain when it
        is above its high watermark."""
        if self.send_nowait(data):
            return
        while self.stats()["buffered_amount"] > self._low_watermark:
            if self.state != ClientState.OPEN:
                return
            await asyncio.sleep(0.001)

    async def recv(self) -> Union[str, bytes]:
        """The next message (str for text, bytes for binary). Raises Closed once the client is
        closed and every received message was read."""
        inbox = self._inbox
        if inbox._buf:   # already popped
            return inbox._buf.popleft()
        while True:
            # The state first: everything received before the client closed is queued by the
            # time the state says closed, so an empty queue after it means the end.
            closed = self._state == ClientState.CLOSED
            try:
                data = inbox.pop_nowait()
            except StopAsyncIteration:
                data, closed = _EMPTY, True
            if data is not _EMPTY:
                return data
            if closed:
                inbox.unwatch()
                raise Closed(_ECLOSED, f"client closed: {self._reason or 'closed'}")
            await inbox.wait()

    async def recv_many(self, limit: int = 64) -> List[Union[str, bytes]]:
        """The messages already received, oldest first: at least one (waiting for it like
        ``recv``) and at most ``limit``. One await for a whole burst: a reader of many small
        messages spends less time per message than with ``recv``. Raises Closed like ``recv``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        inbox = self._inbox
        while True:
            closed = self._state == ClientState.CLOSED
            try:
                items = inbox.pop_many(limit)
            except StopAsyncIteration:
                items, closed = [], True
            if items:
                return items
            if closed:
                inbox.unwatch()
                raise Closed(_ECLOSED, f"client closed: {self._reason or 'closed'}")
            await inbox.wait()

    def __aiter__(self):
        return self._messages()

    async def _messages(self):
        while True:
            try:
                yield await self.recv()
            except Closed:
                return

    def ping(self) -> None:
        check(_client_ping(self._ptr))

    def stats(self) -> dict:
        s = _Stats()
        check(_client_stats(self._ptr, byref(s)))
        return {n: getattr(s, n) for n, _ in s._fields_}

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake; returns once closed (at most the close timeout)."""
        if not self._ptr:
            return
        check(_client_close(self._ptr, code, reason.encode()))
        while self.state != ClientState.CLOSED:
            waiter = self._state_change()
            if self.state == ClientState.CLOSED:
                waiter.close()
                break
            try:
                await asyncio.wait_for(waiter, 10)
            except asyncio.TimeoutError:
                break
        self._inbox.unwatch()

    def __del__(self) -> None:
        inbox = getattr(self, "_inbox", None)
        if inbox is not None:
            inbox.unwatch_quietly()
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            _client_free(ptr)


def _settle(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
