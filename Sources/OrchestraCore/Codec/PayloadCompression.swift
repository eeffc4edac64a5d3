// Payload compression with zlib (RFC 1950 zlib format, deflate inside).
import CZlib

public enum PayloadCompression {
    /// Deflates (zlib format) the payload when it is larger than `threshold` bytes and the
    /// result is smaller; sets `compressed`. Returns whether it did. `.state` if the payload is
    /// encrypted; `.invalidArgument` for a level outside -1...9. An already compressed payload
    /// or no payload returns false.
    public static func compress(_ m: Message, threshold: Int = 1024, level: Int32 = 6) throws(OrchestraError) -> Bool {
        if m.encrypted { throw OrchestraError(.state, "cannot compress an encrypted payload (compress before encrypting)") }
        guard level >= -1 && level <= 9 else {
            throw OrchestraError(.invalidArgument, "compression level \(level) is outside -1...9")
        }
        guard !m.compressed, let payload = m.payload, payload.count > threshold else { return false }
        let bound = Int(compressBound(uLong(payload.count)))
        var destLen = uLongf(bound)
        var rc: Int32 = Z_OK
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            payload.withUnsafeBufferPointer { src in
                rc = compress2(buf.baseAddress, &destLen, src.baseAddress, uLong(src.count), level)
            }
            initialized = rc == Z_OK ? Int(destLen) : 0
        }
        guard rc == Z_OK else {
            throw rc == Z_MEM_ERROR ? OrchestraError(.noMemory, "zlib: out of memory while compressing")
                                    : OrchestraError(.internal, "zlib compress2 failed (\(rc))")
        }
        guard out.count < payload.count else { return false }
        m.payload = out
        m.compressed = true
        return true
    }

    /// Inflates a compressed payload. `.state` if it is not compressed or still encrypted;
    /// `.parse` on corrupt or truncated data (or bytes after the stream); `.tooBig` as soon as
    /// the output would pass `maxSize` (no decompression bomb).
    public static func decompress(_ m: Message, maxSize: Int = 64 << 20) throws(OrchestraError) {
        guard m.compressed else { throw OrchestraError(.state, "payload is not compressed") }
        if m.encrypted { throw OrchestraError(.state, "payload is encrypted: decrypt it before decompressing") }
        let input = m.payload ?? []
        m.payload = try inflate(input, maxSize: maxSize)
        m.compressed = false
    }

    /// Inflates zlib-format data, at most `maxSize` bytes of output.
    public static func inflate(_ input: [UInt8], maxSize: Int) throws(OrchestraError) -> [UInt8] {
        var stream = z_stream()
        guard orc_zlib_inflate_init2(&stream, 15) == Z_OK else {
            throw OrchestraError(.noMemory, "zlib: inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        let chunkSize = 64 * 1024
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var out = [UInt8]()
        out.reserveCapacity(min(maxSize, max(input.count * 4, 256)))
        var result: OrchestraError? = nil
        input.withUnsafeBufferPointer { src in
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress)
            stream.avail_in = uInt(src.count)
            chunk.withUnsafeMutableBufferPointer { dst in
                while true {
                    stream.next_out = dst.baseAddress
                    stream.avail_out = uInt(chunkSize)
                    let rc = CZlib.inflate(&stream, Z_NO_FLUSH)
                    let produced = chunkSize - Int(stream.avail_out)
                    if produced > 0 {
                        if out.count + produced > maxSize {
                            result = OrchestraError(.tooBig, "decompressed payload exceeds the limit of \(maxSize) bytes")
                            return
                        }
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: dst[0..<produced]))
                    }
                    switch rc {
                    case Z_STREAM_END:
                        if stream.avail_in != 0 {
                            result = OrchestraError(.parse, "compressed payload has \(stream.avail_in) bytes after the end of the zlib stream")
                        }
                        return
                    case Z_OK:
                        continue
                    case Z_BUF_ERROR:
                        if stream.avail_in == 0 {
                            result = OrchestraError(.parse, "compressed payload is truncated (zlib stream did not end)")
                            return
                        }
                        continue
                    case Z_MEM_ERROR:
                        result = OrchestraError(.noMemory, "zlib: out of memory while decompressing")
                        return
                    default:
                        let detail = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                        result = OrchestraError(.parse, "compressed payload is corrupt at byte \(Int(stream.total_in)): \(detail)")
                        return
                    }
                }
            }
        }
        if let result { throw result }
        return out
    }
}
