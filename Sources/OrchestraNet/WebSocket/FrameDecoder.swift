// The incremental WebSocket frame decoder (RFC 6455 section 5). Sans-I/O and zero-copy: the
// connection feeds each read buffer as it comes, in any split; the decoder unmasks payload bytes
// in place in that buffer and hands out slices of it, so a data frame's payload is never copied
// here and nothing is allocated per frame. Only control frames split across reads are gathered
// in a 125-byte buffer of the decoder's own, allocated the first time one is (an idle
// connection's decoder owns no heap memory).
//
// Every rule of section 5 is checked as soon as the byte that breaks it arrives (the first two
// header bytes carry most of them): reserved opcodes and bits, masking direction, control frame
// size and fragmentation, the fragmentation state machine, 64-bit lengths with the top bit set,
// the frame and message size limits, UTF-8 of uncompressed text messages (fails at the first
// byte that cannot be valid, across fragments and reads) and close frame payloads. A violation
// is reported once as `.error` with the close code to send; the decoder then stays failed.

public struct FrameDecoder {
    public struct Configuration: Sendable {
        /// Our side: a server requires masked frames, a client requires unmasked ones.
        public var role: WebSocketRole
        /// Largest payload of one frame (a larger one: close 1009).
        public var maxFrameSize: Int = 16 << 20
        /// Largest payload of one message, all its frames together (close 1009). For compressed
        /// messages this bounds the compressed size; the inflater bounds the inflated size.
        public var maxMessageSize: Int = 16 << 20
        /// permessage-deflate was negotiated: RSV1 may be set on the first frame of a message.
        public var perMessageDeflate = false
        /// Validate uncompressed text messages as UTF-8 (compressed ones are validated after
        /// inflating, with a `UTF8StreamValidator`).
        public var validateUTF8 = true

        public init(role: WebSocketRole) { self.role = role }
    }

    /// A piece of a text or binary message: the unmasked payload bytes that arrived (possibly
    /// empty for an empty message or an empty final frame), and where it sits in the message.
    public struct DataChunk {
        /// `.text` or `.binary`: the opcode of the message's first frame.
        public let opcode: Opcode
        /// RSV1 was set on the message's first frame (permessage-deflate).
        public let compressed: Bool
        public let bytes: UnsafeRawBufferPointer
        /// The first chunk of a message.
        public let isFirst: Bool
        /// The last chunk of a message (its final frame is complete).
        public let isLast: Bool
    }

    /// What `next` found. Byte slices point into the input buffer or into the decoder and stay
    /// valid until the next call to `next` (and as long as the input buffer does).
    public enum Event {
        /// All input is consumed; call again with more.
        case needMore
        case data(DataChunk)
        case ping(UnsafeRawBufferPointer)
        case pong(UnsafeRawBufferPointer)
        /// A valid close frame: `code` nil when the payload was empty (report 1005 to users).
        /// Later input is a protocol error.
        case close(code: CloseCode?, reason: UnsafeRawBufferPointer)
        /// The input broke a rule; send a close frame with `closeCode` and stop reading.
        case error(WebSocketError)
    }

    enum Stage { case header, payload, closed, failed }

    public let configuration: Configuration
    var stage = Stage.header
    var failure: WebSocketError? = nil

    // The header being gathered when it arrives split across reads (at most 14 bytes).
    var headerBytes: (UInt64, UInt64) = (0, 0)
    var headerHave = 0
    var headerNeed = 2

    // The current frame.
    var opcode = Opcode.continuation
    var fin = false
    var masked = false
    var maskKey: UInt32 = 0
    var phase = 0
    var remaining = 0

    // The current data message.
    var inMessage = false
    var messageOpcode = Opcode.binary
    var messageCompressed = false
    var messageSize = 0
    var deliveredFirst = false
    var validating = false
    var utf8 = UTF8StreamValidator()

    // A control frame gathered across reads.
    var control: ControlBuffer? = nil
    var controlHave = 0

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// True between the first and the last frame of a fragmented message.
    public var isInsideMessage: Bool { inMessage }

    /// Decodes from `input` starting at `offset`, advancing it past what was used, and returns
    /// the next event. Call in a loop until `.needMore` (then `offset == input.count`), `.close`
    /// or `.error`. Payload bytes are unmasked in place in `input`.
    public mutating func next(_ input: UnsafeMutableRawBufferPointer, offset: inout Int) -> Event {
        guard let base = input.baseAddress else {
            return stage == .failed ? .error(failure!) : .needMore
        }
        let end = input.count
        while true {
            switch stage {
            case .failed:
                return .error(failure!)
            case .closed:
                if offset < end { return fail(.proto("data after a close frame")) }
                return .needMore
            case .header:
                if offset >= end { return .needMore }
                if headerHave == 0 && end - offset >= 2 {
                    // Fast path: the header lies whole in the input.
                    let b0 = input[offset], b1 = input[offset + 1]
                    let v = Self.checkStart(b0, b1, configuration, inMessage: inMessage)
                    if v != .none { return fail(Self.describe(v, b0)) }
                    let hlen = Self.headerLength(b1)
                    if end - offset >= hlen {
                        if let e = beginFrame(UnsafeRawPointer(base + offset)) { return fail(e) }
                        offset += hlen
                        continue
                    }
                }
                // Slow path: gather the header byte by byte.
                while headerHave < headerNeed && offset < end {
                    let b = input[offset]
                    withUnsafeMutableBytes(of: &headerBytes) { $0[headerHave] = b }
                    headerHave += 1
                    offset += 1
                    if headerHave == 2 {
                        let (b0, b1) = withUnsafeBytes(of: &headerBytes) { ($0[0], $0[1]) }
                        let v = Self.checkStart(b0, b1, configuration, inMessage: inMessage)
                        if v != .none { return fail(Self.describe(v, b0)) }
                        headerNeed = Self.headerLength(b1)
                    }
                }
                if headerHave < headerNeed { return .needMore }
                var copy = headerBytes
                let e = withUnsafeBytes(of: &copy) { h in beginFrame(h.baseAddress!) }
                headerHave = 0
                headerNeed = 2
                if let e { return fail(e) }
            case .payload:
                if opcode.isControl {
                    if let ev = controlPayload(base, end, &offset) { return ev }
                    continue
                }
                let avail = min(end - offset, remaining)
                if avail == 0 && remaining > 0 { return .needMore }
                let p = base + offset
                if masked && avail > 0 { phase = Masking.apply(p, count: avail, key: maskKey, phase: phase) }
                offset += avail
                remaining -= avail
                let last = remaining == 0 && fin
                if remaining == 0 { stage = .header }
                if avail == 0 && !last { continue }  // an empty non-final frame: nothing to report
                let bytes = UnsafeRawBufferPointer(start: p, count: avail)
                if validating {
                    if let bad = utf8.feed(bytes) {
                        return fail(WebSocketError(.invalidPayload,
                            "invalid UTF-8 in a text message at byte \(messageSize - remaining - avail + bad)"))
                    }
                    if last && !utf8.isAtBoundary {
                        return fail(WebSocketError(.invalidPayload, "text message ends inside a UTF-8 sequence"))
                    }
                }
                let first = !deliveredFirst
                deliveredFirst = true
                if last { inMessage = false }
                return .data(DataChunk(opcode: messageOpcode, compressed: messageCompressed, bytes: bytes,
                                       isFirst: first, isLast: last))
            }
        }
    }

    /// Header length from the second byte: 2, +2 or +8 for extended lengths, +4 for a mask.
    @inline(__always)
    static func headerLength(_ b1: UInt8) -> Int {
        let len7 = b1 & 0x7F
        return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (b1 & 0x80 != 0 ? 4 : 0)
    }

    /// A rule the first two header bytes can break (`.none`: all kept).
    enum Violation: UInt8 {
        case none, reservedOpcode, rsv23, rsv1WithoutExtension, rsv1OnControlOrContinuation
        case unmaskedFromClient, maskedFromServer, fragmentedControl, controlTooLong
        case continuationWithoutMessage, dataInsideMessage
    }

    /// The rules the first two bytes decide. Static, with the state it needs as arguments (a
    /// non-mutating method called from `next` would copy the whole decoder first), and it
    /// returns a byte: the error with its message is built off the hot path, by `describe`.
    @inline(__always)
    static func checkStart(_ b0: UInt8, _ b1: UInt8, _ configuration: Configuration, inMessage: Bool) -> Violation {
        guard let op = Opcode(rawValue: b0 & 0x0F) else { return .reservedOpcode }
        if b0 & 0x70 != 0 {
            if b0 & 0x30 != 0 { return .rsv23 }
            if !configuration.perMessageDeflate { return .rsv1WithoutExtension }
            if op != .text && op != .binary { return .rsv1OnControlOrContinuation }
        }
        let isMasked = b1 & 0x80 != 0
        if isMasked != (configuration.role == .server) {
            return isMasked ? .maskedFromServer : .unmaskedFromClient
        }
        if op.isControl {
            if b0 & 0x80 == 0 { return .fragmentedControl }
            if b1 & 0x7F > 125 { return .controlTooLong }
        } else if (op == .continuation) != inMessage {
            return inMessage ? .dataInsideMessage : .continuationWithoutMessage
        }
        return .none
    }

    @inline(never)
    static func describe(_ v: Violation, _ b0: UInt8) -> WebSocketError {
        switch v {
        case .none, .reservedOpcode: return .proto("reserved opcode 0x\(String(b0 & 0x0F, radix: 16))")
        case .rsv23: return .proto("RSV2 or RSV3 set without an extension that defines them")
        case .rsv1WithoutExtension: return .proto("RSV1 set without a negotiated extension")
        case .rsv1OnControlOrContinuation: return .proto("RSV1 set on a control or continuation frame")
        case .unmaskedFromClient: return .proto("unmasked frame from a client")
        case .maskedFromServer: return .proto("masked frame from a server")
        case .fragmentedControl: return .proto("fragmented control frame")
        case .controlTooLong: return .proto("control frame payload longer than 125 bytes")
        case .continuationWithoutMessage: return .proto("continuation frame without a message to continue")
        case .dataInsideMessage: return .proto("new data frame while a fragmented message is unfinished")
        }
    }

    /// Reads a complete header (already checked by `checkStart`) and enters the
    /// frame's payload.
    @inline(__always)
    mutating func beginFrame(_ h: UnsafeRawPointer) -> WebSocketError? {
        let b0 = h.load(as: UInt8.self), b1 = h.load(fromByteOffset: 1, as: UInt8.self)
        let len7 = b1 & 0x7F
        var len: UInt64
        var at = 2
        if len7 == 126 {
            len = UInt64(UInt16(bigEndian: h.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            at = 4
        } else if len7 == 127 {
            len = UInt64(bigEndian: h.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            if len >> 63 != 0 { return .proto("64-bit payload length with the most significant bit set") }
            at = 10
        } else {
            len = UInt64(len7)
        }
        let op = Opcode(rawValue: b0 & 0x0F)!
        if !op.isControl {
            if len > UInt64(configuration.maxFrameSize) {
                return WebSocketError(.messageTooBig, "frame payload of \(len) bytes exceeds max_frame_size \(configuration.maxFrameSize)")
            }
            let prior = op == .continuation ? UInt64(messageSize) : 0
            if prior + len > UInt64(configuration.maxMessageSize) {
                return WebSocketError(.messageTooBig, "message of at least \(prior + len) bytes exceeds max_message_size \(configuration.maxMessageSize)")
            }
        }
        opcode = op
        fin = b0 & 0x80 != 0
        masked = b1 & 0x80 != 0
        maskKey = masked ? UInt32(littleEndian: h.loadUnaligned(fromByteOffset: at, as: UInt32.self)) : 0
        phase = 0
        remaining = Int(len)
        stage = .payload
        if op.isControl {
            controlHave = 0
        } else {
            if op != .continuation {
                inMessage = true
                messageOpcode = op
                messageCompressed = b0 & 0x40 != 0
                messageSize = 0
                deliveredFirst = false
                validating = configuration.validateUTF8 && op == .text && !messageCompressed
                utf8.reset()
            }
            messageSize += Int(len)
        }
        return nil
    }

    /// Gathers a control frame's payload; returns its event once complete, nil to go on.
    mutating func controlPayload(_ base: UnsafeMutableRawPointer, _ end: Int, _ offset: inout Int) -> Event? {
        let payload: UnsafeMutableRawBufferPointer
        if controlHave == 0 && end - offset >= remaining {
            payload = UnsafeMutableRawBufferPointer(start: base + offset, count: remaining)
            offset += remaining
        } else {
            let take = min(end - offset, remaining)
            if control == nil { control = ControlBuffer() }
            let buffer = control.unsafelyUnwrapped.base
            if take > 0 {
                (buffer + controlHave).copyMemory(from: base + offset, byteCount: take)
                controlHave += take
                offset += take
                remaining -= take
            }
            if remaining > 0 { return .needMore }
            payload = UnsafeMutableRawBufferPointer(start: buffer, count: controlHave)
        }
        remaining = 0
        stage = .header
        if masked, let p = payload.baseAddress { Masking.apply(p, count: payload.count, key: maskKey, phase: 0) }
        let bytes = UnsafeRawBufferPointer(payload)
        switch opcode {
        case .ping: return .ping(bytes)
        case .pong: return .pong(bytes)
        default:
            switch CloseFrame.parse(bytes) {
            case .failure(let e): return fail(e)
            case .success(let c):
                stage = .closed
                return .close(code: c.code, reason: c.reason)
            }
        }
    }

    @inline(never)
    mutating func fail(_ e: WebSocketError) -> Event {
        stage = .failed
        failure = e
        return .error(e)
    }
}

/// The decoder's 125 bytes for control frames split across reads (allocated at most once per
/// decoder). A copy of a decoder shares it: use one decoder per connection, never copies.
final class ControlBuffer {
    let base: UnsafeMutableRawPointer
    init() { base = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 8) }
    deinit { base.deallocate() }
}
