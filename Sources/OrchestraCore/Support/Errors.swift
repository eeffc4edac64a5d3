// liborchestra's error codes in Swift. Their one definition is ORC_ERRNO_MAP in
// include/orchestra.h: the abi.consistency test (scripts/abi-tables --check) fails when a case,
// its name or its summary differs from the header's row, and Tests/c/test_abi.c checks what
// the library's orc_err_name and orc_strerror return (made from this type) against every row.

/// A liborchestra error code. Raw values are the negative `ORC_E*` codes of the C ABI.
public enum ErrorCode: Int32, CaseIterable, Sendable {
    case invalidArgument = -1
    case noMemory = -2
    case parse = -3
    case tooBig = -4
    case wouldBlock = -5
    case timedOut = -6
    case closed = -7
    case failed = -8
    case full = -9
    case noSpace = -10
    case crypto = -11
    case notFound = -12
    case state = -13
    case unsupported = -14
    case version = -15
    case io = -16
    case `internal` = -17
    case tls = -18

    /// The C name, e.g. `ORC_EINVAL`.
    public var name: String {
        switch self {
        case .invalidArgument: return "ORC_EINVAL"
        case .noMemory: return "ORC_ENOMEM"
        case .parse: return "ORC_EPARSE"
        case .tooBig: return "ORC_ETOOBIG"
        case .wouldBlock: return "ORC_EAGAIN"
        case .timedOut: return "ORC_ETIMEDOUT"
        case .closed: return "ORC_ECLOSED"
        case .failed: return "ORC_EFAILED"
        case .full: return "ORC_EFULL"
        case .noSpace: return "ORC_ENOSPC"
        case .crypto: return "ORC_ECRYPTO"
        case .notFound: return "ORC_ENOTFOUND"
        case .state: return "ORC_ESTATE"
        case .unsupported: return "ORC_ENOTSUP"
        case .version: return "ORC_EVERSION"
        case .io: return "ORC_EIO"
        case .internal: return "ORC_EINTERNAL"
        case .tls: return "ORC_ETLS"
        }
    }

    /// A short description, e.g. "invalid argument".
    public var summary: String {
        switch self {
        case .invalidArgument: return "invalid argument"
        case .noMemory: return "out of memory"
        case .parse: return "malformed input"
        case .tooBig: return "size or depth limit exceeded"
        case .wouldBlock: return "operation would block"
        case .timedOut: return "timed out"
        case .closed: return "closed"
        case .failed: return "failed (the object was put into an error state)"
        case .full: return "full"
        case .noSpace: return "buffer too small"
        case .crypto: return "cryptographic failure (authentication failed or bad key)"
        case .notFound: return "not found"
        case .state: return "invalid state for this operation"
        case .unsupported: return "not supported"
        case .version: return "unsupported version"
        case .io: return "I/O error"
        case .internal: return "internal error"
        case .tls: return "TLS failure (handshake, certificate verification or a corrupt record)"
        }
    }
}

/// The error every liborchestra Swift API throws: a code from the table plus a detailed message
/// that says what was wrong and where ("frame length 2^63 exceeds max_message_size 1048576").
public struct OrchestraError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: ErrorCode
    public let message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.name): \(message)" }
}
