"""The message envelope and its wire codecs (JSON, MessagePack), compression and encryption."""
from __future__ import annotations

import ctypes
import json as _json
from ctypes import byref, c_int, c_int64, c_size_t, c_void_p
from enum import IntEnum
from typing import Any, Iterator, Optional, Union

from . import _abi, _lib
from .errors import NotFound, check


class Priority(IntEnum):
    LOW = _abi.ORC_PRIORITY_LOW
    NORMAL = _abi.ORC_PRIORITY_NORMAL
    HIGH = _abi.ORC_PRIORITY_HIGH
    CRITICAL = _abi.ORC_PRIORITY_CRITICAL


class ContentType(IntEnum):
    JSON = _abi.ORC_CONTENT_JSON
    TEXT = _abi.ORC_CONTENT_TEXT
    BINARY = _abi.ORC_CONTENT_BINARY


_FIELDS = {name.lower(): value for name, value in _abi.ENUMS["orc_field_t"][1].items()}
_FORMATS = {name.lower(): value for name, value in _abi.ENUMS["orc_format_t"][1].items()}
_ENOTFOUND = _abi.ORC_ENOTFOUND

Payload = Union[bytes, bytearray, memoryview, str, Any]


def _format(fmt: str) -> int:
    try:
        return _FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; use 'json' or 'msgpack'") from None


def _utf8(s: Union[str, bytes]) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def _text_field(name: str):
    field = _FIELDS[name]

    def get(self: "Message") -> Optional[str]:
        ptr, n = c_void_p(), c_size_t()
        rc = _lib.orc_msg_get(self._ptr, field, byref(ptr), byref(n))
        if rc == _ENOTFOUND:  # the field is absent
            return None
        check(rc)
        return ctypes.string_at(ptr, n.value).decode("utf-8") if n.value else ""

    def set_(self: "Message", value: Optional[str]) -> None:
        if value is None:
            check(_lib.orc_msg_set(self._ptr, field, None, 0))
        else:
            b = _utf8(value)
            check(_lib.orc_msg_set(self._ptr, field, b, len(b)))

    return property(get, set_, doc=f"The envelope's `{name}` field (None when absent).")


class Message:
    """One envelope (include/orchestra.h, orc_msg_t). Fields are read from and written to the
    library's message; `payload` is bytes for binary content, str for text, and the decoded
    JSON value for JSON content."""

    __slots__ = ("_ptr", "__weakref__")

    def __init__(self, type: str, *, source: Optional[str] = None, target: Optional[str] = None,
                 payload: Payload = None, content_type: Optional[ContentType] = None,
                 headers: Optional[dict] = None, priority: Optional[int] = None,
                 ttl_ms: Optional[int] = None, correlation_id: Optional[str] = None,
                 reply_to: Optional[str] = None, id: Optional[str] = None,
                 _ptr: Optional[int] = None):
        if _ptr is not None:
            self._ptr = _ptr
            return
        self._ptr = None
        t = _utf8(type)
        out = c_void_p()
        check(_lib.orc_msg_new(t, len(t), byref(out)))
        self._ptr = out.value
        if id is not None: self.id = id
        if source is not None: self.source = source
        if target is not None: self.target = target
        if correlation_id is not None: self.correlation_id = correlation_id
        if reply_to is not None: self.reply_to = reply_to
        if priority is not None: self.priority = priority
        if ttl_ms is not None: self.ttl_ms = ttl_ms
        for k, v in (headers or {}).items():
            self.set_header(k, v)
        if payload is not None or content_type is not None:
            self.set_payload(payload, content_type)

    @classmethod
    def _adopt(cls, ptr: int) -> "Message":
        """Wraps a reference the caller owns (it is released when the object is collected)."""
        return cls("", _ptr=ptr)

    def __del__(self):
        if self._ptr:
            _lib.orc_msg_release(self._ptr)
            self._ptr = None

    def clone(self) -> "Message":
        out = c_void_p()
        check(_lib.orc_msg_clone(self._ptr, byref(out)))
        return Message._adopt(out.value)

    id = _text_field("id")
    type = _text_field("type")
    version = _text_field("version")
    source = _text_field("source")
    target = _text_field("target")
    correlation_id = _text_field("correlation_id")
    reply_to = _text_field("reply_to")

    @property
    def timestamp(self) -> Optional[int]:
        """Milliseconds since the Unix epoch, or None."""
        v = c_int64()
        rc = _lib.orc_msg_timestamp(self._ptr, byref(v))
        if rc == _ENOTFOUND:
            return None
        check(rc)
        return v.value

    @timestamp.setter
    def timestamp(self, ms: int) -> None:
        check(_lib.orc_msg_set_timestamp(self._ptr, int(ms)))

    @property
    def ttl_ms(self) -> Optional[int]:
        v = c_int64()
        rc = _lib.orc_msg_ttl(self._ptr, byref(v))
        if rc == _ENOTFOUND:
            return None
        check(rc)
        return v.value

    @ttl_ms.setter
    def ttl_ms(self, ms: Optional[int]) -> None:
        check(_lib.orc_msg_set_ttl(self._ptr, -1 if ms is None else int(ms)))

    @property
    def priority(self) -> Priority:
        return Priority(check(_lib.orc_msg_priority(self._ptr)))

    @priority.setter
    def priority(self, p: int) -> None:
        check(_lib.orc_msg_set_priority(self._ptr, int(p)))

    # headers -------------------------------------------------------------------------------
    def set_header(self, key: str, value: Any) -> None:
        """Sets a header: a str is stored as a string, anything else as its JSON value."""
        k = _utf8(key)
        if isinstance(value, str):
            v = value.encode("utf-8")
            check(_lib.orc_msg_header_set(self._ptr, k, len(k), v, len(v)))
        else:
            v = _json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
            check(_lib.orc_msg_header_set_json(self._ptr, k, len(k), v, len(v)))

    def header(self, key: str, default: Any = None) -> Any:
        k = _utf8(key)
        ptr, n, is_json = c_void_p(), c_size_t(), c_int()
        rc = _lib.orc_msg_header_get(self._ptr, k, len(k), byref(ptr), byref(n), byref(is_json))
        if rc == _ENOTFOUND:
            return default
        check(rc)
        raw = ctypes.string_at(ptr, n.value) if n.value else b""
        return _json.loads(raw) if is_json.value else raw.decode("utf-8")

    def remove_header(self, key: str) -> bool:
        k = _utf8(key)
        rc = _lib.orc_msg_header_remove(self._ptr, k, len(k))
        if rc == _ENOTFOUND:
            return False
        check(rc)
        return True

    @property
    def headers(self) -> dict:
        """A copy of the headers, in order."""
        out = {}
        kp, kn, vp, vn, is_json = c_void_p(), c_size_t(), c_void_p(), c_size_t(), c_int()
        for i in range(_lib.orc_msg_header_count(self._ptr)):
            check(_lib.orc_msg_header_at(self._ptr, i, byref(kp), byref(kn), byref(vp),
                                         byref(vn), byref(is_json)))
            key = ctypes.string_at(kp, kn.value).decode("utf-8") if kn.value else ""
            raw = ctypes.string_at(vp, vn.value) if vn.value else b""
            out[key] = _json.loads(raw) if is_json.value else raw.decode("utf-8")
        return out

    # payload -------------------------------------------------------------------------------
    def set_payload(self, value: Payload, content_type: Optional[ContentType] = None) -> None:
        """bytes -> binary, str -> text, anything else -> JSON (unless content_type says)."""
        if content_type is None:
            if isinstance(value, (bytes, bytearray, memoryview)):
                content_type = ContentType.BINARY
            elif isinstance(value, str):
                content_type = ContentType.TEXT
            else:
                content_type = ContentType.JSON
        if content_type == ContentType.JSON and not isinstance(value, (bytes, bytearray, memoryview)):
            data = _json.dumps(value, ensure_ascii=False, allow_nan=False,
                               separators=(",", ":")).encode("utf-8")
        elif isinstance(value, str):
            data = value.encode("utf-8")
        else:
            data = bytes(value)
        check(_lib.orc_msg_set_payload(self._ptr, int(content_type), data, len(data)))

    def clear_payload(self) -> None:
        check(_lib.orc_msg_clear_payload(self._ptr))

    def _payload_raw(self) -> Optional[tuple[bytes, ContentType]]:
        ptr, n, ct = c_void_p(), c_size_t(), c_int()
        rc = _lib.orc_msg_payload(self._ptr, byref(ptr), byref(n), byref(ct))
        if rc == _ENOTFOUND:
            return None
        check(rc)
        return (ctypes.string_at(ptr, n.value) if n.value else b""), ContentType(ct.value)

    @property
    def payload_bytes(self) -> Optional[bytes]:
        """The payload's bytes as stored (JSON text for JSON content), or None."""
        raw = self._payload_raw()
        return None if raw is None else raw[0]

    @property
    def content_type(self) -> Optional[ContentType]:
        raw = self._payload_raw()
        return None if raw is None else raw[1]

    @property
    def payload(self) -> Any:
        raw = self._payload_raw()
        if raw is None:
            return None
        data, ct = raw
        if self.compressed or self.encrypted or ct == ContentType.BINARY:
            return data
        if ct == ContentType.TEXT:
            return data.decode("utf-8")
        return _json.loads(data)

    @payload.setter
    def payload(self, value: Payload) -> None:
        self.set_payload(value)

    @property
    def compressed(self) -> bool:
        return bool(_lib.orc_msg_is_compressed(self._ptr))

    @property
    def encrypted(self) -> bool:
        return bool(_lib.orc_msg_is_encrypted(self._ptr))

    # codec ---------------------------------------------------------------------------------
    def encode(self, format: str = "json") -> bytes:
        """The envelope on the wire: JSON text (UTF-8) or MessagePack bytes."""
        out, n = c_void_p(), c_size_t()
        check(_lib.orc_msg_encode_alloc(self._ptr, _format(format), byref(out), byref(n)))
        try:
            return ctypes.string_at(out, n.value)
        finally:
            _lib.orc_buf_free(out)

    @classmethod
    def decode(cls, data: Union[bytes, bytearray, memoryview, str], format: str = "json") -> "Message":
        """Parses an envelope; raises ParseError/TooBig with the byte offset of the problem."""
        b = _utf8(data) if isinstance(data, str) else bytes(data)
        out = c_void_p()
        check(_lib.orc_msg_decode(_format(format), b, len(b), None, byref(out)))
        return cls._adopt(out.value)

    def to_dict(self) -> dict:
        """The envelope as the JSON codec writes it, parsed by Python's json."""
        return _json.loads(self.encode("json"))

    def compress(self, threshold: int = 1024) -> bool:
        did = c_int()
        check(_lib.orc_msg_compress(self._ptr, threshold, byref(did)))
        return bool(did.value)

    def decompress(self, max_size: int = 64 << 20) -> None:
        check(_lib.orc_msg_decompress(self._ptr, max_size))

    def encrypt(self, cipher: "Cipher") -> None:
        check(_lib.orc_msg_encrypt(self._ptr, cipher._ptr))

    def decrypt(self, cipher: "Cipher") -> None:
        check(_lib.orc_msg_decrypt(self._ptr, cipher._ptr))

    def __repr__(self) -> str:
        return f"<orchestra.Message type={self.type!r} id={self.id!r}>"


class Cipher:
    """AES-256-GCM payload encryption with a key derived from `secret` by HKDF-SHA256."""

    def __init__(self, secret: Union[bytes, str], salt: Union[bytes, str] = b""):
        s, salt_b = _utf8(secret), _utf8(salt)
        out = c_void_p()
        self._ptr = None
        check(_lib.orc_cipher_new(s, len(s), salt_b, len(salt_b), byref(out)))
        self._ptr = out.value

    def __del__(self):
        if getattr(self, "_ptr", None):
            _lib.orc_cipher_free(self._ptr)
            self._ptr = None
