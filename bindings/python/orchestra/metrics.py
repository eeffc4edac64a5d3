"""Counters, gauges and histograms, rendered as Prometheus text or a JSON snapshot."""
from __future__ import annotations

import ctypes
import json
from ctypes import byref, c_size_t, c_void_p

from . import _abi, _lib
from .errors import check
from .queue import Queue
from .router import Router


class Metrics:
    """orc_metrics_t: a registry. Thread-safe."""

    def __init__(self):
        out = c_void_p()
        self._ptr = None
        check(_lib.orc_metrics_new(byref(out)))
        self._ptr = out.value
        self._queues = []   # registered queues and routers stay alive until unregistered

    def __del__(self):
        if getattr(self, "_ptr", None):
            _lib.orc_metrics_free(self._ptr)
            self._ptr = None

    def counter_add(self, name: str, delta: int = 1) -> None:
        n = name.encode()
        check(_lib.orc_metrics_counter_add(self._ptr, n, len(n), delta))

    def gauge_set(self, name: str, value: float) -> None:
        n = name.encode()
        check(_lib.orc_metrics_gauge_set(self._ptr, n, len(n), float(value)))

    def histogram_record(self, name: str, value: int) -> None:
        n = name.encode()
        check(_lib.orc_metrics_histogram_record(self._ptr, n, len(n), int(value)))

    def set_help(self, name: str, help: str) -> None:
        """Sets the Prometheus help text of metric family `name` (now or made later)."""
        n, h = name.encode(), help.encode()
        check(_lib.orc_metrics_set_help(self._ptr, n, len(n), h, len(h)))

    def register_queue(self, queue: Queue, name: str) -> None:
        n = name.encode()
        check(_lib.orc_metrics_register_queue(self._ptr, queue._ptr, n, len(n)))
        self._queues.append(queue)

    def register_router(self, router: Router, name: str) -> None:
        n = name.encode()
        check(_lib.orc_metrics_register_router(self._ptr, router._ptr, n, len(n)))
        self._queues.append(router)

    def unregister_queue(self, queue: Queue) -> None:
        """Stops reporting `queue` (every registration of it); NotFound if it is not registered."""
        check(_lib.orc_metrics_unregister_queue(self._ptr, queue._ptr))
        self._queues = [o for o in self._queues if o is not queue]

    def unregister_router(self, router: Router) -> None:
        """Stops reporting `router` (every registration of it); NotFound if it is not registered."""
        check(_lib.orc_metrics_unregister_router(self._ptr, router._ptr))
        self._queues = [o for o in self._queues if o is not router]

    def _render(self, fmt: int) -> bytes:
        out, n = c_void_p(), c_size_t()
        check(_lib.orc_metrics_render(self._ptr, fmt, byref(out), byref(n)))
        try:
            return ctypes.string_at(out, n.value)
        finally:
            _lib.orc_buf_free(out)

    def prometheus(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        return self._render(_abi.ORC_METRICS_PROMETHEUS).decode()

    def snapshot(self) -> dict:
        """A JSON snapshot: name -> value, or {count, sum, p50, p95, p99, max} for histograms."""
        return json.loads(self._render(_abi.ORC_METRICS_JSON))
