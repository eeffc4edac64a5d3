// permessage-deflate (RFC 7692 section 7.2): raw DEFLATE of whole messages through zlib.
import CZlib
import OrchestraCore

/// The 4 bytes a sync flush ends with; removed from every compressed message on the wire and
/// put back before inflating (RFC 7692 sections 7.2.1 and 7.2.2).
private let syncTail: [UInt8] = [0x00, 0x00, 0xff, 0xff]

/// Compresses one side's outgoing messages. Not thread-safe: a connection owns one and uses it
/// on its I/O thread. The zlib stream is allocated on the first message and, with no context
/// takeover, released after every message, so an idle connection holds no compressor memory.
public final class MessageDeflater {
    public let windowBits: Int
    public let noContextTakeover: Bool
    public let level: Int32
    public let memLevel: Int32
    private var stream: UnsafeMutablePointer<z_stream>? = nil

    /// `windowBits` 9...15 (zlib has no raw deflate with 8: see `Agreement.canCompress`),
    /// `level` 0...9 (or -1, zlib's default), `memLevel` 1...9. Throws `.invalidArgument`.
    public init(windowBits: Int, noContextTakeover: Bool, level: Int32 = 6, memLevel: Int32 = 8) throws(OrchestraError) {
        guard (9...15).contains(windowBits) else {
            throw OrchestraError(.invalidArgument, "deflate window bits \(windowBits) outside 9...15")
        }
        guard (-1...9).contains(level) else { throw OrchestraError(.invalidArgument, "deflate level \(level) outside -1...9") }
        guard (1...9).contains(memLevel) else { throw OrchestraError(.invalidArgument, "deflate memory level \(memLevel) outside 1...9") }
        self.windowBits = windowBits
        self.noContextTakeover = noContextTakeover
        self.level = level
        self.memLevel = memLevel
    }

    deinit { release() }

    private func release() {
        guard let s = stream else { return }
        deflateEnd(s)
        s.deallocate()
        stream = nil
    }

    /// Whether a zlib stream is allocated now (for memory accounting and tests).
    public var holdsStream: Bool { stream != nil }

    /// Appends the compressed form of one whole message to `out` (without the sync tail).
    /// Throws `.noMemory` or `.internal` if zlib fails (the stream is then dropped).
    public func compress(_ message: UnsafeRawBufferPointer, into out: inout [UInt8]) throws(OrchestraError) {
        if stream == nil {
            let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            s.initialize(to: z_stream())
            let rc = orc_zlib_deflate_init2(s, level, -Int32(windowBits), memLevel)
            guard rc == Z_OK else {
                s.deallocate()
                throw OrchestraError(rc == Z_MEM_ERROR ? .noMemory : .internal, "zlib deflateInit2 failed (\(rc))")
            }
            stream = s
        }
        let s = stream!
        let start = out.count
        s.pointee.next_in = UnsafeMutablePointer(mutating: message.baseAddress?.assumingMemoryBound(to: UInt8.self))
        s.pointee.avail_in = uInt(message.count)
        var failure: Int32 = Z_OK
        repeat {
            // deflateBound covers the whole input; a sync flush adds a few bytes.
            let room = Swift.max(Int(deflateBound(s, uLong(s.pointee.avail_in))) + 16, 256)
            let before = out.count
            out.append(contentsOf: repeatElement(0, count: room))
            var produced = 0
            out.withUnsafeMutableBufferPointer { buf in
                s.pointee.next_out = buf.baseAddress! + before
                s.pointee.avail_out = uInt(room)
                let rc = deflate(s, Z_SYNC_FLUSH)
                if rc != Z_OK && rc != Z_BUF_ERROR { failure = rc }
                produced = room - Int(s.pointee.avail_out)
            }
            out.removeLast(room - produced)
        } while failure == Z_OK && s.pointee.avail_out == 0   // a full buffer may hide more output
        s.pointee.next_in = nil
        if failure != Z_OK {
            out.removeLast(out.count - start)
            release()
            throw OrchestraError(failure == Z_MEM_ERROR ? .noMemory : .internal, "zlib deflate failed (\(failure))")
        }
        // A sync flush ends with an empty stored block: 00 00 ff ff. Drop it.
        if out.count - start >= 4 && Array(out[(out.count - 4)...]) == syncTail {
            out.removeLast(4)
        }
        // zlib flushes nothing for an empty message right after a flush (Z_BUF_ERROR), and an
        // empty payload with RSV1 is not DEFLATE data once the receiver appends the tail. A
        // single 0x00 is (RFC 7692 7.2.3.6): with the tail it reads as an empty stored block.
        if out.count == start { out.append(0) }
        if noContextTakeover { release() }
    }
}

/// Decompresses one side's incoming compressed messages, frame by frame, with a limit on the
/// inflated size of a message (no decompression bomb: it stops as soon as the output passes
/// the limit). Not thread-safe: a connection owns one. The zlib stream is allocated on the first
/// compressed message and, with no context takeover, released after every message.
public final class MessageInflater {
    public let windowBits: Int
    public let noContextTakeover: Bool
    public let maxMessageSize: Int
    private var stream: UnsafeMutablePointer<z_stream>? = nil
    private var messageSize = 0
    /// The sender ended its DEFLATE stream (a BFINAL block) in this message: the sync tail
    /// appended after the message's last frame is then not DEFLATE data and is not fed.
    private var streamEnded = false

    /// `windowBits` 8...15 as agreed; inflation uses at least 9 (zlib compresses an agreed 8 with
    /// a 9-bit window). `maxMessageSize` > 0. Throws `.invalidArgument`.
    public init(windowBits: Int, noContextTakeover: Bool, maxMessageSize: Int) throws(OrchestraError) {
        guard (8...15).contains(windowBits) else {
            throw OrchestraError(.invalidArgument, "inflate window bits \(windowBits) outside 8...15")
        }
        guard maxMessageSize > 0 else { throw OrchestraError(.invalidArgument, "max message size must be positive") }
        self.windowBits = Swift.max(windowBits, 9)
        self.noContextTakeover = noContextTakeover
        self.maxMessageSize = maxMessageSize
    }

    deinit { release() }

    private func release() {
        guard let s = stream else { return }
        inflateEnd(s)
        s.deallocate()
        stream = nil
    }

    public var holdsStream: Bool { stream != nil }

    /// The sync tail in memory that never moves (fed to zlib after a message's last frame).
    nonisolated(unsafe) private static let tail: UnsafeRawBufferPointer = {
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1)
        p.copyBytes(from: syncTail)
        return UnsafeRawBufferPointer(p)
    }()

    /// Feeds the payload of one frame of a compressed message and appends what it inflates to
    /// to `out`; `final` on the message's last frame. Errors (the message is then abandoned and
    /// the connection must close with the code): 1009 when the message passes
    /// `maxMessageSize`, 1007 for corrupt data, 1011 when zlib runs out of memory.
    public func inflate(_ chunk: UnsafeRawBufferPointer, final: Bool, into out: inout [UInt8]) throws(WebSocketError) {
        if stream == nil {
            let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            s.initialize(to: z_stream())
            let rc = orc_zlib_inflate_init2(s, -Int32(windowBits))
            guard rc == Z_OK else {
                s.deallocate()
                throw WebSocketError(.internalError, "zlib inflateInit2 failed (\(rc))")
            }
            stream = s
            messageSize = 0
        }
        do throws(WebSocketError) {
            if chunk.count > 0 { streamEnded = false }
            try feed(chunk, into: &out)
            if final {
                if !streamEnded { try feed(MessageInflater.tail, into: &out) }
                messageSize = 0
                streamEnded = false
                if noContextTakeover { release() }
            }
        } catch {
            release()
            messageSize = 0
            streamEnded = false
            throw error
        }
    }

    private func feed(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) throws(WebSocketError) {
        guard input.count > 0, let s = stream else { return }
        s.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        s.pointee.avail_in = uInt(input.count)
        defer { s.pointee.next_in = nil; s.pointee.avail_in = 0 }
        while true {
            let availBefore = s.pointee.avail_in
            // At most one byte past the limit is produced, which is enough to know it is passed.
            let room = Swift.min(Swift.max(input.count * 4, 4096), 256 * 1024, maxMessageSize - messageSize + 1)
            let before = out.count
            out.append(contentsOf: repeatElement(0, count: room))
            var rc: Int32 = Z_OK
            var produced = 0
            out.withUnsafeMutableBufferPointer { buf in
                s.pointee.next_out = buf.baseAddress! + before
                s.pointee.avail_out = uInt(room)
                rc = CZlib.inflate(s, Z_SYNC_FLUSH)
                produced = room - Int(s.pointee.avail_out)
            }
            out.removeLast(room - produced)
            messageSize += produced
            if messageSize > maxMessageSize {
                throw WebSocketError(.messageTooBig, "inflated message passes \(maxMessageSize) bytes")
            }
            switch rc {
            case Z_OK, Z_BUF_ERROR:
                // Done with this input once zlib has taken all of it and left output room.
                if s.pointee.avail_in == 0 && s.pointee.avail_out > 0 { return }
                if produced == 0 && s.pointee.avail_in == availBefore {
                    if s.pointee.avail_in == 0 { return }
                    throw WebSocketError(.invalidPayload, "compressed message is corrupt: no progress")
                }
            case Z_STREAM_END:
                // The sender ended the stream (a final block): what follows starts afresh.
                inflateReset(s)
                streamEnded = true
                if s.pointee.avail_in == 0 { return }
                streamEnded = false   // more data follows in this message: a new stream
            case Z_MEM_ERROR:
                throw WebSocketError(.internalError, "zlib ran out of memory inflating a message")
            default:
                let what = s.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw WebSocketError(.invalidPayload, "compressed message is corrupt: \(what)")
            }
        }
    }
}
