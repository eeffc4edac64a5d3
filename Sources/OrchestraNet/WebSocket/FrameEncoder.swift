// The frame encoder: writes a frame header (2 to 14 bytes) into a buffer the caller provides,
// so the connection can send header and payload with one writev and never copy the payload.
// A client masks every frame with a fresh random key (RFC 6455 section 5.3): the header
// carries the key and the payload is masked in place or copied masked (`Masking`).

public struct FrameEncoder {
    /// The longest header: 2 + 8 (64-bit length) + 4 (mask key).
    public static let maxHeaderSize = 14

    public let role: WebSocketRole
    var keys = MaskKeySource()

    public init(role: WebSocketRole) { self.role = role }

    /// A written header: its length and, for a client, the key the payload must be masked with.
    public struct Header {
        public let length: Int
        public let maskKey: UInt32?
    }

    /// Writes the header of a frame with `payloadLength` bytes to `out` (room for
    /// `maxHeaderSize` bytes). Servers write unmasked headers; clients draw a random key.
    /// Control frames must be final with at most 125 bytes; RSV1 only on a first data frame
    /// (the caller's permessage-deflate); violations are programming errors and trap.
    public mutating func writeHeader(into out: UnsafeMutableRawPointer, opcode: Opcode, fin: Bool = true,
                                     rsv1: Bool = false, payloadLength: Int) -> Header {
        precondition(payloadLength >= 0)
        precondition(!opcode.isControl || (fin && payloadLength <= 125 && !rsv1), "invalid control frame")
        let key: UInt32? = role == .client ? keys.nextKey() : nil
        let n = Self.writeHeader(into: out, opcode: opcode, fin: fin, rsv1: rsv1,
                                 payloadLength: payloadLength, maskKey: key)
        return Header(length: n, maskKey: key)
    }

    /// Writes a header with an explicit mask key (nil: unmasked). Returns its length.
    @inlinable
    public static func writeHeader(into out: UnsafeMutableRawPointer, opcode: Opcode, fin: Bool, rsv1: Bool,
                                   payloadLength: Int, maskKey: UInt32?) -> Int {
        let b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode.rawValue
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        out.storeBytes(of: b0, as: UInt8.self)
        var n: Int
        if payloadLength < 126 {
            out.storeBytes(of: maskBit | UInt8(payloadLength), toByteOffset: 1, as: UInt8.self)
            n = 2
        } else if payloadLength <= 0xFFFF {
            out.storeBytes(of: maskBit | 126, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            n = 4
        } else {
            out.storeBytes(of: maskBit | 127, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 2, as: UInt64.self)
            n = 10
        }
        if let k = maskKey {
            out.storeBytes(of: k.littleEndian, toByteOffset: n, as: UInt32.self)
            n += 4
        }
        return n
    }

    /// A whole frame as bytes (header + payload, masked for a client): for control frames and
    /// tests; data frames go out as header + payload buffers without this copy.
    public mutating func frame(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer, fin: Bool = true,
                               rsv1: Bool = false) -> [UInt8] {
        let count = payload.count
        return [UInt8](unsafeUninitializedCapacity: Self.maxHeaderSize + count) { buf, initialized in
            let out = UnsafeMutableRawPointer(buf.baseAddress!)
            let h = writeHeader(into: out, opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: count)
            if let k = h.maskKey {
                Masking.copy(from: payload, to: out + h.length, key: k, phase: 0)
            } else if count > 0 {
                (out + h.length).copyMemory(from: payload.baseAddress!, byteCount: count)
            }
            initialized = h.length + count
        }
    }

    public mutating func frame(_ opcode: Opcode, _ payload: [UInt8], fin: Bool = true, rsv1: Bool = false) -> [UInt8] {
        payload.withUnsafeBytes { frame(opcode, $0, fin: fin, rsv1: rsv1) }
    }

    /// A close frame with `code` (nil: empty payload) and a UTF-8 `reason` of at most 123 bytes.
    public mutating func closeFrame(code: CloseCode?, reason: [UInt8] = []) -> Result<[UInt8], WebSocketError> {
        var payload = [UInt8](repeating: 0, count: 125)
        let r = reason.withUnsafeBytes { rb in
            payload.withUnsafeMutableBytes { CloseFrame.writePayload(code: code, reason: rb, into: $0.baseAddress!) }
        }
        switch r {
        case .failure(let e): return .failure(e)
        case .success(let n): return .success(frame(.close, Array(payload[0..<n])))
        }
    }
}
