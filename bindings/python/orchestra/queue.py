"""The h2A queue: bounded, prioritised, thread-safe; blocking pops, batches and `async for`."""
from __future__ import annotations

import asyncio
import collections
import ctypes
from ctypes import byref, c_int, c_size_t, c_void_p
from enum import IntEnum
from typing import Callable, Iterable, List, Optional

from . import _abi, _lib
from .errors import Closed, WouldBlock, check, error_for
from .message import Message

_EAGAIN, _ETIMEDOUT, _ECLOSED = _abi.ORC_EAGAIN, _abi.ORC_ETIMEDOUT, _abi.ORC_ECLOSED


class Policy(IntEnum):
    """What a full queue does with a new message."""
    BLOCK = _abi.ORC_POLICY_BLOCK              #: the producer waits up to push_timeout_ms, then Full
    REJECT = _abi.ORC_POLICY_REJECT            #: push raises Full at once; the message stays with the caller
    DROP_OLDEST = _abi.ORC_POLICY_DROP_OLDEST  #: the oldest lower-or-equal priority message is dropped (drop callback)
    DROP_NEWEST = _abi.ORC_POLICY_DROP_NEWEST  #: the new message is dropped (drop callback)


class DropReason(IntEnum):
    OVERFLOW = _abi.ORC_DROP_OVERFLOW
    EXPIRED = _abi.ORC_DROP_EXPIRED
    FREED = _abi.ORC_DROP_FREED


def _timeout_ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return -1
    return max(0, int(timeout * 1000))


def _adopt(ptr: int) -> Message:
    m = Message.__new__(Message)
    m._ptr = ptr
    return m


class Queue:
    """orc_queue_t. Any thread may push and pop; `async for msg in queue` works on asyncio
    through the queue's readiness file descriptor and pops in batches."""

    BATCH = 256

    def __init__(self, capacity: int = 65536, policy: Policy = Policy.BLOCK,
                 push_timeout_ms: int = -1, name: Optional[str] = None,
                 on_drop: Optional[Callable[[Message, DropReason], None]] = None,
                 spin_us: Optional[int] = None):
        opts = _lib.QueueOptions()
        check(_lib.orc_queue_options_init_sized(byref(opts), ctypes.sizeof(opts)))
        opts.capacity = capacity
        opts.policy = int(policy)
        opts.push_timeout_ms = push_timeout_ms
        if spin_us is not None:
            opts.spin_us = spin_us
        self._name = name.encode() if name else None
        opts.name = self._name
        out = c_void_p()
        self._ptr = None
        check(_lib.orc_queue_new(byref(opts), byref(out)))
        self._ptr = out.value
        self._drop_cb = None
        if on_drop is not None:
            self.on_drop(on_drop)

    def __del__(self):
        if getattr(self, "_ptr", None):
            _lib.orc_queue_free(self._ptr)
            self._ptr = None

    def on_drop(self, fn: Callable[[Message, DropReason], None]) -> None:
        """Calls fn(message, reason) for every message the queue drops (overflow, TTL expiry,
        leftovers at free). The message is a copy-safe reference valid inside the call."""
        def trampoline(_ud, msg, reason):
            ptr = _lib.orc_msg_retain(msg)
            fn(_adopt(ptr), DropReason(reason))
        cb = _lib.DROP_CB(trampoline)
        check(_lib.orc_queue_set_drop_callback(self._ptr, cb, None, ctypes.cast(None, _lib.FREE_CB)))
        self._drop_cb = cb  # keep the trampoline alive while the queue may call it

    # producers ---------------------------------------------------------------------------
    def push(self, msg: Message) -> None:
        """Adds msg (the queue takes its own reference). Raises Full, Closed or Failed."""
        ptr = _lib.orc_msg_retain(msg._ptr)
        rc = _lib.orc_queue_push(self._ptr, ptr)
        if rc < 0:
            _lib.orc_msg_release(ptr)
            raise error_for(rc)

    def push_batch(self, msgs: Iterable[Message]) -> int:
        """Adds messages in order under one lock; returns how many were taken."""
        msgs = list(msgs)
        arr = (c_void_p * len(msgs))(*[_lib.orc_msg_retain(m._ptr) for m in msgs])
        accepted = c_size_t()
        rc = _lib.orc_queue_push_batch(self._ptr, arr, len(msgs), byref(accepted))
        for i in range(accepted.value, len(msgs)):
            _lib.orc_msg_release(arr[i])
        if rc < 0 and accepted.value == 0:
            raise error_for(rc)
        return accepted.value

    # consumers ---------------------------------------------------------------------------
    def pop(self, timeout: Optional[float] = None) -> Message:
        """Waits up to `timeout` seconds (None: forever, 0: don't wait). Raises WouldBlock
        (empty, timeout 0), Timeout, Closed (closed and drained) or Failed."""
        out = c_void_p()
        check(_lib.orc_queue_pop(self._ptr, _timeout_ms(timeout), byref(out)))
        return _adopt(out.value)

    def pop_batch(self, max: int = 256, timeout: Optional[float] = None) -> List[Message]:
        """Up to `max` messages, waiting only for the first."""
        # A fresh array per call: several threads may pop from one queue at once.
        arr = (c_void_p * max)()
        n = c_size_t()
        check(_lib.orc_queue_pop_batch(self._ptr, arr, max, _timeout_ms(timeout), byref(n)))
        return [_adopt(arr[i]) for i in range(n.value)]

    def close(self) -> None:
        """No more pushes; readers drain what is left, then get Closed."""
        check(_lib.orc_queue_close(self._ptr))

    def fail(self, message: str, code: int = _abi.ORC_EFAILED) -> None:
        """Puts the queue into an error state that readers and writers receive."""
        b = message.encode()
        check(_lib.orc_queue_fail(self._ptr, code, b, len(b)))

    def fileno(self) -> int:
        """The readiness fd: readable while the queue has messages or is closed/failed."""
        fd = c_int()
        check(_lib.orc_queue_fd(self._ptr, byref(fd)))
        return fd.value

    def __len__(self) -> int:
        return _lib.orc_queue_depth(self._ptr)

    def stats(self) -> dict:
        s = _lib.QueueStats()
        s.struct_size = ctypes.sizeof(s)
        check(_lib.orc_queue_stats(self._ptr, byref(s)))
        return {name: getattr(s, name) for name, _ in s._fields_ if name != "struct_size"}

    def __iter__(self):
        """Blocking iteration until the queue is closed and drained."""
        while True:
            try:
                batch = self.pop_batch(self.BATCH, None)
            except Closed:
                return
            yield from batch

    def __aiter__(self):
        return _AsyncIterator(self)


class _AsyncIterator:
    def __init__(self, queue: Queue):
        self._q = queue
        self._buf: collections.deque = collections.deque()
        self._fd = queue.fileno()
        self._arr = (c_void_p * Queue.BATCH)()   # this iterator's own batch buffer

    def __aiter__(self):
        return self

    async def __anext__(self) -> Message:
        if self._buf:
            return self._buf.popleft()
        q = self._q
        arr, n = self._arr, c_size_t()
        while True:
            rc = _lib.orc_queue_pop_batch(q._ptr, arr, q.BATCH, 0, byref(n))
            if rc == 0:
                count = n.value
                first = _adopt(arr[0])
                if count > 1:
                    self._buf.extend(_adopt(arr[i]) for i in range(1, count))
                return first
            if rc == _ECLOSED:
                raise StopAsyncIteration
            if rc != _EAGAIN:
                raise error_for(rc)
            await self._readable()

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = self._fd

        def ready():
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
