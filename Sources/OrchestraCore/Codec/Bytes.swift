// Small helpers over bytes shared by the codecs: arrays made from raw memory, raw memory of an
// array with a typed-throwing body, array output through a ByteWriter, bytes in error texts.

/// `withUnsafeBytes` with a typed-throwing body (the stdlib's rethrows as `any Error`).
@inline(__always)
func withBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
    let r: Result<R, OrchestraError> = a.withUnsafeBytes { b in
        Result { () throws(OrchestraError) -> R in try body(b) }
    }
    return try r.get()
}

extension Array where Element == UInt8 {
    /// Appends what `body` writes into a `ByteWriter` of `capacity` bytes: the writers work on
    /// ByteWriter, and their `[UInt8]` forms go through this.
    @inline(__always)
    mutating func appendWritten<E: Error>(capacity: Int, _ body: (inout ByteWriter) throws(E) -> Void) throws(E) {
        var w = ByteWriter(capacity: capacity)
        try body(&w)
        append(contentsOf: w.bytes)
    }
}

private let hexDigitsUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

func hex2(_ b: UInt8) -> String {
    String(decoding: [hexDigitsUpper[Int(b >> 4)], hexDigitsUpper[Int(b & 0xF)]], as: UTF8.self)
}

func hexString(_ v: UInt32) -> String {
    hex2(UInt8(truncatingIfNeeded: v >> 8)) + hex2(UInt8(truncatingIfNeeded: v))
}

/// A byte for an error message: printable ASCII as itself, else 0xNN.
func printable(_ b: UInt8) -> String {
    if b >= 0x20 && b < 0x7F { return String(Character(Unicode.Scalar(b))) }
    return "0x" + hex2(b)
}

/// Up to `limit` bytes of `bytes` as text for an error message.
func excerpt(_ bytes: UnsafeRawBufferPointer, limit: Int = 40) -> String {
    let n = min(bytes.count, limit)
    let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<n]), as: UTF8.self)
    return n < bytes.count ? s + "..." : s
}

/// A new array holding bytes[start..<end] (one allocation of exactly that size). Built from
/// a typed buffer pointer: that path is specialised for UInt8, while
/// `Array(unsafeUninitializedCapacity:)` looks up the generic array-storage metadata on every
/// call (measured: about twice the instructions per small array).
@inline(__always)
func makeBytes(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> [UInt8] {
    let n = end - start
    if n <= 0 { return [] }
    let src = (bytes.baseAddress.unsafelyUnwrapped + start).assumingMemoryBound(to: UInt8.self)
    return Array(UnsafeBufferPointer(start: src, count: n))
}

@inline(__always)
func makeBytes(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    makeBytes(bytes, 0, bytes.count)
}
