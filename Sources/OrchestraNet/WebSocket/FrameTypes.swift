// The vocabulary of RFC 6455 framing: opcodes, close codes, the error every WebSocket parser
// reports (with the close code to send), and close frame payloads (section 5.5.1, 7.4).

/// Which end of the connection a decoder or encoder works for. Frames from a client are
/// masked, frames from a server are not (RFC 6455 section 5.1).
public enum WebSocketRole: Sendable {
    case server
    case client
}

/// Frame opcodes (RFC 6455 section 5.2). 0x3-0x7 and 0xB-0xF are reserved.
public enum Opcode: UInt8, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    @inlinable public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// A close status code (RFC 6455 section 7.4).
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ v: UInt16) { rawValue = v }

    public static let normal = CloseCode(1000)
    public static let goingAway = CloseCode(1001)
    public static let protocolError = CloseCode(1002)
    public static let unsupportedData = CloseCode(1003)
    /// Reserved: means "the close frame had no code"; never sent.
    public static let noStatus = CloseCode(1005)
    /// Reserved: means "the connection dropped without a close frame"; never sent.
    public static let abnormal = CloseCode(1006)
    public static let invalidPayload = CloseCode(1007)
    public static let policyViolation = CloseCode(1008)
    public static let messageTooBig = CloseCode(1009)
    public static let mandatoryExtension = CloseCode(1010)
    public static let internalError = CloseCode(1011)
    public static let serviceRestart = CloseCode(1012)
    public static let tryAgainLater = CloseCode(1013)
    public static let badGateway = CloseCode(1014)
    /// Reserved: TLS handshake failure; never sent.
    public static let tlsHandshake = CloseCode(1015)

    /// Whether the code may be sent in a close frame: 1000-1003, 1007-1014 (1012-1014 are
    /// registered with IANA after RFC 6455), 3000-4999 (libraries, applications).
    @inlinable public var isSendable: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    public var description: String { String(rawValue) }
}

/// A violation found while parsing WebSocket input, with the close code the endpoint sends
/// before it closes: 1002 (protocol), 1007 (invalid data, e.g. UTF-8), 1009 (too big).
public struct WebSocketError: Error, Sendable, Equatable, CustomStringConvertible {
    public let closeCode: CloseCode
    public let message: String

    public init(_ closeCode: CloseCode, _ message: String) {
        self.closeCode = closeCode
        self.message = message
    }

    public var description: String { "close \(closeCode.rawValue): \(message)" }

    static func proto(_ m: String) -> WebSocketError { WebSocketError(.protocolError, m) }
}

/// Close frame payloads: an optional 2-byte code (network order) and a UTF-8 reason.
public enum CloseFrame {
    /// The longest reason that fits a control frame (125 - 2 bytes of code).
    public static let maxReasonLength = 123

    /// Parses a received close payload. Empty: no code (the peer gave none, reported as 1005
    /// to users). One byte: invalid. A code outside the sendable ranges or a reason that is not
    /// UTF-8 is invalid (1002 / 1007).
    public static func parse(_ payload: UnsafeRawBufferPointer) -> Result<(code: CloseCode?, reason: UnsafeRawBufferPointer), WebSocketError> {
        let n = payload.count
        if n == 0 { return .success((nil, UnsafeRawBufferPointer(start: payload.baseAddress, count: 0))) }
        if n == 1 { return .failure(.proto("close frame payload of 1 byte (a code takes 2)")) }
        let code = CloseCode(UInt16(payload[0]) << 8 | UInt16(payload[1]))
        guard code.isSendable else { return .failure(.proto("invalid close code \(code.rawValue)")) }
        let reason = UnsafeRawBufferPointer(rebasing: payload[2...])
        var v = UTF8StreamValidator()
        if v.feed(reason) != nil || !v.isAtBoundary {
            return .failure(WebSocketError(.invalidPayload, "close reason is not valid UTF-8"))
        }
        return .success((code, reason))
    }

    /// Writes a close payload (code + reason) to `out`, which has room for 125 bytes; returns
    /// its length. `code` nil writes an empty payload (then `reason` must be empty). Fails on a
    /// code that may not be sent, a reason over 123 bytes, or a reason that is not UTF-8.
    public static func writePayload(code: CloseCode?, reason: UnsafeRawBufferPointer,
                                    into out: UnsafeMutableRawPointer) -> Result<Int, WebSocketError> {
        guard let code else {
            return reason.isEmpty ? .success(0) : .failure(.proto("a close reason needs a code"))
        }
        guard code.isSendable else { return .failure(.proto("close code \(code.rawValue) may not be sent")) }
        guard reason.count <= maxReasonLength else {
            return .failure(.proto("close reason of \(reason.count) bytes exceeds \(maxReasonLength)"))
        }
        var v = UTF8StreamValidator()
        if v.feed(reason) != nil || !v.isAtBoundary {
            return .failure(WebSocketError(.invalidPayload, "close reason is not valid UTF-8"))
        }
        out.storeBytes(of: UInt8(code.rawValue >> 8), as: UInt8.self)
        out.storeBytes(of: UInt8(code.rawValue & 0xFF), toByteOffset: 1, as: UInt8.self)
        if let r = reason.baseAddress, !reason.isEmpty { (out + 2).copyMemory(from: r, byteCount: reason.count) }
        return .success(2 + reason.count)
    }
}

/// XOR masking (RFC 6455 section 5.3), 8 bytes at a time.
public enum Masking {
    /// The 4-byte key as it sits on the wire, byte j of the key in bits 8j..8j+7.
    /// `phase` is the payload offset of the first byte modulo 4.
    @inlinable
    static func wideMask(_ key: UInt32, phase: Int) -> UInt64 {
        let s = UInt32((phase & 3) * 8)
        let rot = s == 0 ? key : (key >> s) | (key << (32 - s))
        return (UInt64(rot) | UInt64(rot) << 32).littleEndian
    }

    /// Masks or unmasks `count` bytes at `p` in place. Returns the phase after the last byte.
    @inlinable @discardableResult
    public static func apply(_ p: UnsafeMutableRawPointer, count: Int, key: UInt32, phase: Int) -> Int {
        let m = wideMask(key, phase: phase)
        var i = 0
        while i + 32 <= count {
            for k in stride(from: 0, to: 32, by: 8) {
                let w = p.loadUnaligned(fromByteOffset: i + k, as: UInt64.self)
                p.storeBytes(of: w ^ m, toByteOffset: i + k, as: UInt64.self)
            }
            i += 32
        }
        while i + 8 <= count {
            let w = p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            p.storeBytes(of: w ^ m, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        var mb = m.littleEndian  // back to numeric order: byte j of the rotated key in bits 8j
        while i < count {
            let b = p.load(fromByteOffset: i, as: UInt8.self)
            p.storeBytes(of: b ^ UInt8(truncatingIfNeeded: mb), toByteOffset: i, as: UInt8.self)
            mb >>= 8
            i += 1
        }
        return (phase + count) & 3
    }

    /// Copies `src` to `dst` masked (a client's payload from a buffer it must not modify).
    @inlinable @discardableResult
    public static func copy(from src: UnsafeRawBufferPointer, to dst: UnsafeMutableRawPointer, key: UInt32, phase: Int) -> Int {
        let count = src.count
        guard let s = src.baseAddress, count > 0 else { return phase & 3 }
        let m = wideMask(key, phase: phase)
        var i = 0
        while i + 8 <= count {
            let w = s.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            dst.storeBytes(of: w ^ m, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        var mb = m.littleEndian
        while i < count {
            let b = s.load(fromByteOffset: i, as: UInt8.self)
            dst.storeBytes(of: b ^ UInt8(truncatingIfNeeded: mb), toByteOffset: i, as: UInt8.self)
            mb >>= 8
            i += 1
        }
        return (phase + count) & 3
    }
}
