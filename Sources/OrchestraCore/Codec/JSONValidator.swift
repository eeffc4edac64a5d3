// Strict RFC 8259 validation of a whole JSON text (the scanner in JSONScanner.swift does the
// work): one value, whitespace around it, valid UTF-8, within the size and depth limits.

public enum JSONValidator {
    /// Checks that `bytes` is exactly one JSON value (RFC 8259), optionally surrounded by
    /// whitespace. Throws `.parse` ("invalid JSON at byte 17: ...") or `.tooBig` (size, depth).
    public static func validate(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) {
        if bytes.count > limits.maxSize {
            throw OrchestraError(.tooBig, "JSON text is \(bytes.count) bytes; the limit is \(limits.maxSize)")
        }
        if let bad = UTF8Validator.firstInvalidOffset(bytes) {
            throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
        }
        var s = JSONScanner(bytes, maxDepth: limits.effectiveDepth)
        s.skipWhitespace()
        try s.skipValue(depth: 0)
        try s.expectEnd()
    }

    public static func validate(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(OrchestraError) {
        try withBytes(bytes) { (b) throws(OrchestraError) in try validate(b, limits: limits) }
    }
}
