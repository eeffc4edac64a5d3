"""Loads liborchestra and declares the C functions this package uses (include/orchestra.h)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p)
from pathlib import Path

#: The library versions this package supports: major 0, minor >= 1 (orc_version() numbers).
SUPPORTED_MIN = 100
SUPPORTED_MAX_EXCLUSIVE = 10000

_HERE = Path(__file__).resolve().parent


def _candidates() -> list[tuple[str, str]]:
    """Where to look, in order: the library the wheel carries in the package folder (built
    with this package, so it is the one it was written for), then ORCHESTRA_LIBRARY (when
    set, nothing after it is tried), then the repository's build/ folder, then the system."""
    found: list[tuple[str, str]] = []
    for name in ("liborchestra.so.0", "liborchestra.so"):
        p = _HERE / name
        if p.exists():
            found.append(("package folder", str(p)))
    env = os.environ.get("ORCHESTRA_LIBRARY")
    if env:
        if found:
            warnings.warn(f"ORCHESTRA_LIBRARY={env} is not used: the package carries its own library "
                          f"({found[0][1]})", RuntimeWarning, stacklevel=3)
        found.append(("ORCHESTRA_LIBRARY", env))
        return found  # an explicit choice is never silently replaced by a build or system copy
    for build in (_HERE.parents[2] / "build", Path.cwd() / "build"):
        p = build / "liborchestra.so"
        if p.exists():
            found.append(("build folder", str(p)))
    system = ctypes.util.find_library("orchestra")
    found.append(("system", system or "liborchestra.so.0"))
    return found


def _load() -> tuple[ctypes.CDLL, str]:
    errors = []
    for where, path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{where}: {path}: {e}")
            continue
        return lib, path
    raise ImportError("liborchestra not found; set ORCHESTRA_LIBRARY to the path of "
                      "liborchestra.so. Tried: " + "; ".join(errors))


lib, path = _load()
lib.orc_version.restype = c_int
lib.orc_version.argtypes = []
version = lib.orc_version()
if not (SUPPORTED_MIN <= version < SUPPORTED_MAX_EXCLUSIVE):
    raise ImportError(
        f"{path} is liborchestra {version // 10000}.{version // 100 % 100}.{version % 100}; "
        "this package supports 0.x with x >= 1")


def fn(name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def fn_unchecked(name: str, restype):
    """`name` without argument types: for a hot path that passes every argument as a ctypes
    object made once (a c_void_p, a c_size_t, a byref, an array), which spares the conversion
    and checks of each argument on every call (2.7 -> 0.9 us for orc_queue_pop_payloads)."""
    f = lib[name]   # a new function object, apart from the prototyped one
    f.restype = restype
    return f


P = POINTER
vp = c_void_p
FREE_CB = CFUNCTYPE(None, c_void_p)

# errors and buffers
orc_strerror = fn("orc_strerror", c_char_p, c_int)
orc_err_name = fn("orc_err_name", c_char_p, c_int)
orc_last_error = fn("orc_last_error", c_char_p)
orc_buf_free = fn("orc_buf_free", None, vp)
orc_version_string = fn("orc_version_string", c_char_p)

# messages
orc_msg_new = fn("orc_msg_new", c_int, c_char_p, c_size_t, P(vp))
orc_msg_retain = fn("orc_msg_retain", vp, vp)
orc_msg_release = fn("orc_msg_release", None, vp)
orc_msg_clone = fn("orc_msg_clone", c_int, vp, P(vp))
orc_msg_get = fn("orc_msg_get", c_int, vp, c_int, P(vp), P(c_size_t))
orc_msg_set = fn("orc_msg_set", c_int, vp, c_int, c_char_p, c_size_t)
orc_msg_timestamp = fn("orc_msg_timestamp", c_int, vp, P(c_int64))
orc_msg_set_timestamp = fn("orc_msg_set_timestamp", c_int, vp, c_int64)
orc_msg_ttl = fn("orc_msg_ttl", c_int, vp, P(c_int64))
orc_msg_set_ttl = fn("orc_msg_set_ttl", c_int, vp, c_int64)
orc_msg_priority = fn("orc_msg_priority", c_int, vp)
orc_msg_set_priority = fn("orc_msg_set_priority", c_int, vp, c_int)
orc_msg_header_get = fn("orc_msg_header_get", c_int, vp, c_char_p, c_size_t, P(vp), P(c_size_t), P(c_int))
orc_msg_header_set = fn("orc_msg_header_set", c_int, vp, c_char_p, c_size_t, c_char_p, c_size_t)
orc_msg_header_set_json = fn("orc_msg_header_set_json", c_int, vp, c_char_p, c_size_t, c_char_p, c_size_t)
orc_msg_header_remove = fn("orc_msg_header_remove", c_int, vp, c_char_p, c_size_t)
orc_msg_header_count = fn("orc_msg_header_count", c_size_t, vp)
orc_msg_header_at = fn("orc_msg_header_at", c_int, vp, c_size_t, P(vp), P(c_size_t), P(vp), P(c_size_t), P(c_int))
orc_msg_payload = fn("orc_msg_payload", c_int, vp, P(vp), P(c_size_t), P(c_int))
orc_msg_set_payload = fn("orc_msg_set_payload", c_int, vp, c_int, c_char_p, c_size_t)
orc_msg_clear_payload = fn("orc_msg_clear_payload", c_int, vp)
orc_msg_is_compressed = fn("orc_msg_is_compressed", c_int, vp)
orc_msg_is_encrypted = fn("orc_msg_is_encrypted", c_int, vp)

# codec
orc_msg_encode_alloc = fn("orc_msg_encode_alloc", c_int, vp, c_int, P(vp), P(c_size_t))
orc_msg_decode = fn("orc_msg_decode", c_int, c_int, c_char_p, c_size_t, vp, P(vp))
orc_msg_compress = fn("orc_msg_compress", c_int, vp, c_size_t, P(c_int))
orc_msg_decompress = fn("orc_msg_decompress", c_int, vp, c_size_t)
orc_cipher_new = fn("orc_cipher_new", c_int, c_char_p, c_size_t, c_char_p, c_size_t, P(vp))
orc_cipher_free = fn("orc_cipher_free", None, vp)
orc_msg_encrypt = fn("orc_msg_encrypt", c_int, vp, vp)
orc_msg_decrypt = fn("orc_msg_decrypt", c_int, vp, vp)

# queue
class QueueOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("capacity", c_size_t), ("policy", c_int),
                ("push_timeout_ms", c_int64), ("name", c_char_p), ("spin_us", ctypes.c_int32)]


class QueueStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t)] + [(n, c_uint64) for n in (
        "pushed", "popped", "handed_off", "dropped_overflow", "expired", "rejected",
        "blocked_pushes", "depth", "depth_high_water", "wait_p50_ns", "wait_p95_ns",
        "wait_p99_ns", "wait_max_ns", "wait_count")]


DROP_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_int)
orc_queue_options_init_sized = fn("orc_queue_options_init_sized", c_int, P(QueueOptions), c_size_t)
orc_queue_new = fn("orc_queue_new", c_int, P(QueueOptions), P(vp))
orc_queue_free = fn("orc_queue_free", None, vp)
orc_queue_push = fn("orc_queue_push", c_int, vp, vp)
orc_queue_push_batch = fn("orc_queue_push_batch", c_int, vp, P(vp), c_size_t, P(c_size_t))
orc_queue_pop = fn("orc_queue_pop", c_int, vp, c_int64, P(vp))
orc_queue_pop_batch = fn("orc_queue_pop_batch", c_int, vp, P(vp), c_size_t, c_int64, P(c_size_t))
orc_queue_pop_payloads = fn("orc_queue_pop_payloads", c_int, vp, c_int64, vp, c_size_t, P(c_size_t), P(c_int),
                            c_size_t, P(c_size_t), P(vp))
orc_queue_close = fn("orc_queue_close", c_int, vp)
orc_queue_fail = fn("orc_queue_fail", c_int, vp, c_int, c_char_p, c_size_t)
orc_queue_fd = fn("orc_queue_fd", c_int, vp, P(c_int))
orc_queue_depth = fn("orc_queue_depth", c_size_t, vp)
orc_queue_set_drop_callback = fn("orc_queue_set_drop_callback", c_int, vp, DROP_CB, vp, FREE_CB)
orc_queue_stats = fn("orc_queue_stats", c_int, vp, P(QueueStats))

# router
class PublishResult(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("matched", c_uint32), ("failed", c_uint32),
                ("stopped", c_int), ("middleware_failed", c_int), ("unhandled", c_int)]


class RouterStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t)] + [(n, c_uint64) for n in (
        "published", "delivered", "handler_failures", "middleware_stops", "middleware_failures", "unhandled",
        "subscriptions")]


HANDLER_CB = CFUNCTYPE(c_int, c_void_p, c_void_p)
MIDDLEWARE_CB = CFUNCTYPE(c_int, c_void_p, c_void_p, P(vp))
UNHANDLED_CB = CFUNCTYPE(None, c_void_p, c_void_p)
orc_router_new = fn("orc_router_new", c_int, P(vp))
orc_router_free = fn("orc_router_free", None, vp)
orc_router_subscribe = fn("orc_router_subscribe", c_int, vp, c_char_p, c_size_t, HANDLER_CB, vp, FREE_CB, P(c_uint64))
orc_router_unsubscribe = fn("orc_router_unsubscribe", c_int, vp, c_uint64)
orc_router_use = fn("orc_router_use", c_int, vp, MIDDLEWARE_CB, vp, FREE_CB)
orc_router_on_unhandled = fn("orc_router_on_unhandled", c_int, vp, UNHANDLED_CB, vp, FREE_CB)
orc_router_publish = fn("orc_router_publish", c_int, vp, vp, P(PublishResult))
orc_router_stats = fn("orc_router_stats", c_int, vp, P(RouterStats))
orc_subject_validate = fn("orc_subject_validate", c_int, c_char_p, c_size_t, c_int)
orc_subject_matches = fn("orc_subject_matches", c_int, c_char_p, c_size_t, c_char_p, c_size_t)

# metrics
orc_metrics_new = fn("orc_metrics_new", c_int, P(vp))
orc_metrics_free = fn("orc_metrics_free", None, vp)
orc_metrics_counter_add = fn("orc_metrics_counter_add", c_int, vp, c_char_p, c_size_t, c_uint64)
orc_metrics_gauge_set = fn("orc_metrics_gauge_set", c_int, vp, c_char_p, c_size_t, c_double)
orc_metrics_histogram_record = fn("orc_metrics_histogram_record", c_int, vp, c_char_p, c_size_t, c_uint64)
orc_metrics_register_queue = fn("orc_metrics_register_queue", c_int, vp, vp, c_char_p, c_size_t)
orc_metrics_register_router = fn("orc_metrics_register_router", c_int, vp, vp, c_char_p, c_size_t)
orc_metrics_unregister_queue = fn("orc_metrics_unregister_queue", c_int, vp, vp)
orc_metrics_unregister_router = fn("orc_metrics_unregister_router", c_int, vp, vp)
orc_metrics_set_help = fn("orc_metrics_set_help", c_int, vp, c_char_p, c_size_t, c_char_p, c_size_t)
orc_metrics_render = fn("orc_metrics_render", c_int, vp, c_int, P(vp), P(c_size_t))
