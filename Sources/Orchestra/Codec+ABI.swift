// C ABI for the envelope codec, payload compression and orc_cipher_t (include/orchestra.h,
// section CODEC). Wrappers only.
import Glibc
import OrchestraCore
import COrchestra

@inline(__always)
func wireFormat(_ f: orc_format_t) throws(OrchestraError) -> WireFormat {
    guard f.rawValue <= 1, let w = WireFormat(rawValue: Int32(f.rawValue)) else {
        throw OrchestraError(.invalidArgument, "unknown format \(f.rawValue)")
    }
    return w
}

@_cdecl("orc_decode_options_init_sized")
public func orc_decode_options_init_sized(_ opts: UnsafeMutablePointer<orc_decode_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let o = try structToInit(opts, structSize, "orc_decode_options_t")
        let d = DecodeLimits.default
        o.pointee.max_size = d.maxSize
        o.pointee.max_depth = Int32(d.maxDepth)
    }
}

/// A per-thread encode buffer (malloc'ed), so orc_msg_encode builds the encoding without an
/// allocation per call and copies it into the caller's buffer only when it fits (the caller's
/// buffer is left untouched otherwise, as the header promises).
final class EncodeScratch {
    var base: UnsafeMutableRawPointer?
    var capacity = 0
    /// Capacity kept between calls; a larger buffer is dropped after use.
    static let keepCapacity = 1 << 20
    deinit { free(base) }
}

private let scratchKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { p in
        if let p { Unmanaged<EncodeScratch>.fromOpaque(UnsafeRawPointer(p)).release() }
    }
    return key
}()

@inline(__always)
func threadScratch() -> EncodeScratch {
    if let p = pthread_getspecific(scratchKey) {
        return Unmanaged<EncodeScratch>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
    let s = EncodeScratch()
    pthread_setspecific(scratchKey, Unmanaged.passRetained(s).toOpaque())
    return s
}

@_cdecl("orc_msg_encode")
public func orc_msg_encode(_ msg: OpaquePointer?, _ format: orc_format_t, _ buf: UnsafeMutableRawPointer?, _ cap: Int,
                           _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let outLen = try required(outLen, "out_len")
        outLen.pointee = 0
        let dst = try cBytes(UnsafeRawPointer(buf), cap, "buf")
        let f = try wireFormat(format)
        let scratch = threadScratch()
        var w = ByteWriter(lending: scratch.base, capacity: scratch.capacity)
        try EnvelopeCodec.encode(m, format: f, into: &w)
        let n = w.count
        outLen.pointee = n
        let fits = n <= dst.count
        if fits, let buf, let src = w.bytes.baseAddress { memcpy(buf, src, n) }
        if !w.isInLentBuffer {   // the encoding outgrew the scratch buffer: keep the larger one
            let c = w.capacity
            if let p = w.takeAllocation() {
                if c <= EncodeScratch.keepCapacity {
                    free(scratch.base)
                    scratch.base = p
                    scratch.capacity = c
                } else {
                    free(p)
                }
            }
        }
        guard fits else {
            throw OrchestraError(.noSpace, "encoded message is \(n) bytes; the buffer holds \(dst.count)")
        }
    }
}

@_cdecl("orc_msg_encode_alloc")
public func orc_msg_encode_alloc(_ msg: OpaquePointer?, _ format: orc_format_t, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                 _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let out = try required(out, "out"), outLen = try required(outLen, "out_len")
        out.pointee = nil
        outLen.pointee = 0
        let f = try wireFormat(format)
        var w = ByteWriter(capacity: EnvelopeCodec.estimatedSize(m))
        try EnvelopeCodec.encode(m, format: f, into: &w)
        let n = w.count
        out.pointee = w.takeAllocation()   // malloc'ed: the caller frees it with orc_buf_free
        outLen.pointee = n
    }
}

@_cdecl("orc_msg_decode")
public func orc_msg_decode(_ format: orc_format_t, _ data: UnsafeRawPointer?, _ len: Int,
                           _ opts: UnsafePointer<orc_decode_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let input = try cBytes(data, len, "data")
        let f = try wireFormat(format)
        var limits = DecodeLimits.default
        if let p = opts {
            let o = try initialisedOptions(p, "orc_decode_options_t")
            guard o.max_size > 0 else { throw OrchestraError(.invalidArgument, "max_size must be greater than 0") }
            let depth = Int(o.max_depth)
            guard depth >= 1 && depth <= DecodeLimits.depthCeiling else {
                throw OrchestraError(.invalidArgument, "max_depth \(depth) is outside 1...\(DecodeLimits.depthCeiling)")
            }
            // size_t values above Int.max arrive negative: they mean "no practical limit".
            limits = DecodeLimits(maxSize: o.max_size < 0 ? Int.max : o.max_size, maxDepth: depth)
        }
        out.pointee = retainedHandle(try EnvelopeCodec.decode(input, format: f, limits: limits))
    }
}

@_cdecl("orc_msg_compress")
public func orc_msg_compress(_ msg: OpaquePointer?, _ threshold: Int, _ compressed: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        compressed?.pointee = 0
        let m = try message(msg)
        let did = try PayloadCompression.compress(m, threshold: threshold < 0 ? Int.max : threshold)
        compressed?.pointee = did ? 1 : 0
    }
}

@_cdecl("orc_msg_decompress")
public func orc_msg_decompress(_ msg: OpaquePointer?, _ maxSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let limit = maxSize == 0 ? 64 << 20 : (maxSize < 0 ? Int.max : maxSize)
        try PayloadCompression.decompress(m, maxSize: limit)
    }
}

@_cdecl("orc_cipher_new")
public func orc_cipher_new(_ secret: UnsafeRawPointer?, _ secretLen: Int, _ salt: UnsafeRawPointer?, _ saltLen: Int,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        var s = Array(try cBytes(secret, secretLen, "secret"))
        defer { for i in s.indices { s[i] = 0 } }
        let sa = Array(try cBytes(salt, saltLen, "salt"))
        out.pointee = retainedHandle(try PayloadCipher(secret: s, salt: sa))
    }
}

@_cdecl("orc_cipher_free")
public func orc_cipher_free(_ cipher: OpaquePointer?) {
    guard let cipher else { return }
    (unmanaged(cipher) as Unmanaged<PayloadCipher>).release()
}

@_cdecl("orc_msg_encrypt")
public func orc_msg_encrypt(_ msg: OpaquePointer?, _ cipher: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        try handle(cipher, PayloadCipher.self, "cipher").encrypt(m)
    }
}

@_cdecl("orc_msg_decrypt")
public func orc_msg_decrypt(_ msg: OpaquePointer?, _ cipher: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        try handle(cipher, PayloadCipher.self, "cipher").decrypt(m)
    }
}

// MARK: JSON fields

/// The value at `path` ("a.b.c") of JSON text.
private func jsonMember(_ json: UnsafePointer<CChar>?, _ len: Int, _ path: UnsafePointer<CChar>?) throws(OrchestraError) -> JSONValue {
    let bytes = try cBytes(UnsafeRawPointer(json), len, "json")
    return try JSONValue.member(atPath: try text(path, "path"), of: bytes)
}

@_cdecl("orc_json_get_string")
public func orc_json_get_string(_ json: UnsafePointer<CChar>?, _ len: Int, _ path: UnsafePointer<CChar>?,
                                _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        guard case .string(var s) = try jsonMember(json, len, path) else {
            throw OrchestraError(.invalidArgument, "the member is not a string")
        }
        let count = s.utf8.count
        guard let buf = malloc(count + 1)?.assumingMemoryBound(to: CChar.self) else { throw OrchestraError(.noMemory, "out of memory") }
        s.withUTF8 { u in if count > 0 { memcpy(buf, u.baseAddress!, count) } }
        buf[count] = 0
        out.pointee = buf
        outLen?.pointee = count
    }
}

@_cdecl("orc_json_get_int")
public func orc_json_get_int(_ json: UnsafePointer<CChar>?, _ len: Int, _ path: UnsafePointer<CChar>?,
                             _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        guard let i = try jsonMember(json, len, path).int else {
            throw OrchestraError(.invalidArgument, "the member is not an integer")
        }
        out.pointee = i
    }
}
