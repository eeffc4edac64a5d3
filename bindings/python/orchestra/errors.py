"""Python exceptions for the ORC_E* codes of include/orchestra.h (ORC_ERRNO_MAP)."""
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

#: The exception class of each ORC_E* name. The abi.consistency test fails when a name of the
#: header's ORC_ERRNO_MAP has no class here, or a class a name the header does not have.
_BY_NAME = {
    "ORC_EINVAL": InvalidArgument, "ORC_ENOMEM": NoMemory, "ORC_EPARSE": ParseError,
    "ORC_ETOOBIG": TooBig, "ORC_EAGAIN": WouldBlock, "ORC_ETIMEDOUT": Timeout,
    "ORC_ECLOSED": Closed, "ORC_EFAILED": Failed, "ORC_EFULL": Full, "ORC_ENOSPC": NoSpace,
    "ORC_ECRYPTO": CryptoError, "ORC_ENOTFOUND": NotFound, "ORC_ESTATE": StateError,
    "ORC_ENOTSUP": Unsupported, "ORC_EVERSION": VersionError, "ORC_EIO": IOFailure,
    "ORC_EINTERNAL": InternalError, "ORC_ETLS": TLSError,
}


def _library_codes() -> dict:
    """The loaded library's codes by value, read from the library: orc_err_name over -1, -2,
    ... until it answers ORC_EUNKNOWN (the codes have no gap; bounded)."""
    codes = {}
    for code in range(-1, -1001, -1):
        name = _lib.orc_err_name(code).decode()
        if name == "ORC_EUNKNOWN":
            break
        codes[code] = name
    return codes


#: The exception class of each code the library has (a code this package has no class for,
#: from a newer library, raises OrchestraError itself).
_BY_CODE = {code: _BY_NAME.get(name, OrchestraError) for code, name in _library_codes().items()}


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
