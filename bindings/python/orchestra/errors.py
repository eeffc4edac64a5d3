"""Python exceptions for the ORC_E* codes of include/orchestra.h."""
from __future__ import annotations

from . import _lib


class OrchestraError(Exception):
    """A failed liborchestra call: `code` (negative ORC_E* value), `name` ("ORC_EINVAL") and the
    library's detailed message for the call."""

    code: int = 0

    def __init__(self, code: int, message: str):
        self.code = code
        self.name = _lib.orc_err_name(code).decode()
        self.message = message
        super().__init__(f"{self.name}: {message}" if message else self.name)


class InvalidArgument(OrchestraError, ValueError): pass
class NoMemory(OrchestraError, MemoryError): pass
class ParseError(OrchestraError, ValueError): pass
class TooBig(OrchestraError, ValueError): pass
class WouldBlock(OrchestraError): pass
class Timeout(OrchestraError, TimeoutError): pass
class Closed(OrchestraError): pass
class Failed(OrchestraError): pass
class Full(OrchestraError): pass
class NoSpace(OrchestraError): pass
class CryptoError(OrchestraError): pass
class NotFound(OrchestraError, LookupError): pass
class StateError(OrchestraError): pass
class Unsupported(OrchestraError): pass
class VersionError(OrchestraError): pass
class IOFailure(OrchestraError, OSError): pass
class InternalError(OrchestraError): pass
class TLSError(OrchestraError): pass

_BY_CODE = {
    -1: InvalidArgument, -2: NoMemory, -3: ParseError, -4: TooBig, -5: WouldBlock,
    -6: Timeout, -7: Closed, -8: Failed, -9: Full, -10: NoSpace, -11: CryptoError,
    -12: NotFound, -13: StateError, -14: Unsupported, -15: VersionError, -16: IOFailure,
    -17: InternalError, -18: TLSError,
}


def error_for(code: int) -> OrchestraError:
    """The exception for `code`, carrying the calling thread's detailed message."""
    message = (_lib.orc_last_error() or b"").decode("utf-8", "replace")
    cls = _BY_CODE.get(code, OrchestraError)
    return cls(code, message)


def check(code: int) -> int:
    """Raises the matching exception for a negative return code; returns non-negative codes."""
    if code < 0:
        raise error_for(code)
    return code
