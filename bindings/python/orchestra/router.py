"""The subject router: `*` matches one token, `>` one or more trailing tokens."""
from __future__ import annotations

import ctypes
import threading
from ctypes import byref, c_uint64, c_void_p
from enum import IntEnum
from typing import Callable, Dict, Optional

from . import _abi, _lib
from .errors import check
from .message import Message

Handler = Callable[[Message], None]


class Action(IntEnum):
    CONTINUE = _abi.ORC_ROUTE_CONTINUE
    STOP = _abi.ORC_ROUTE_STOP


def _borrowed(ptr: int) -> Message:
    """Wraps a message the library lends for the duration of a callback (retained, so a
    handler may keep it)."""
    m = Message.__new__(Message)
    m._ptr = _lib.orc_msg_retain(ptr)
    return m


class PublishResult:
    __slots__ = ("matched", "failed", "stopped", "unhandled")

    def __init__(self, r: "_lib.PublishResult"):
        self.matched, self.failed = r.matched, r.failed
        self.stopped, self.unhandled = bool(r.stopped), bool(r.unhandled)

    def __repr__(self) -> str:
        return (f"PublishResult(matched={self.matched}, failed={self.failed}, "
                f"stopped={self.stopped}, unhandled={self.unhandled})")


class Router:
    """orc_router_t. Handlers run on the thread that calls publish(). A handler that raises
    counts as a failure and does not stop the other handlers."""

    def __init__(self):
        out = c_void_p()
        self._ptr = None
        check(_lib.orc_router_new(byref(out)))
        self._ptr = out.value
        self._lock = threading.Lock()
        self._callbacks: Dict[int, object] = {}   # keeps ctypes trampolines alive
        self._next_key = 0
        self._free_cb = _lib.FREE_CB(self._release)

    def __del__(self):
        if getattr(self, "_ptr", None):
            _lib.orc_router_free(self._ptr)
            self._ptr = None

    def _keep(self, cb) -> int:
        with self._lock:
            self._next_key += 1
            key = self._next_key
            self._callbacks[key] = cb
        return key

    def _release(self, key) -> None:
        # user_data_free: the library has let go of this callback.
        with self._lock:
            self._callbacks.pop(key or 0, None)

    def subscribe(self, pattern: str, handler: Handler) -> int:
        """Calls handler(message) for every published message whose type matches pattern.
        Returns a subscription id for unsubscribe()."""
        def trampoline(_ud, msg):
            try:
                handler(_borrowed(msg))
                return 0
            except Exception:
                return -1
        cb = _lib.HANDLER_CB(trampoline)
        key = self._keep(cb)
        p = pattern.encode()
        sid = c_uint64()
        rc = _lib.orc_router_subscribe(self._ptr, p, len(p), cb, key, self._free_cb, byref(sid))
        if rc < 0:
            self._release(key)
            check(rc)
        return sid.value

    def unsubscribe(self, subscription_id: int) -> bool:
        rc = _lib.orc_router_unsubscribe(self._ptr, subscription_id)
        if rc == _abi.ORC_ENOTFOUND:
            return False
        check(rc)
        return True

    def use(self, middleware: Callable[[Message], Optional[object]]) -> None:
        """Adds middleware: fn(message) returning None/Action.CONTINUE to go on,
        Action.STOP to stop, or a Message to replace the message. An exception stops it."""
        def trampoline(_ud, msg, replace):
            try:
                r = middleware(_borrowed(msg))
            except Exception:
                return -1
            if isinstance(r, Message):
                replace[0] = _lib.orc_msg_retain(r._ptr)
                return int(Action.CONTINUE)
            return int(Action.STOP) if r == Action.STOP else int(Action.CONTINUE)
        cb = _lib.MIDDLEWARE_CB(trampoline)
        key = self._keep(cb)
        rc = _lib.orc_router_use(self._ptr, cb, key, self._free_cb)
        if rc < 0:
            self._release(key)
            check(rc)

    def on_unhandled(self, fn: Handler) -> None:
        """Calls fn(message) for messages no subscription matched (dead letters)."""
        def trampoline(_ud, msg):
            try:
                fn(_borrowed(msg))
            except Exception:
                pass
        cb = _lib.UNHANDLED_CB(trampoline)
        key = self._keep(cb)
        rc = _lib.orc_router_on_unhandled(self._ptr, cb, key, self._free_cb)
        if rc < 0:
            self._release(key)
            check(rc)

    def publish(self, msg: Message) -> PublishResult:
        r = _lib.PublishResult()
        r.struct_size = ctypes.sizeof(r)
        check(_lib.orc_router_publish(self._ptr, msg._ptr, byref(r)))
        return PublishResult(r)

    def stats(self) -> dict:
        s = _lib.RouterStats()
        s.struct_size = ctypes.sizeof(s)
        check(_lib.orc_router_stats(self._ptr, byref(s)))
        return {name: getattr(s, name) for name, _ in s._fields_ if name != "struct_size"}


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.encode(), subject.encode()
    return bool(check(_lib.orc_subject_matches(p, len(p), s, len(s))))


def validate_subject(subject: str, pattern: bool = False) -> None:
    """Raises InvalidArgument explaining what is wrong with the subject or pattern."""
    s = subject.encode()
    check(_lib.orc_subject_validate(s, len(s), int(pattern)))
