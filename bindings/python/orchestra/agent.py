"""Agents: the agent side of the hub protocol (docs/protocol.md), over ``orc_agent_*``.

The library does the protocol: it connects to the hub's ``/agent`` endpoint, signs
``agent.register``, reconnects with backoff, sends heartbeats, numbers stream chunks, keeps the
outbox while unregistered and drops what the hub re-assigned. Given several hub URLs it fails
over round robin: when a connection is lost or cannot be made it moves to the next URL (after
the last, the first again) and re-registers there with its tasks in flight, keeping those the
hub still gives it. This module only converts.

Two forms:

* :class:`Agent` on asyncio. The agent's readiness fd is watched by the loop from ``start()``
  until the agent is closed or failed; every event is routed as it arrives (tasks to
  ``tasks()``, CANCEL and INPUT to their task object), so a task being worked on learns of its
  cancellation while ``tasks()`` is not being iterated.
* :class:`SyncAgent` for scripts without asyncio: ``for task in agent.tasks(): ...`` pops
  events with ``orc_agent_next_event``; events that arrive while the body runs are routed
  whenever the agent is asked (``task.cancelled``, ``task.next_input()``, the next task).

The tasks in flight are the library's: each TASK event's attempt carries a weak reference to
its task object (``orc_agent_event_set_task_data``), which the CANCEL and INPUT events about the
attempt hand back; this module keeps no map of its own.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import json
import logging
import threading
import time
import weakref
from ctypes import (POINTER, Structure, byref, c_char_p, c_double, c_int, c_int64, c_size_t,
                    c_uint32, c_void_p, py_object, sizeof)
from enum import IntEnum
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Optional, Sequence, Union

from . import _abi, _lib
from .errors import Closed, InvalidArgument, StateError, check, error_for
from .ws import Runtime

log = logging.getLogger("orchestra.agent")

_EAGAIN, _ETIMEDOUT, _ECLOSED = _abi.ORC_EAGAIN, _abi.ORC_ETIMEDOUT, _abi.ORC_ECLOSED
_TASK, _CANCEL, _INPUT, _STATE, _ERROR = (_abi.ORC_AGENT_EVENT_TASK, _abi.ORC_AGENT_EVENT_CANCEL, _abi.ORC_AGENT_EVENT_INPUT,
                                          _abi.ORC_AGENT_EVENT_STATE, _abi.ORC_AGENT_EVENT_ERROR)
_FAILOVER = _abi.ORC_AGENT_EVENT_FAILOVER


class AgentState(IntEnum):
    """``orc_agent_state_t``: CONNECTING -> REGISTERED -> DISCONNECTED -> CONNECTING ...;
    FAILED (the hub refused the registration; the agent stops) and CLOSED are final."""
    CONNECTING = _abi.ORC_AGENT_CONNECTING
    REGISTERED = _abi.ORC_AGENT_REGISTERED
    DISCONNECTED = _abi.ORC_AGENT_DISCONNECTED
    FAILED = _abi.ORC_AGENT_FAILED
    CLOSED = _abi.ORC_AGENT_CLOSED


class HubError(Exception):
    """The hub answered with an error envelope: ``code`` is the hub's code ("AUTH_001",
    "PARAM_001", ...), ``message`` its message; ``task_id``/``attempt`` when the error was
    about a task, ``payload`` the error's whole payload (dict) when there was one."""

    def __init__(self, code: str, message: str, *, task_id: Optional[str] = None,
                 attempt: int = 0, payload: Optional[dict] = None) -> None:
        self.code = code
        self.message = message
        self.task_id = task_id
        self.attempt = attempt
        self.payload = payload
        super().__init__(f"{code}: {message}" if code and not message.startswith(code) else message)


class AuthError(HubError):
    """The hub refused the registration (AUTH_001: unknown key, bad signature, stale clock,
    replayed nonce). The agent is FAILED: the same credentials would be refused again."""


# ---------------------------------------------------------------------------------- C ABI
class _Options(Structure):
    _fields_ = [("struct_size", c_size_t), ("url", c_char_p), ("agent_id", c_char_p),
                ("name", c_char_p), ("version", c_char_p), ("capabilities", POINTER(c_char_p)),
                ("capabilities_count", c_size_t), ("metadata_json", c_char_p),
                ("max_concurrency", c_uint32), ("key_id", c_char_p), ("secret", c_char_p),
                ("secret_len", c_size_t), ("request_timeout_ms", c_uint32),
                ("connect_timeout_ms", c_uint32), ("reconnect_initial_delay_ms", c_uint32),
                ("reconnect_max_delay_ms", c_uint32), ("on_event", c_void_p),
                ("user_data", c_void_p), ("user_data_free", c_void_p),
                ("tls_ca_file", c_char_p), ("tls_verify", c_int),
                ("urls", POINTER(c_char_p)), ("url_count", c_size_t)]


class _View(Structure):
    """orc_agent_event_view_t."""
    _fields_ = [("struct_size", c_size_t), ("kind", c_int), ("state", c_int), ("attempt", c_uint32),
                ("task_id", c_char_p), ("task_id_len", c_size_t),
                ("payload_json", c_char_p), ("payload_json_len", c_size_t),
                ("input", c_char_p), ("input_len", c_size_t),
                ("reason", c_char_p), ("reason_len", c_size_t),
                ("code", c_char_p), ("code_len", c_size_t)]


class _C:
    """The orc_agent_* functions, declared on first use (a library without the agent API
    still serves the rest of the package)."""
    ready = False

    @classmethod
    def bind(cls) -> None:
        if cls.ready:
            return
        f, vp, P = _lib.fn, c_void_p, POINTER
        try:
            cls.options_init = f("orc_agent_options_init_sized", c_int, P(_Options), c_size_t)
            cls.new = f("orc_agent_new", c_int, vp, P(_Options), P(vp))
            cls.start = f("orc_agent_start", c_int, vp)
            cls.state = f("orc_agent_state", c_int, vp)
            cls.url = f("orc_agent_url", c_void_p, vp, P(c_size_t))
            cls.next_event = f("orc_agent_next_event", c_int, vp, c_int64, P(vp))
            cls.fd = f("orc_agent_fd", c_int, vp, P(c_int))
            cls.event_free = f("orc_agent_event_free", None, vp)
            cls.event_kind = f("orc_agent_event_kind", c_int, vp)
            cls.event_attempt = f("orc_agent_event_attempt", c_uint32, vp)
            cls.event_state = f("orc_agent_event_state", c_int, vp)
            cls.event_view = f("orc_agent_event_view", c_int, vp, P(_View))
            cls.set_task_data = f("orc_agent_event_set_task_data", c_int, vp, vp, _lib.FREE_CB)
            cls.task_data = f("orc_agent_event_task_data", vp, vp)
            cls.getters = {name: f(f"orc_agent_event_{name}", c_void_p, vp, P(c_size_t))
                           for name in _FIELDS}
            cls.accept = f("orc_agent_accept", c_int, vp, c_char_p, c_uint32)
            cls.reject = f("orc_agent_reject", c_int, vp, c_char_p, c_uint32, c_char_p)
            cls.progress = f("orc_agent_progress", c_int, vp, c_char_p, c_uint32, c_double, c_char_p)
            cls.stream = f("orc_agent_stream", c_int, vp, c_char_p, c_uint32, c_char_p, c_char_p, c_size_t)
            cls.result = f("orc_agent_result", c_int, vp, c_char_p, c_uint32, c_int, c_char_p, c_char_p)
            cls.worker_output = f("orc_agent_worker_output", c_int, vp, c_char_p, c_uint32, c_char_p,
                                  c_char_p, c_char_p)
            cls.worker_status = f("orc_agent_worker_status", c_int, vp, c_char_p, c_uint32, c_char_p, c_char_p)
            cls.close = f("orc_agent_close", c_int, vp)
            cls.free = f("orc_agent_free", None, vp)
        except AttributeError as e:
            from .errors import Unsupported
            raise Unsupported(_abi.ORC_ENOTSUP, f"{_lib.path} has no agent API ({e}); build a newer liborchestra") from None
        cls.ready = True


_FIELDS = ("task_id", "task_json", "params_json", "input", "reason", "code", "payload_json", "url")


string_at = ctypes.string_at


def _field(ev: int, name: str) -> Optional[str]:
    n = c_size_t()
    p = _C.getters[name](ev, byref(n))
    if not p:
        return None
    return ctypes.string_at(p, n.value).decode("utf-8", "replace")


def _view_text(b: Optional[bytes], n: int, ev: int, name: str) -> Optional[str]:
    """A string of an orc_agent_event_view_t: ctypes reads a char* up to its first NUL, so a
    field with a NUL inside (shorter than its length) is read again whole by its getter."""
    if b is None:
        return None
    if len(b) != n:
        return _field(ev, name)
    return b.decode("utf-8", "replace")


_STDOUT = b"stdout"

# A task attempt's data in the library (orc_agent_event_set_task_data) is a weak reference to
# its task object, with a reference of ours that the library's data_free drops: the agent
# routes CANCEL and INPUT to the task object through it, and keeps no map of its own. Weak, so
# that neither a dropped task nor a dropped agent (tasks refer to their agent) is kept alive by
# the library; ctypes takes the GIL for the release on whichever thread the library calls it.
_incref = ctypes.PYFUNCTYPE(None, py_object)(("Py_IncRef", ctypes.pythonapi))
_decref = ctypes.PYFUNCTYPE(None, c_void_p)(("Py_DecRef", ctypes.pythonapi))
_release_ref = _lib.FREE_CB(_decref)


def _attach(ev: int, task: Any) -> None:
    """Gives the TASK event's attempt a weak reference to `task` (see above)."""
    ref = weakref.ref(task)
    _incref(ref)
    rc = _C.set_task_data(ev, id(ref), _release_ref)
    if rc < 0:
        _decref(id(ref))
        raise error_for(rc)


def _task_of(ev: int) -> Any:
    """The task object of the event's attempt (None: no data, or the task was dropped)."""
    p = _C.task_data(ev)
    return ctypes.cast(p, py_object).value() if p else None


def _compact_dumps() -> Callable[[Any], str]:
    """json.dumps(obj, separators=(",", ":")) (compact, as the library writes JSON). The
    stdlib builds a C encoder for every call; this one is built once (a result's JSON is on
    the hot path of every task), at the price of the circular-reference check: a cycle raises
    ValueError after Python's recursion limit stops the encoder."""
    enc = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:   # a Python without the C accelerator
        return enc.encode
    c = make(None, enc.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join

    def dumps(obj: Any) -> str:
        try:
            return join(c(obj, 0))
        except RecursionError:
            raise ValueError("Circular reference detected (or nesting deeper than the recursion limit)") from None
    return dumps


_dumps = _compact_dumps()


def _json(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


# The fields each kind of event is read for (a TASK's task and parameters are parsed from its
# payload, once, when first used): every ctypes call costs, and a task event is the hot path.
_NEEDED = {_TASK: ("task_id", "payload_json"), _CANCEL: ("task_id", "reason"), _INPUT: ("task_id", "input"),
           _STATE: ("reason", "code", "url"), _ERROR: ("task_id", "reason", "code", "payload_json"),
           _FAILOVER: ("url", "reason")}


class _Event:
    """A popped event, copied out of the library's (which is freed at once); `task` is the
    task object of a CANCEL or INPUT event's attempt."""
    __slots__ = ("kind", "attempt", "state", "task") + _FIELDS

    def __init__(self, ev: int) -> None:
        self.kind = kind = _C.event_kind(ev)
        self.attempt = _C.event_attempt(ev)
        self.state = _C.event_state(ev) if kind == _STATE else 0
        self.task = _task_of(ev) if kind in (_CANCEL, _INPUT) else None
        needed = _NEEDED.get(kind, _FIELDS)
        for name in _FIELDS:
            setattr(self, name, _field(ev, name) if name in needed else None)


def _secret_bytes(secret: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(secret, (bytes, bytearray, memoryview)):
        b = bytes(secret)
    elif isinstance(secret, str):
        try:
            b = bytes.fromhex(secret.strip())
        except ValueError:
            raise InvalidArgument(_abi.ORC_EINVAL, "secret: a str secret must be hex digits (as `orchestra-hub key add` "
                                      "prints it); pass bytes for a raw secret") from None
    else:
        raise TypeError(f"secret must be bytes or a hex str, not {type(secret).__name__}")
    if not b:
        raise InvalidArgument(_abi.ORC_EINVAL, "secret must not be empty")
    return b


def _utf8(value: Optional[str], what: str) -> Optional[bytes]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value.encode()


def _urls(url: Union[str, Sequence[str]]) -> list:
    """The hub URL, or the list of them, as a list of str (at least one)."""
    urls = [url] if isinstance(url, str) else list(url) if isinstance(url, (list, tuple)) else None
    if urls is None:
        raise TypeError(f"url must be a str or a list of str, not {type(url).__name__}")
    if not urls:
        raise InvalidArgument(_abi.ORC_EINVAL, "url: the list of hub URLs is empty")
    for u in urls:
        if not isinstance(u, str):
            raise TypeError(f"url: the list holds a {type(u).__name__}, not a str")
    return urls


def _ms(seconds: Optional[float], what: str) -> Optional[int]:
    if seconds is None:
        return None
    ms = int(seconds * 1000)
    if not 1 <= ms <= 0xFFFFFFFF:
        raise InvalidArgument(_abi.ORC_EINVAL, f"{what} must be between 0.001 and 4294967 seconds")
    return ms


class _Core:
    """The orc_agent_t shared by both forms: options, the handle, routing of CANCEL/INPUT/ERROR
    to the task objects. Subclasses decide how events are waited for."""

    _task_class: type

    def __init__(self, url: Union[str, Sequence[str]], agent_id: str, key_id: str, secret: Union[bytes, str],
                 capabilities: Sequence[str] = (), *, name: Optional[str] = None,
                 version: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None,
                 max_concurrency: int = 1, tls_ca_file: Optional[str] = None, tls_verify: bool = True,
                 request_timeout: Optional[float] = None, connect_timeout: Optional[float] = None,
                 reconnect_initial_delay: Optional[float] = None, reconnect_max_delay: Optional[float] = None,
                 on_error: Optional[Callable[[HubError], None]] = None,
                 on_failover: Optional[Callable[[str, str], None]] = None,
                 runtime: Optional[Runtime] = None) -> None:
        self._ptr = None
        _C.bind()
        if isinstance(capabilities, (str, bytes)):
            raise TypeError("capabilities must be a sequence of str (e.g. ['shell']), not a single string")
        caps = [_utf8(c, "capabilities[]") for c in capabilities]
        if not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= 0xFFFFFFFF:
            raise InvalidArgument(_abi.ORC_EINVAL, "max_concurrency must be an int >= 1")
        urls = _urls(url)
        self._runtime = runtime or Runtime.shared()
        o = _Options()
        check(_C.options_init(byref(o), sizeof(o)))
        # Every byte string stays referenced in self._keep until orc_agent_new has copied it.
        keep = self._keep = [None, _utf8(agent_id, "agent_id"), _utf8(key_id, "key_id"),
                             _utf8(name, "name"), _utf8(version, "version"), _secret_bytes(secret),
                             None if metadata is None else json.dumps(dict(metadata)).encode(),
                             _utf8(tls_ca_file, "tls_ca_file")]
        url_array = None   # several hubs: orc_agent_options_t.urls, alive until orc_agent_new
        if isinstance(url, str):
            keep[0] = _utf8(url, "url")
        else:
            url_array = (c_char_p * len(urls))(*[u.encode() for u in urls])
            o.urls, o.url_count = ctypes.cast(url_array, POINTER(c_char_p)), len(urls)
        o.url, o.agent_id, o.key_id, o.name, o.version = keep[0], keep[1], keep[2], keep[3], keep[4]
        o.secret, o.secret_len = keep[5], len(keep[5])
        o.metadata_json = keep[6]
        o.tls_ca_file = keep[7]
        o.tls_verify = 1 if tls_verify else 0
        self._caps = (c_char_p * max(len(caps), 1))(*caps)
        o.capabilities = ctypes.cast(self._caps, POINTER(c_char_p))
        o.capabilities_count = len(caps)
        o.max_concurrency = max_concurrency
        for field, value, what in (("request_timeout_ms", request_timeout, "request_timeout"),
                                   ("connect_timeout_ms", connect_timeout, "connect_timeout"),
                                   ("reconnect_initial_delay_ms", reconnect_initial_delay, "reconnect_initial_delay"),
                                   ("reconnect_max_delay_ms", reconnect_max_delay, "reconnect_max_delay")):
            ms = _ms(value, what)
            if ms is not None:
                setattr(o, field, ms)
        ptr = c_void_p()
        check(_C.new(self._runtime._ptr, byref(o), byref(ptr)))
        self._ptr = ptr.value
        del self._keep, self._caps
        del url_array
        self.agent_id = agent_id
        self.urls: tuple = tuple(urls)   #: the hub URLs, in the order they are tried
        # The library calls it for this agent's tasks up to orc_agent_free (in _free): kept
        # alive with the agent, whatever order the interpreter's shutdown clears modules in.
        self._release_ref = _release_ref
        self._on_error = on_error
        self._on_failover = on_failover
        self._failure: Optional[HubError] = None
        self.reason = ""   #: why the agent last disconnected or failed

    @property
    def state(self) -> AgentState:
        """The agent's state now (``orc_agent_state``)."""
        return AgentState(_C.state(self._ptr)) if self._ptr else AgentState.CLOSED

    @property
    def url(self) -> str:
        """The URL of the hub the agent is connected to, or is connecting to or will try next
        (``orc_agent_url``); once the agent is freed, the first URL."""
        if not self._ptr:
            return self.urls[0]
        return self.urls[self.url_index]

    @property
    def url_index(self) -> int:
        """The position of :attr:`url` in :attr:`urls`."""
        i = c_size_t()
        if not self._ptr or not _C.url(self._ptr, byref(i)):
            return 0
        return i.value

    # Event routing, on whichever thread pumps (the loop's for Agent, under a lock for SyncAgent).
    def _route(self, e: _Event, ev: int):
        """Routes one event (`ev`, the library's, still held); returns a new task object for
        TASK events, else None. CANCEL and INPUT reach the task object the library carries
        for their attempt."""
        if e.kind == _TASK:
            t = self._task_class(self, e.task_id or "", e.attempt, e.payload_json)
            _attach(ev, t)
            return t
        if e.kind == _CANCEL:
            if e.task is not None:
                e.task._cancel(e.reason or "cancelled")
            return None
        if e.kind == _INPUT:
            if e.task is not None:
                e.task._input(e.input or "")
            else:
                log.warning("input for task %s, which is not in flight here: dropped", e.task_id)
            return None
        if e.kind == _STATE:
            self._state_event(AgentState(e.state), e.reason or "", e.code)
            return None
        if e.kind == _ERROR:
            err = HubError(e.code or "", e.reason or "", task_id=e.task_id, attempt=e.attempt,
                           payload=_json(e.payload_json))
            if self._on_error is not None:
                self._on_error(err)
            else:
                log.warning("the hub answered an error: %s (task %s)", err, e.task_id)
        elif e.kind == _FAILOVER:
            log.info("agent %s fails over to %s: %s", self.agent_id, e.url, e.reason)
            if self._on_failover is not None:
                self._on_failover(e.url or "", e.reason or "")
        return None

    def _state_event(self, state: AgentState, reason: str, code: Optional[str]) -> None:
        if state in (AgentState.DISCONNECTED, AgentState.FAILED):
            self.reason = reason
        if state == AgentState.FAILED:
            cls = AuthError if code == "AUTH_001" else HubError
            self._failure = cls(code or "", reason or "the hub refused the registration")

    def _free(self) -> None:
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            _C.free(ptr)


class _TaskBase:
    """A task attempt assigned to this agent (task.assign). The actions send at once (or queue
    in the agent's outbox while it re-registers) and raise NotFound once the attempt is no
    longer in flight (finished, rejected, cancelled), Closed once the agent is closed."""

    def __init__(self, agent: _Core, task_id: str, attempt: int, payload_json: Optional[str]) -> None:
        self._agent = agent
        self.id: str = task_id
        self.attempt: int = attempt
        self._payload_json = payload_json
        self._payload: Optional[dict] = None
        self.cancel_reason: Optional[str] = None
        self.done = False   #: True once result() or reject() was sent, or the task was cancelled
        self._tid = self.id.encode()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} attempt {self.attempt}>"

    @property
    def payload(self) -> dict:
        """The whole task.assign payload (parsed on first use)."""
        if self._payload is None:
            self._payload = _json(self._payload_json) or {}
        return self._payload

    @property
    def task(self) -> dict:
        """The assign's "task" object."""
        return self.payload.get("task") or {}

    @property
    def params(self) -> dict:
        """The task's "parameters" ({} when absent)."""
        return self.task.get("parameters") or {}

    def _ptr(self) -> int:
        ptr = self._agent._ptr
        if not ptr:
            raise Closed(_ECLOSED, "the agent was freed")
        return ptr

    def accept(self) -> None:
        """task.accepted: the task is running here."""
        rc = _C.accept(self._agent._ptr or self._ptr(), self._tid, self.attempt)
        if rc < 0:
            raise error_for(rc)

    def reject(self, reason: Optional[str] = None) -> None:
        """task.rejected: the hub offers the task to another agent."""
        check(_C.reject(self._ptr(), self._tid, self.attempt, _utf8(reason, "reason")))
        self._finish()

    def progress(self, percent: float, step: Optional[str] = None) -> None:
        """task.progress: percent in 0..100, an optional description of the current step."""
        check(_C.progress(self._ptr(), self._tid, self.attempt, float(percent), _utf8(step, "step")))

    def stream(self, data: Union[str, bytes], type: str = "stdout") -> None:
        """task.stream: a chunk of output ("stdout", "stderr" or "log"); bytes must be UTF-8.
        The library numbers the chunks (seq 0, 1, 2, ...) in call order."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        t = _STDOUT if type == "stdout" else _utf8(type, "type")
        rc = _C.stream(self._agent._ptr or self._ptr(), self._tid, self.attempt, t, b, len(b))
        if rc < 0:
            raise error_for(rc)

    def result(self, success: bool = True, result: Any = None, error: Optional[str] = None) -> None:
        """task.result: the outcome; ``result`` is any JSON-serialisable value, ``error`` a
        message. The library adds the duration since the assign."""
        rj = None if result is None else _dumps(result).encode()
        rc = _C.result(self._agent._ptr or self._ptr(), self._tid, self.attempt, 1 if success else 0, rj,
                       None if error is None else _utf8(error, "error"))
        if rc < 0:
            raise error_for(rc)
        self._finish()

    def output(self, content: str, type: str = "assistant", details: Optional[Mapping[str, Any]] = None) -> None:
        """worker.output: type "user", "assistant", "tool", "tool-result" or "system"."""
        dj = None if details is None else json.dumps(dict(details)).encode()
        check(_C.worker_output(self._ptr(), self._tid, self.attempt, _utf8(type, "type"),
                             _utf8(content, "content"), dj))

    def status(self, status: str, message: Optional[str] = None) -> None:
        """worker.status: "starting", "running", "paused", "completed" or "error"."""
        check(_C.worker_status(self._ptr(), self._tid, self.attempt, _utf8(status, "status"),
                             _utf8(message, "message")))

    def _finish(self) -> None:
        self.done = True
        self._end_inputs()

    def _cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self.done = True
        self._end_inputs()

    def _input(self, text: str) -> None: ...
    def _end_inputs(self) -> None: ...


# ---------------------------------------------------------------------------------- asyncio
class AgentTask(_TaskBase):
    """A task of an asyncio :class:`Agent`. ``cancelled`` is an ``asyncio.Event`` set when the
    hub cancels (or re-assigns) the attempt: ``cancelled.is_set()``, ``await
    cancelled.wait()``; ``cancel_reason`` says why. ``async for text in task.inputs()`` gives
    the worker.input sent to it, and ends when the task is done."""

    # Made on first use: most tasks are never cancelled and get no input, and a task is the
    # hot path (an asyncio.Event and a deque per task cost more than the rest of its setup).
    _cancelled: Optional[asyncio.Event] = None
    _inputs: Optional[collections.deque] = None
    _inputs_ended = False

    @property
    def cancelled(self) -> asyncio.Event:
        ev = self._cancelled
        if ev is None:
            ev = self._cancelled = asyncio.Event()
            if self.cancel_reason is not None:
                ev.set()
        return ev

    def _cancel(self, reason: str) -> None:
        super()._cancel(reason)
        self.cancelled.set()

    def _input(self, text: str) -> None:
        # Routed by the agent's pump, which wakes the waiters (inputs()) once it is done.
        if self._inputs is None:
            self._inputs = collections.deque()
        self._inputs.append(text)

    def _end_inputs(self) -> None:
        self._inputs_ended = True
        self._agent._wake()   # type: ignore[attr-defined]

    async def inputs(self) -> AsyncIterator[str]:
        """The inputs sent to this task, in order, until it is done or the agent closes."""
        agent: Agent = self._agent   # type: ignore[assignment]
        while True:
            if self._inputs:
                yield self._inputs.popleft()
                continue
            if self._inputs_ended or agent._ended:
                return
            await agent._changed()


class Agent(_Core):
    """An agent on asyncio.

        async with orchestra.Agent("ws://127.0.0.1:7420/agent", "a1", "k1", secret_hex,
                                   capabilities=["shell"]) as agent:
            async for task in agent.tasks():
                task.accept()
                task.stream("hello\\n")
                task.result(True, {"exitCode": 0})

    ``url`` is one hub's URL or a list of them (hubs sharing one database): the agent starts
    with the first and, when a connection is lost or cannot be made, moves to the next (after
    the last, the first again), re-registering with its tasks in flight. ``url`` says which
    hub it is with now; each move is logged (INFO, "orchestra.agent") and passed to
    ``on_failover(url, reason)`` when given. ``secret`` is bytes, or a str of hex digits (as
    ``orchestra-hub key add`` prints it), which is decoded. ``on_error(HubError)`` receives the
    errors the hub answers to the agent's messages (default: logged on the "orchestra.agent"
    logger).
    """

    _task_class = AgentTask

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._out = c_void_p()
        self._rout = byref(self._out)
        self._view = _View(struct_size=sizeof(_View))
        self._rview = byref(self._view)
        fd = c_int()
        check(_C.fd(self._ptr, byref(fd)))
        self._fdno = fd.value
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ended = False      # the event queue reported ORC_ECLOSED
        self._tasks: collections.deque = collections.deque()
        self._waiters: list = []  # futures woken by any routed event

    # -- events ---------------------------------------------------------------------------
    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop or self._ended:
            return
        if self._loop is not None:
            raise RuntimeError("an Agent is used from one asyncio loop")
        loop.add_reader(self._fdno, self._pump)
        self._loop = loop
        driver = self._runtime._driver
        if driver is not None and driver._loop is loop:
            # An embedded runtime run by this loop: route the events right after each run.
            driver.after_run[id(self)] = self._pump

    def _unwatch(self) -> None:
        driver = self._runtime._driver
        if driver is not None:
            driver.after_run.pop(id(self), None)
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self._fdno)
            except Exception:
                pass

    def _pump(self) -> None:
        """On the loop: route every waiting event. (Only the loop's thread pops, so the
        ctypes out-parameters are made once; a task event, the hot path, is read with one
        orc_agent_event_view and no intermediate _Event.)"""
        routed = False
        out, rout = self._out, self._rout
        view, rview = self._view, self._rview
        next_event, event_free, event_view = _C.next_event, _C.event_free, _C.event_view
        while self._ptr and not self._ended:
            rc = next_event(self._ptr, 0, rout)
            if rc == _EAGAIN:
                break
            if rc == _ECLOSED:
                self._end()
                routed = True
                break
            if rc < 0:
                self._end()
                raise error_for(rc)
            ev = out.value
            try:
                rc = event_view(ev, rview)
                if rc < 0:
                    raise error_for(rc)
                if view.kind == _TASK:
                    attempt = view.attempt
                    tid = _view_text(view.task_id, view.task_id_len, ev, "task_id") or ""
                    pj = _view_text(view.payload_json, view.payload_json_len, ev, "payload_json")
                    t = self._task_class(self, tid, attempt, pj)
                    _attach(ev, t)
                else:
                    t = self._route(_Event(ev), ev)
            finally:
                event_free(ev)
            if t is not None:
                self._tasks.append(t)
            routed = True
        if routed:
            self._wake()

    def _end(self) -> None:
        self._ended = True
        self._unwatch()
        self._wake()   # tasks(), inputs() and close() see the end

    def _wake(self) -> None:
        ws, self._waiters = self._waiters, []
        for w in ws:
            if not w.done():
                w.set_result(None)

    def _changed(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    # -- API ------------------------------------------------------------------------------
    async def start(self) -> "Agent":
        """Connects and registers; returns once the hub answered agent.registered. Raises
        AuthError (AUTH_001) or HubError (e.g. PARAM_001) when the hub refuses, Closed when
        the agent is closed first. While the hub cannot be reached the agent keeps trying
        (``asyncio.wait_for(agent.start(), 30)`` bounds the wait)."""
        check(_C.start(self._ptr))
        self._watch()
        while True:
            self._pump()
            st = self.state
            if st == AgentState.REGISTERED:
                return self
            if self._failure is not None:
                raise self._failure
            if st == AgentState.CLOSED or self._ended:
                raise Closed(_ECLOSED, "the agent was closed before it registered")
            await self._changed()

    async def tasks(self) -> AsyncIterator[AgentTask]:
        """The tasks assigned to this agent, in order. Ends when the agent is closed; raises
        AuthError/HubError when a re-registration is refused."""
        self._watch()
        while True:
            if self._tasks:
                yield self._tasks.popleft()
                continue
            if self._failure is not None:
                raise self._failure
            if self._ended:
                return
            await self._changed()

    async def close(self) -> None:
        """Closes for good (nothing more is sent); returns once the agent reported CLOSED.
        Tasks still in flight end their ``inputs()``; their actions raise Closed."""
        if not self._ptr:
            return
        check(_C.close(self._ptr))
        self._watch()
        deadline = time.monotonic() + 10
        while not self._ended and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._changed(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        self._unwatch()

    async def __aenter__(self) -> "Agent":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __del__(self) -> None:
        try:
            self._unwatch()
        except Exception:
            pass
        self._free()


# ---------------------------------------------------------------------------------- blocking
class SyncTask(_TaskBase):
    """A task of a :class:`SyncAgent`. ``cancelled`` (a bool property) first routes the events
    that have arrived, so a long-running loop can poll it; ``wait_cancelled(timeout)`` blocks
    until it is cancelled; ``next_input(timeout)`` waits for the next worker.input sent to this
    task."""

    def __init__(self, agent: "SyncAgent", task_id: str, attempt: int, payload_json: Optional[str]) -> None:
        super().__init__(agent, task_id, attempt, payload_json)
        self._cancelled = False
        self._inputs: collections.deque = collections.deque()

    def _cancel(self, reason: str) -> None:
        super()._cancel(reason)
        self._cancelled = True

    def _input(self, text: str) -> None:
        self._inputs.append(text)

    @property
    def cancelled(self) -> bool:
        self._agent._poll()
        return self._cancelled

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Waits until the hub cancels this attempt (True) or ``timeout`` seconds pass, the
        task is done otherwise or the agent closes (False). For a thread that watches a
        running task."""
        agent: SyncAgent = self._agent   # type: ignore[assignment]
        agent._wait(lambda: self._cancelled or self.done, timeout)
        return self._cancelled

    def next_input(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next input sent to this task; None when none came within ``timeout`` seconds
        (None: wait until one comes), when the task is done or the agent closed."""
        agent: SyncAgent = self._agent   # type: ignore[assignment]
        agent._wait(lambda: bool(self._inputs) or self.done, timeout)
        return self._inputs.popleft() if self._inputs else None


class SyncAgent(_Core):
    """An agent for scripts without asyncio (same arguments as :class:`Agent`).

        with orchestra.SyncAgent(url, "a1", "k1", secret_hex, capabilities=["shell"]) as agent:
            for task in agent.tasks():
                task.accept()
                task.result(True, {"exitCode": 0})

    Any thread may call the task actions and wait (``tasks()``, ``task.next_input()``): one
    waiting thread pops events at a time and routes them to the others.
    """

    _task_class = SyncTask

    def __init__(self, *args, **kwargs) -> None:
        rt = kwargs.get("runtime")
        if rt is not None and rt.embedded:
            # Its waits block the calling thread: nothing would run the runtime meanwhile.
            raise StateError(_abi.ORC_ESTATE, "SyncAgent needs a runtime with its own I/O thread, not an embedded one")
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self._pumping = False    # a thread is popping events (without holding _cond)
        self._ended = False
        self._tasks: collections.deque = collections.deque()

    def _take(self, timeout_ms: int) -> bool:
        """The pumping thread: pops one event (waiting up to timeout_ms) and routes it; False
        when none came."""
        ptr = self._ptr
        if not ptr:
            return False
        out = c_void_p()
        rc = _C.next_event(ptr, timeout_ms, byref(out))
        if rc in (_EAGAIN, _ETIMEDOUT):
            return False
        with self._cond:
            if rc == _ECLOSED:
                self._ended = True
                return False
            check(rc)
            try:
                t = self._route(_Event(out.value), out.value)
            finally:
                _C.event_free(out.value)
            if t is not None:
                self._tasks.append(t)
            return True

    def _poll(self) -> None:
        """Routes the events that have arrived, unless another thread is pumping (it does)."""
        with self._cond:
            if self._pumping or self._ended:
                return
            self._pumping = True
        try:
            while self._take(0):
                pass
        finally:
            with self._cond:
                self._pumping = False
                self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Waits until ready() (True), the agent ended or the timeout passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if ready():
                    return True
                if self._ended:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._pumping:
                    self._cond.wait(left)
                    continue
                self._pumping = True
            try:
                self._take(-1 if left is None else max(1, int(left * 1000)))
            finally:
                with self._cond:
                    self._pumping = False
                    self._cond.notify_all()

    def start(self, timeout: Optional[float] = None) -> "SyncAgent":
        """Connects and registers; returns once registered. Raises AuthError/HubError when the
        hub refuses, Timeout after ``timeout`` seconds (None: keep trying), Closed when the
        agent was closed."""
        check(_C.start(self._ptr))
        if not self._wait(lambda: self.state == AgentState.REGISTERED or self._failure is not None, timeout):
            if self._ended:
                raise Closed(_ECLOSED, "the agent was closed before it registered")
            from .errors import Timeout
            raise Timeout(_ETIMEDOUT, f"not registered within {timeout} s (state {self.state.name}: {self.reason})")
        if self._failure is not None:
            raise self._failure
        return self

    def tasks(self, timeout: Optional[float] = None) -> Iterator[SyncTask]:
        """The tasks assigned to this agent, in order. Ends when the agent is closed, or when
        no task arrived for ``timeout`` seconds (None: wait forever). Raises AuthError/HubError
        when a re-registration is refused."""
        while True:
            got = self._wait(lambda: bool(self._tasks) or self._failure is not None, timeout)
            if self._tasks:
                yield self._tasks.popleft()
                continue
            if self._failure is not None:
                raise self._failure
            if not got or self._ended:
                return

    def close(self) -> None:
        """Closes for good; returns once the agent reported CLOSED."""
        if not self._ptr:
            return
        check(_C.close(self._ptr))
        self._wait(lambda: False, 10)

    def __enter__(self) -> "SyncAgent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._free()
