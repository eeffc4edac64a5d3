// MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md) for the envelope:
// a top-level map with the same str keys as the JSON form. JSON-typed values (a JSON payload,
// .json header/metadata values, extensions) are carried as native MessagePack values and
// transcoded to and from JSON text. Input is hostile: no allocation from a declared length
// larger than the remaining input, depth and size limits, byte offsets in errors.

// MARK: - Writer

enum MsgPackWriter {
    static func writeNil(into out: inout [UInt8]) { out.append(0xC0) }
    static func writeBool(_ v: Bool, into out: inout [UInt8]) { out.append(v ? 0xC3 : 0xC2) }

    @inline(__always)
    static func be16(_ v: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: v >> 8)); out.append(UInt8(truncatingIfNeeded: v))
    }
    @inline(__always)
    static func be32(_ v: UInt32, _ out: inout [UInt8]) {
        be16(UInt16(truncatingIfNeeded: v >> 16), &out); be16(UInt16(truncatingIfNeeded: v), &out)
    }
    @inline(__always)
    static func be64(_ v: UInt64, _ out: inout [UInt8]) {
        be32(UInt32(truncatingIfNeeded: v >> 32), &out); be32(UInt32(truncatingIfNeeded: v), &out)
    }

    /// The smallest int form for `v`.
    static func writeUInt(_ v: UInt64, into out: inout [UInt8]) {
        if v < 0x80 { out.append(UInt8(v)) }
        else if v <= 0xFF { out.append(0xCC); out.append(UInt8(v)) }
        else if v <= 0xFFFF { out.append(0xCD); be16(UInt16(v), &out) }
        else if v <= 0xFFFF_FFFF { out.append(0xCE); be32(UInt32(v), &out) }
        else { out.append(0xCF); be64(v, &out) }
    }

    static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        if v >= 0 { writeUInt(UInt64(v), into: &out); return }
        if v >= -32 { out.append(UInt8(bitPattern: Int8(v))) }
        else if v >= Int64(Int8.min) { out.append(0xD0); out.append(UInt8(bitPattern: Int8(v))) }
        else if v >= Int64(Int16.min) { out.append(0xD1); be16(UInt16(bitPattern: Int16(v)), &out) }
        else if v >= Int64(Int32.min) { out.append(0xD2); be32(UInt32(bitPattern: Int32(v)), &out) }
        else { out.append(0xD3); be64(UInt64(bitPattern: v), &out) }
    }

    static func writeDouble(_ v: Double, into out: inout [UInt8]) {
        out.append(0xCB); be64(v.bitPattern, &out)
    }

    static func writeStrHeader(_ n: Int, into out: inout [UInt8]) throws(OrchestraError) {
        if n < 32 { out.append(0xA0 | UInt8(n)) }
        else if n <= 0xFF { out.append(0xD9); out.append(UInt8(n)) }
        else if n <= 0xFFFF { out.append(0xDA); be16(UInt16(n), &out) }
        else if n <= 0xFFFF_FFFF { out.append(0xDB); be32(UInt32(n), &out) }
        else { throw OrchestraError(.tooBig, "string of \(n) bytes exceeds MessagePack's 4 GiB limit") }
    }

    static func writeStr(_ s: UnsafeRawBufferPointer, into out: inout [UInt8], what: String) throws(OrchestraError) {
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw OrchestraError(.invalidArgument, "\(what) is not valid UTF-8 (byte \(bad))")
        }
        try writeStrHeader(s.count, into: &out)
        out.append(contentsOf: s)
    }

    static func writeStr(_ s: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
        try withBytes(s) { (b) throws(OrchestraError) in try writeStr(b, into: &out, what: what) }
    }

    /// A key known to be short ASCII.
    static func writeKey(_ s: [UInt8], into out: inout [UInt8]) {
        out.append(0xA0 | UInt8(s.count))
        out.append(contentsOf: s)
    }

    static func writeBin(_ b: [UInt8], into out: inout [UInt8]) throws(OrchestraError) {
        let n = b.count
        if n <= 0xFF { out.append(0xC4); out.append(UInt8(n)) }
        else if n <= 0xFFFF { out.append(0xC5); be16(UInt16(n), &out) }
        else if n <= 0xFFFF_FFFF { out.append(0xC6); be32(UInt32(n), &out) }
        else { throw OrchestraError(.tooBig, "binary payload of \(n) bytes exceeds MessagePack's 4 GiB limit") }
        out.append(contentsOf: b)
    }

    static func writeContainerHeader(map: Bool, count n: Int, into out: inout [UInt8]) throws(OrchestraError) {
        if n < 16 { out.append((map ? 0x80 : 0x90) | UInt8(n)) }
        else if n <= 0xFFFF { out.append(map ? 0xDE : 0xDC); be16(UInt16(n), &out) }
        else if n <= 0xFFFF_FFFF { out.append(map ? 0xDF : 0xDD); be32(UInt32(n), &out) }
        else { throw OrchestraError(.tooBig, "\(map ? "map" : "array") of \(n) entries exceeds MessagePack's limit") }
    }

    /// Replaces the 5-byte placeholder at `p` with the smallest header for `n` entries.
    static func patchContainerHeader(map: Bool, count n: Int, at p: Int, in out: inout [UInt8]) throws(OrchestraError) {
        if n < 16 {
            out[p] = (map ? 0x80 : 0x90) | UInt8(n)
            out.removeSubrange((p + 1)..<(p + 5))
        } else if n <= 0xFFFF {
            out[p] = map ? 0xDE : 0xDC
            out[p + 1] = UInt8(n >> 8); out[p + 2] = UInt8(n & 0xFF)
            out.removeSubrange((p + 3)..<(p + 5))
        } else if n <= 0xFFFF_FFFF {
            out[p] = map ? 0xDF : 0xDD
            out[p + 1] = UInt8(n >> 24 & 0xFF); out[p + 2] = UInt8(n >> 16 & 0xFF)
            out[p + 3] = UInt8(n >> 8 & 0xFF); out[p + 4] = UInt8(n & 0xFF)
        } else {
            throw OrchestraError(.tooBig, "\(map ? "map" : "array") of \(n) entries exceeds MessagePack's limit")
        }
    }
}

// MARK: - JSON text -> MessagePack

extension JSONScanner {
    /// Transcodes the JSON value at `pos` (whitespace skipped) into MessagePack. Integers must
    /// fit Int64/UInt64; other numbers become float64. Containers get a placeholder header
    /// that is shrunk to the smallest form once the count is known.
    mutating func transcodeToMsgPack(depth: Int, into out: inout [UInt8], scratch: inout [UInt8]) throws(OrchestraError) {
        let c = try peek("a value")
        switch c {
        case 0x7B, 0x5B:
            let isMap = c == 0x7B
            if depth + 1 > maxDepth { throw tooDeep() }
            pos += 1
            let headerPos = out.count
            out.append(contentsOf: [0, 0, 0, 0, 0])
            var count = 0
            skipWhitespace()
            let close: UInt8 = isMap ? 0x7D : 0x5D
            if try peek(isMap ? "'}' or a key" : "']' or a value") == close {
                pos += 1
            } else {
                while true {
                    skipWhitespace()
                    if isMap {
                        guard try peek("an object key") == 0x22 else { throw fail("expected a string as object key") }
                        scratch.removeAll(keepingCapacity: true)
                        try scanString(into: &scratch, decode: true)
                        try MsgPackWriter.writeStrHeader(scratch.count, into: &out)
                        out.append(contentsOf: scratch)
                        try expect(0x3A, "after object key")
                        skipWhitespace()
                    }
                    try transcodeToMsgPack(depth: depth + 1, into: &out, scratch: &scratch)
                    count += 1
                    skipWhitespace()
                    guard pos < bytes.count else { throw fail("unexpected end of input, expected ',' or '\(isMap ? "}" : "]")'") }
                    let d = bytes[pos]
                    pos += 1
                    if d == 0x2C { continue }
                    if d == close { break }
                    pos -= 1
                    throw fail(isMap ? "expected ',' or '}' after object member" : "expected ',' or ']' after array element")
                }
            }
            try MsgPackWriter.patchContainerHeader(map: isMap, count: count, at: headerPos, in: &out)
        case 0x22:
            scratch.removeAll(keepingCapacity: true)
            try scanString(into: &scratch, decode: true)
            try MsgPackWriter.writeStrHeader(scratch.count, into: &out)
            out.append(contentsOf: scratch)
        case 0x2D, 0x30...0x39:
            let start = pos
            let isInteger = try scanNumber()
            let lexeme = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
            if isInteger {
                if lexeme[0] == 0x2D {
                    guard let v = parseInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeInt(v, into: &out)
                } else {
                    guard let v = parseUInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeUInt(v, into: &out)
                }
            } else {
                let text = String(decoding: lexeme, as: UTF8.self)
                guard let d = Double(text), d.isFinite else {
                    throw OrchestraError(.invalidArgument, "number \(excerpt(lexeme)) is out of the float64 range")
                }
                MsgPackWriter.writeDouble(d, into: &out)
            }
        case 0x74: try scanLiteral("true"); out.append(0xC3)
        case 0x66: try scanLiteral("false"); out.append(0xC2)
        case 0x6E: try scanLiteral("null"); out.append(0xC0)
        default: throw fail("unexpected character '\(printable(c))', expected a value")
        }
    }
}

/// Transcodes one complete JSON text into one MessagePack value (appended to `out`).
func jsonToMsgPack(_ json: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
    do {
        try withBytes(json) { (b) throws(OrchestraError) in
            if let bad = UTF8Validator.firstInvalidOffset(b) {
                throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
            }
            var s = JSONScanner(b, maxDepth: DecodeLimits.depthCeiling)
            var scratch = [UInt8]()
            s.skipWhitespace()
            try s.transcodeToMsgPack(depth: 0, into: &out, scratch: &scratch)
            try s.expectEnd()
        }
    } catch {
        throw OrchestraError(.invalidArgument, "cannot encode \(what): \(error.message)")
    }
}

// MARK: - Reader

struct MsgPackReader {
    let bytes: UnsafeRawBufferPointer
    var pos = 0
    let maxDepth: Int

    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    var remaining: Int { bytes.count - pos }

    func fail(_ message: String, at p: Int? = nil) -> OrchestraError {
        OrchestraError(.parse, "invalid MessagePack at byte \(p ?? pos): \(message)")
    }

    func tooDeep(at p: Int) -> OrchestraError {
        OrchestraError(.tooBig, "MessagePack nesting at byte \(p) exceeds the depth limit of \(maxDepth)")
    }

    mutating func byte() throws(OrchestraError) -> UInt8 {
        guard pos < bytes.count else { throw fail("truncated input: expected a value") }
        let b = bytes[pos]
        pos += 1
        return b
    }

    mutating func uint(_ n: Int) throws(OrchestraError) -> UInt64 {
        guard n <= remaining else { throw fail("truncated input: expected \(n) more bytes, \(remaining) remain") }
        var v: UInt64 = 0
        for i in 0..<n { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += n
        return v
    }

    /// Consumes `n` declared bytes; fails (without allocating) when fewer remain.
    mutating func take(_ n: UInt64, _ what: String, at start: Int) throws(OrchestraError) -> UnsafeRawBufferPointer {
        guard n <= UInt64(remaining) else {
            throw fail("truncated input: \(what) declares \(n) bytes but only \(remaining) remain", at: start)
        }
        let r = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + Int(n))])
        pos += Int(n)
        return r
    }

    enum Value {
        case null
        case bool(Bool)
        case int(Int64)
        case uint(UInt64)      // only values above Int64.max
        case float32(Float)
        case float64(Double)
        case str(UnsafeRawBufferPointer)
        case bin(UnsafeRawBufferPointer)
        case array(Int)
        case map(Int)
        case ext(Int8, UnsafeRawBufferPointer)
    }

    /// Reads one value header (and the bytes of str/bin/ext). Container counts are checked
    /// against the remaining input (each element needs at least one byte).
    mutating func next() throws(OrchestraError) -> Value {
        let start = pos
        let b = try byte()
        switch b {
        case 0x00...0x7F: return .int(Int64(b))
        case 0x80...0x8F: return try mapCount(UInt64(b & 0x0F), at: start)
        case 0x90...0x9F: return try arrayCount(UInt64(b & 0x0F), at: start)
        case 0xA0...0xBF: return .str(try take(UInt64(b & 0x1F), "str", at: start))
        case 0xC0: return .null
        case 0xC2: return .bool(false)
        case 0xC3: return .bool(true)
        case 0xC4: let n = try uint(1); return .bin(try take(n, "bin 8", at: start))
        case 0xC5: let n = try uint(2); return .bin(try take(n, "bin 16", at: start))
        case 0xC6: let n = try uint(4); return .bin(try take(n, "bin 32", at: start))
        case 0xC7, 0xC8, 0xC9:
            let n = try uint(b == 0xC7 ? 1 : b == 0xC8 ? 2 : 4)
            let t = Int8(bitPattern: try byte())
            return .ext(t, try take(n, "ext", at: start))
        case 0xCA: return .float32(Float(bitPattern: UInt32(try uint(4))))
        case 0xCB: return .float64(Double(bitPattern: try uint(8)))
        case 0xCC: return .int(Int64(try uint(1)))
        case 0xCD: return .int(Int64(try uint(2)))
        case 0xCE: return .int(Int64(try uint(4)))
        case 0xCF:
            let v = try uint(8)
            return v <= UInt64(Int64.max) ? .int(Int64(v)) : .uint(v)
        case 0xD0: return .int(Int64(Int8(truncatingIfNeeded: try uint(1))))
        case 0xD1: return .int(Int64(Int16(truncatingIfNeeded: try uint(2))))
        case 0xD2: return .int(Int64(Int32(truncatingIfNeeded: try uint(4))))
        case 0xD3: return .int(Int64(bitPattern: try uint(8)))
        case 0xD4, 0xD5, 0xD6, 0xD7, 0xD8:
            let n: UInt64 = [1, 2, 4, 8, 16][Int(b - 0xD4)]
            let t = Int8(bitPattern: try byte())
            return .ext(t, try take(n, "fixext", at: start))
        case 0xD9: let n = try uint(1); return .str(try take(n, "str 8", at: start))
        case 0xDA: let n = try uint(2); return .str(try take(n, "str 16", at: start))
        case 0xDB: let n = try uint(4); return .str(try take(n, "str 32", at: start))
        // Read the count first: a non-mutating call copies `self` before evaluating arguments.
        case 0xDC: let n = try uint(2); return try arrayCount(n, at: start)
        case 0xDD: let n = try uint(4); return try arrayCount(n, at: start)
        case 0xDE: let n = try uint(2); return try mapCount(n, at: start)
        case 0xDF: let n = try uint(4); return try mapCount(n, at: start)
        case 0xE0...0xFF: return .int(Int64(Int8(bitPattern: b)))
        default: throw fail("invalid type byte 0x\(hex2(b)) (never used)", at: start)
        }
    }

    private func arrayCount(_ n: UInt64, at start: Int) throws(OrchestraError) -> Value {
        guard n <= UInt64(remaining) else {
            throw fail("truncated input: array declares \(n) elements but only \(remaining) bytes remain", at: start)
        }
        return .array(Int(n))
    }

    private func mapCount(_ n: UInt64, at start: Int) throws(OrchestraError) -> Value {
        guard n <= UInt64(remaining) / 2 else {
            throw fail("truncated input: map declares \(n) entries but only \(remaining) bytes remain", at: start)
        }
        return .map(Int(n))
    }

    /// A str value (UTF-8 checked), naming `what` in errors.
    mutating func readStr(_ what: String) throws(OrchestraError) -> UnsafeRawBufferPointer {
        let start = pos
        guard case .str(let s) = try next() else {
            throw fail("\(what) must be a str", at: start)
        }
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw fail("\(what) is not valid UTF-8", at: pos - s.count + bad)
        }
        return s
    }

    /// Skips one complete value (validating its structure).
    mutating func skip(depth: Int) throws(OrchestraError) {
        let start = pos
        switch try next() {
        case .array(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            for _ in 0..<n { try skip(depth: depth + 1) }
        case .map(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            for _ in 0..<n { try skip(depth: depth + 1); try skip(depth: depth + 1) }
        default: break
        }
    }

    /// Transcodes one value into JSON text. bin/ext, non-str keys, NaN/Infinity are errors.
    mutating func transcodeToJSON(depth: Int, into out: inout [UInt8]) throws(OrchestraError) {
        let start = pos
        switch try next() {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(let v): out.append(contentsOf: v ? trueBytes : falseBytes)
        case .int(let v): JSONWriter.writeInt(v, into: &out)
        case .uint(let v): JSONWriter.writeUInt(v, into: &out)
        case .float32(let f):
            guard f.isFinite else { throw fail("float \(f) has no JSON form", at: start) }
            JSONWriter.writeFloat(f, into: &out)
        case .float64(let d):
            guard d.isFinite else { throw fail("float \(d) has no JSON form", at: start) }
            JSONWriter.writeDouble(d, into: &out)
        case .str(let s):
            if let bad = UTF8Validator.firstInvalidOffset(s) {
                throw fail("str is not valid UTF-8", at: pos - s.count + bad)
            }
            JSONWriter.writeValidString(s, into: &out)
        case .bin:
            throw fail("bin where a JSON value is expected", at: start)
        case .ext(let t, _):
            throw fail("ext type \(t) where a JSON value is expected", at: start)
        case .array(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            out.append(0x5B)
            for i in 0..<n {
                if i > 0 { out.append(0x2C) }
                try transcodeToJSON(depth: depth + 1, into: &out)
            }
            out.append(0x5D)
        case .map(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            out.append(0x7B)
            for i in 0..<n {
                if i > 0 { out.append(0x2C) }
                let k = try readStr("a map key")
                JSONWriter.writeValidString(k, into: &out)
                out.append(0x3A)
                try transcodeToJSON(depth: depth + 1, into: &out)
            }
            out.append(0x7D)
        }
    }
}

// MARK: - Envelope

enum MsgPackEnvelope {
    static func encode(_ m: Message, into out: inout [UInt8]) throws(OrchestraError) {
        try checkEncodable(m)
        let names = EnvelopeKey.names
        let others = m.metadata.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
        let hasMetadata = m.compressed || m.encrypted || !others.isEmpty
        var count = 2
        if m.timestamp != nil { count += 1 }
        if m.versionBytes != nil { count += 1 }
        if m.sourceBytes != nil { count += 1 }
        if m.targetBytes != nil { count += 1 }
        if m.correlationIdBytes != nil { count += 1 }
        if m.replyToBytes != nil { count += 1 }
        if m.ttl != nil { count += 1 }
        if m.priority != nil { count += 1 }
        if m.contentType != .json { count += 1 }
        if !m.headers.isEmpty { count += 1 }
        if hasMetadata { count += 1 }
        count += m.extensions.count
        if m.payload != nil { count += 1 }
        out.reserveCapacity(out.count + 128 + (m.payload?.count ?? 0))

        try MsgPackWriter.writeContainerHeader(map: true, count: count, into: &out)
        MsgPackWriter.writeKey(names[EnvelopeKey.id.rawValue], into: &out)
        try MsgPackWriter.writeStr(m.idBytes, into: &out, what: "id")
        MsgPackWriter.writeKey(names[EnvelopeKey.type.rawValue], into: &out)
        try MsgPackWriter.writeStr(m.typeBytes, into: &out, what: "type")
        if let ts = m.timestamp {
            MsgPackWriter.writeKey(names[EnvelopeKey.timestamp.rawValue], into: &out)
            MsgPackWriter.writeInt(ts, into: &out)
        }
        func text(_ v: [UInt8]?, _ k: EnvelopeKey, _ out: inout [UInt8]) throws(OrchestraError) {
            guard let v else { return }
            MsgPackWriter.writeKey(names[k.rawValue], into: &out)
            try MsgPackWriter.writeStr(v, into: &out, what: k.name)
        }
        try text(m.versionBytes, .version, &out)
        try text(m.sourceBytes, .source, &out)
        try text(m.targetBytes, .target, &out)
        try text(m.correlationIdBytes, .correlationId, &out)
        try text(m.replyToBytes, .replyTo, &out)
        if let ttl = m.ttl {
            MsgPackWriter.writeKey(names[EnvelopeKey.ttl.rawValue], into: &out)
            MsgPackWriter.writeInt(ttl, into: &out)
        }
        if let p = m.priority {
            MsgPackWriter.writeKey(names[EnvelopeKey.priority.rawValue], into: &out)
            MsgPackWriter.writeUInt(UInt64(p.rawValue), into: &out)
        }
        if m.contentType != .json {
            MsgPackWriter.writeKey(names[EnvelopeKey.contentType.rawValue], into: &out)
            try MsgPackWriter.writeStr(Array(m.contentType.mimeType.utf8), into: &out, what: "contentType")
        }
        if !m.headers.isEmpty {
            MsgPackWriter.writeKey(names[EnvelopeKey.headers.rawValue], into: &out)
            try MsgPackWriter.writeContainerHeader(map: true, count: m.headers.count, into: &out)
            for h in m.headers { try writeField(h, into: &out, what: "header") }
        }
        if hasMetadata {
            MsgPackWriter.writeKey(names[EnvelopeKey.metadata.rawValue], into: &out)
            let n = (m.compressed ? 1 : 0) + (m.encrypted ? 1 : 0) + others.count
            try MsgPackWriter.writeContainerHeader(map: true, count: n, into: &out)
            if m.compressed { MsgPackWriter.writeKey(metaCompressed, into: &out); out.append(0xC3) }
            if m.encrypted { MsgPackWriter.writeKey(metaEncrypted, into: &out); out.append(0xC3) }
            for f in others { try writeField(f, into: &out, what: "metadata") }
        }
        for e in m.extensions { try writeField(e, into: &out, what: "extension") }
        if let p = m.payload {
            MsgPackWriter.writeKey(names[EnvelopeKey.payload.rawValue], into: &out)
            if m.compressed || m.encrypted || m.contentType == .binary {
                try MsgPackWriter.writeBin(p, into: &out)
            } else if m.contentType == .text {
                try MsgPackWriter.writeStr(p, into: &out, what: "text payload")
            } else {
                try jsonToMsgPack(p, into: &out, what: "JSON payload")
            }
        }
    }

    private static func writeField(_ f: Field, into out: inout [UInt8], what: String) throws(OrchestraError) {
        try MsgPackWriter.writeStr(f.key, into: &out, what: "\(what) key")
        switch f.value {
        case .string(let s):
            try MsgPackWriter.writeStr(s, into: &out, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        case .json(let j):
            try jsonToMsgPack(j, into: &out, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        }
    }

    // MARK: Decoding

    static func envelopeError(_ at: Int, _ message: String) -> OrchestraError {
        EnvelopeFields.error(at, message)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        var r = MsgPackReader(bytes, maxDepth: limits.effectiveDepth)
        guard case .map(let count) = try r.next() else {
            throw r.fail("the envelope must be a map", at: 0)
        }
        if r.maxDepth < 1 { throw r.tooDeep(at: 0) }

        var id: [UInt8]?, type: [UInt8]?
        var timestamp: Int64?, ttl: Int64?
        var priority: Priority?
        var texts: [[UInt8]?] = [nil, nil, nil, nil, nil]
        var contentType = ContentType.json
        var headers: [Field] = []
        var metadata: [Field] = []
        var compressed = false, encrypted = false
        var extensions: [Field] = []
        var payloadPos: Int?
        var seen: UInt32 = 0

        for _ in 0..<count {
            let keyPos = r.pos
            let key = try r.readStr("an envelope key")
            let valuePos = r.pos
            guard let k = EnvelopeKey.lookup(key) else {
                var json = [UInt8]()
                try r.transcodeToJSON(depth: 1, into: &json)
                extensions.append(Field(key: Array(key), value: .json(json)))
                continue
            }
            let bit: UInt32 = 1 << UInt32(k.rawValue)
            if seen & bit != 0 { throw envelopeError(keyPos, "duplicate key \"\(k.name)\"") }
            seen |= bit
            switch k {
            case .id, .type, .version, .source, .target, .correlationId, .replyTo, .contentType:
                let v = try readText(&r, k)
                switch k {
                case .id: id = v
                case .type: type = v
                case .version: texts[0] = v
                case .source: texts[1] = v
                case .target: texts[2] = v
                case .correlationId: texts[3] = v
                case .replyTo: texts[4] = v
                default:
                    contentType = try EnvelopeFields.contentType(v, at: valuePos)
                }
            case .timestamp:
                timestamp = try readInt(&r, k)
            case .ttl:
                ttl = try EnvelopeFields.ttl(readInt(&r, k), at: valuePos)
            case .priority:
                priority = try EnvelopeFields.priority(readInt(&r, k), at: valuePos)
            case .headers:
                headers = try readFields(&r, k)
            case .metadata:
                guard case .map(let n) = try r.next() else {
                    throw envelopeError(valuePos, "\"metadata\" must be a map")
                }
                if r.maxDepth < 2 { throw r.tooDeep(at: valuePos) }
                var fields: [Field] = []
                for _ in 0..<n {
                    let fk = Array(try r.readStr("a metadata key"))
                    let fpos = r.pos
                    if fk == metaCompressed || fk == metaEncrypted {
                        guard case .bool(let flag) = try r.next() else {
                            throw envelopeError(fpos, "\"metadata.\(String(decoding: fk, as: UTF8.self))\" must be a boolean")
                        }
                        if fk == metaCompressed { compressed = flag } else { encrypted = flag }
                        fields.append(Field(key: fk, value: .json([])))
                    } else {
                        fields.append(Field(key: fk, value: try readFieldValue(&r)))
                    }
                }
                do { try checkDuplicateKeys(fields, in: "\"metadata\"") } catch { throw envelopeError(valuePos, error.message) }
                metadata = fields.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
            case .payload:
                payloadPos = valuePos
                try r.skip(depth: 1)
            }
        }
        if r.pos != bytes.count {
            throw r.fail("\(bytes.count - r.pos) trailing bytes after the envelope map")
        }
        let m = try EnvelopeFields.assemble(
            id: id, type: type, timestamp: timestamp, texts: texts, ttl: ttl, priority: priority,
            contentType: contentType, headers: headers, metadata: metadata, compressed: compressed,
            encrypted: encrypted, extensions: extensions)

        if let start = payloadPos {
            r.pos = start
            if compressed || encrypted || contentType == .binary {
                guard case .bin(let b) = try r.next() else {
                    throw envelopeError(start, compressed || encrypted
                        ? "a compressed or encrypted payload must be bin"
                        : "an application/octet-stream payload must be bin")
                }
                m.payload = Array(b)
            } else if contentType == .text {
                m.payload = Array(try r.readStr("a text/plain payload"))
            } else {
                var json = [UInt8]()
                try r.transcodeToJSON(depth: 1, into: &json)
                m.payload = json
            }
        }
        return m
    }

    private static func readText(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> [UInt8] {
        let at = r.pos
        let s = try r.readStr("\"\(k.name)\"")
        if s.count > Message.maxTextFieldLength {
            throw OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(s.count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        if s.isEmpty && (k == .id || k == .type) {
            throw envelopeError(at, "\"\(k.name)\" must not be empty")
        }
        return Array(s)
    }

    private static func readInt(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        let at = r.pos
        switch try r.next() {
        case .int(let v): return v
        case .uint(let v): throw envelopeError(at, "\"\(k.name)\" \(v) is out of the 64-bit integer range")
        case .float32, .float64: throw envelopeError(at, "\"\(k.name)\" must be an integer, got a float")
        default: throw envelopeError(at, "\"\(k.name)\" must be an integer")
        }
    }

    private static func readFieldValue(_ r: inout MsgPackReader) throws(OrchestraError) -> FieldValue {
        let at = r.pos
        if at < r.bytes.count {
            let b = r.bytes[at]
            if (0xA0...0xBF).contains(b) || b == 0xD9 || b == 0xDA || b == 0xDB {
                return .string(Array(try r.readStr("a string value")))
            }
        }
        var json = [UInt8]()
        try r.transcodeToJSON(depth: 2, into: &json)
        return .json(json)
    }

    private static func readFields(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> [Field] {
        let at = r.pos
        guard case .map(let n) = try r.next() else {
            throw envelopeError(at, "\"\(k.name)\" must be a map")
        }
        if r.maxDepth < 2 { throw r.tooDeep(at: at) }
        var fields: [Field] = []
        fields.reserveCapacity(min(n, 64))
        for _ in 0..<n {
            let key = Array(try r.readStr("a \(k.name) key"))
            fields.append(Field(key: key, value: try readFieldValue(&r)))
        }
        do { try checkDuplicateKeys(fields, in: "\"\(k.name)\"") } catch { throw envelopeError(at, error.message) }
        return fields
    }
}
