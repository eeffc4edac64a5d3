import OrchestraCore
import Synchronization

/// What a connection does when a sender passes its send buffer's hard limit (`maxBuffered`):
/// the peer reads more slowly than we write.
public enum SlowConsumerPolicy: Int32, Sendable {
    /// Close with 1008 (policy violation); the send fails with `.full`.
    case close1008 = 0
    /// Close with 1013 (try again later); the send fails with `.full`.
    case close1013 = 1
    /// Drop the message (counted in `messagesDropped`); the send fails with `.full` and the
    /// connection stays open.
    case drop = 2
}

/// Settings shared by servers and clients. Sizes in bytes, times in milliseconds.
public struct WebSocketOptions: Sendable {
    /// Largest payload of one incoming frame (close 1009).
    public var maxFrameSize = 16 << 20
    /// Largest incoming message, after inflating for compressed ones (close 1009).
    public var maxMessageSize = 16 << 20
    /// Ping the peer this often (0: no heartbeat).
    public var pingIntervalMs: UInt64 = 30_000
    /// A peer that does not answer a heartbeat ping within this time is dead: the connection
    /// is dropped and reported closed with 1006.
    public var pongTimeoutMs: UInt64 = 10_000
    /// How long to wait for the peer's close frame (or the server's TCP close) after ours.
    public var closeTimeoutMs: UInt64 = 5_000
    /// How long the opening handshake may take (the client's connect timeout includes it).
    public var handshakeTimeoutMs: UInt64 = 10_000
    /// `send` reports `.aboveHighWatermark` once this much is buffered…
    public var highWatermark = 1 << 20
    /// …and the drain event fires when the buffer falls back to this.
    public var lowWatermark = 256 << 10
    /// Hard limit of the send buffer; past it `slowConsumer` applies.
    public var maxBuffered = 16 << 20
    public var slowConsumer = SlowConsumerPolicy.close1008
    /// permessage-deflate to offer (client) or accept (server); nil: off.
    public var perMessageDeflate: PerMessageDeflate.Configuration? = nil
    /// Messages smaller than this go out uncompressed even when deflate was agreed.
    public var compressionThreshold = 1024
    /// zlib compression level (1...9) and memory level (1...9).
    public var compressionLevel: Int32 = 6
    public var compressionMemLevel: Int32 = 8

    public init() {}

    /// Checks the combination; throws `.invalidArgument` naming the bad setting.
    public func validate() throws(OrchestraError) {
        func bad(_ m: String) -> OrchestraError { OrchestraError(.invalidArgument, m) }
        if maxFrameSize < 125 { throw bad("max_frame_size \(maxFrameSize) is below 125") }
        if maxMessageSize < 1 { throw bad("max_message_size must be positive") }
        if lowWatermark > highWatermark { throw bad("low_watermark \(lowWatermark) is above high_watermark \(highWatermark)") }
        if highWatermark > maxBuffered { throw bad("high_watermark \(highWatermark) is above max_buffered \(maxBuffered)") }
        if pingIntervalMs > 0 && pongTimeoutMs == 0 { throw bad("pong_timeout_ms must be positive when pings are on") }
        if closeTimeoutMs == 0 { throw bad("close_timeout_ms must be positive") }
        if handshakeTimeoutMs == 0 { throw bad("handshake_timeout_ms must be positive") }
        if !(1...9).contains(compressionLevel) { throw bad("compression_level \(compressionLevel) outside 1...9") }
        if !(1...9).contains(compressionMemLevel) { throw bad("compression_mem_level \(compressionMemLevel) outside 1...9") }
        if compressionThreshold < 0 { throw bad("compression_threshold must not be negative") }
        if let d = perMessageDeflate {
            for (name, v) in [("server_max_window_bits", d.serverMaxWindowBits), ("client_max_window_bits", d.clientMaxWindowBits)] {
                if let v, !(8...15).contains(v) { throw bad("\(name) \(v) outside 8...15") }
            }
        }
    }
}

/// A server's or client's `WebSocketOptions`, one instance shared by all its connections (an
/// idle connection should not carry a copy).
final class SharedWebSocketOptions: Sendable {
    let value: WebSocketOptions
    init(_ value: WebSocketOptions) { self.value = value }
}

/// A value kept out of line, so that the holder pays a pointer while it is nil.
final class Box<T> {
    var value: T
    init(_ value: T) { self.value = value }
}

/// What `send` did with a message.
public enum SendStatus: Int32, Sendable {
    /// Queued; the send buffer is below the high watermark.
    case queued = 0
    /// Queued, but the buffer is above the high watermark: wait for the drain event.
    case aboveHighWatermark = 1
}

/// A connection's counters, read from any thread.
public struct ConnectionStats: Sendable {
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var messagesIn: UInt64 = 0
    public var messagesOut: UInt64 = 0
    public var messagesDropped: UInt64 = 0
    public var errors: UInt64 = 0
    /// Round-trip time of the last heartbeat (or user) ping, microseconds; 0 before any.
    public var rttMicros: UInt64 = 0
    /// Microseconds since the connection opened (0 before).
    public var uptimeMicros: UInt64 = 0
    public var bufferedAmount: UInt64 = 0
    public init() {}
}

/// Counters written by one thread at a time (the I/O thread, or senders under the send
/// lock) and read by any: relaxed atomics, so readers never see torn values.
struct Counter: ~Copyable {
    let v = Atomic<UInt64>(0)
    @inline(__always) func add(_ n: UInt64) { v.wrappingAdd(n, ordering: .relaxed) }
    @inline(__always) var value: UInt64 { v.load(ordering: .relaxed) }
    @inline(__always) func set(_ n: UInt64) { v.store(n, ordering: .relaxed) }
}

/// The events of a connection, called on the I/O thread. Every method has a default that
/// does nothing, so a handler implements only what it needs.
public protocol WebSocketHandler: AnyObject {
    /// The opening handshake completed.
    func didOpen(_ c: Connection)
    /// A whole text or binary message. `bytes` is valid only during the call.
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer)
    /// The send buffer fell to the low watermark after passing the high one.
    func didDrain(_ c: Connection)
    /// A pong arrived (for our ping): `rttMicros` when it answered a ping of ours.
    func didReceivePong(_ c: Connection, rttMicros: UInt64)
    /// The connection is gone (reported once, after the socket closed). `code` 1005 when the
    /// peer's close frame had no code, 1006 when there was no close frame; `clean` when both
    /// sides exchanged close frames.
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool)
}

public extension WebSocketHandler {
    func didOpen(_ c: Connection) {}
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {}
    func didDrain(_ c: Connection) {}
    func didReceivePong(_ c: Connection, rttMicros: UInt64) {}
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {}
}

/// Frame bytes ready to write: a length and one allocation. Broadcast shares one between
/// connections (server frames are not masked, so every peer gets the same bytes).
public final class FrameBytes: @unchecked Sendable {
    /// Bytes written so far (the frame's length once built).
    public internal(set) var count = 0
    let base: UnsafeMutableRawPointer

    init(capacity: Int) {
        base = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(capacity, 1), alignment: 8)
    }

    deinit { base.deallocate() }

    /// An unmasked, uncompressed (server to client) frame holding `payload`.
    public static func serverFrame(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) -> FrameBytes {
        let f = FrameBytes(capacity: FrameEncoder.maxHeaderSize + payload.count)
        let h = FrameEncoder.writeHeader(into: f.base, opcode: opcode, fin: true, rsv1: false,
                                         payloadLength: payload.count, maskKey: nil)
        if payload.count > 0 { (f.base + h).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        f.count = h + payload.count
        return f
    }
}
