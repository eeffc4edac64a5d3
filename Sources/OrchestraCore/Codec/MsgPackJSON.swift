// JSON <-> MessagePack: JSON-typed values of the envelope (a JSON payload, .json header and
// metadata values, extensions) travel in MessagePack as native values. JSON text goes in
// through the JSON scanner; MessagePack values come out as JSON text through the JSON writer.

// MARK: - JSON text -> MessagePack

extension JSONScanner {
    /// Transcodes the JSON value at `pos` (whitespace skipped) into MessagePack. Integers must
    /// fit Int64/UInt64; other numbers become float64. Containers get a placeholder header
    /// that is shrunk to the smallest form once the count is known.
    mutating func transcodeToMsgPack(depth: Int, into w: inout ByteWriter) throws(OrchestraError) {
        let c = try peek("a value")
        switch c {
        case 0x7B, 0x5B:
            let isMap = c == 0x7B
            if depth + 1 > maxDepth { throw tooDeep() }
            pos += 1
            let headerPos = w.count
            w.reserve(5)
            for _ in 0..<5 { w.put(0) }
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
                        try transcodeString(into: &w)
                        try expect(0x3A, "after object key")
                        skipWhitespace()
                    }
                    try transcodeToMsgPack(depth: depth + 1, into: &w)
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
            try MsgPackWriter.patchContainerHeader(map: isMap, count: count, at: headerPos, in: &w)
        case 0x22:
            try transcodeString(into: &w)
        case 0x2D, 0x30...0x39:
            let start = pos
            let isInteger = try scanNumber()
            let lexeme = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
            if isInteger {
                if lexeme[0] == 0x2D {
                    guard let v = parseInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeInt(v, into: &w)
                } else {
                    guard let v = parseUInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeUInt(v, into: &w)
                }
            } else {
                let text = String(decoding: lexeme, as: UTF8.self)
                guard let d = Double(text), d.isFinite else {
                    throw OrchestraError(.invalidArgument, "number \(excerpt(lexeme)) is out of the float64 range")
                }
                MsgPackWriter.writeDouble(d, into: &w)
            }
        case 0x74: try scanLiteral("true"); w.append(0xC3)
        case 0x66: try scanLiteral("false"); w.append(0xC2)
        case 0x6E: try scanLiteral("null"); w.append(0xC0)
        default: throw fail("unexpected character '\(printable(c))', expected a value")
        }
    }

    /// The JSON string at `pos` as a MessagePack str. Without escapes it is copied straight
    /// from the input. With escapes it is unescaped straight into `w`, after a header sized
    /// for its raw length (the unescaped form is never longer); the header is shrunk when the
    /// unescaped length needs a smaller one.
    private mutating func transcodeString(into w: inout ByteWriter) throws(OrchestraError) {
        let (start, end, escaped) = try scanStringRaw()
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        if !escaped {
            try MsgPackWriter.writeValidStr(raw, into: &w)
            return
        }
        let header = MsgPackReader.smallestStrHeader(raw.count)
        let headerPos = w.count
        w.reserve(header + raw.count)
        w.advance(header)
        JSONScanner.unescapeChecked(raw, into: &w)
        let n = w.count - headerPos - header
        if n > 0xFFFF_FFFF {
            throw OrchestraError(.tooBig, "string of \(n) bytes exceeds MessagePack's 4 GiB limit")
        }
        let smallest = MsgPackReader.smallestStrHeader(n)
        if smallest < header { w.remove(header - smallest, at: headerPos + smallest) }
        switch smallest {
        case 1:
            w.set(0xA0 | UInt8(n), at: headerPos)
        case 2:
            w.set(0xD9, at: headerPos); w.set(UInt8(n), at: headerPos + 1)
        case 3:
            w.set(0xDA, at: headerPos)
            w.set(UInt8(n >> 8), at: headerPos + 1); w.set(UInt8(n & 0xFF), at: headerPos + 2)
        default:
            w.set(0xDB, at: headerPos)
            w.set(UInt8(n >> 24 & 0xFF), at: headerPos + 1); w.set(UInt8(n >> 16 & 0xFF), at: headerPos + 2)
            w.set(UInt8(n >> 8 & 0xFF), at: headerPos + 3); w.set(UInt8(n & 0xFF), at: headerPos + 4)
        }
    }
}

/// Transcodes one complete JSON text into one MessagePack value (written to `w`).
func jsonToMsgPack(_ json: [UInt8], into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
    do {
        try withBytes(json) { (b) throws(OrchestraError) in
            if let bad = UTF8Validator.firstInvalidOffset(b) {
                throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
            }
            var s = JSONScanner(b, maxDepth: DecodeLimits.depthCeiling)
            s.skipWhitespace()
            try s.transcodeToMsgPack(depth: 0, into: &w)
            try s.expectEnd()
        }
    } catch {
        throw OrchestraError(.invalidArgument, "cannot encode \(what()): \(error.message)")
    }
}

func jsonToMsgPack(_ json: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
    var w = ByteWriter(capacity: json.count + 16)
    try jsonToMsgPack(json, into: &w, what: what)
    out.append(contentsOf: w.bytes)
}

// MARK: - MessagePack -> JSON text

extension MsgPackReader {
    /// The next value, checked as a JSON value must be: no bin or ext, finite floats, UTF-8
    /// strs, containers within the depth limit (`depth` is that of the value's container).
    /// Both `transcodeToJSON` and `checkJSONValue` read through it, so they fail alike.
    @inline(__always)
    private mutating func nextJSONValue(depth: Int) throws(OrchestraError) -> Value {
        let start = pos
        let v = try next()
        switch v {
        case .float32(let f):
            guard f.isFinite else { throw fail("float \(f) has no JSON form", at: start) }
        case .float64(let d):
            guard d.isFinite else { throw fail("float \(d) has no JSON form", at: start) }
        case .str(let s):
            if let bad = UTF8Validator.firstInvalidOffset(s) {
                throw fail("str is not valid UTF-8", at: pos - s.count + bad)
            }
        case .bin:
            throw fail("bin where a JSON value is expected", at: start)
        case .ext(let t, _):
            throw fail("ext type \(t) where a JSON value is expected", at: start)
        case .array, .map:
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
        case .null, .bool, .int, .uint:
            break
        }
        return v
    }

    /// Transcodes one value into JSON text. bin/ext, non-str keys, NaN/Infinity are errors.
    mutating func transcodeToJSON(depth: Int, into w: inout ByteWriter) throws(OrchestraError) {
        switch try nextJSONValue(depth: depth) {
        case .null: w.append("null")
        case .bool(let v): if v { w.append("true") } else { w.append("false") }
        case .int(let v): JSONWriter.writeInt(v, into: &w)
        case .uint(let v): JSONWriter.writeUInt(v, into: &w)
        case .float32(let f): w.append(f.description.utf8)
        case .float64(let d): w.append(d.description.utf8)
        case .str(let s): JSONWriter.writeValidString(s, into: &w)
        case .bin, .ext: break   // refused by nextJSONValue
        case .array(let n):
            w.append(0x5B)
            for i in 0..<n {
                if i > 0 { w.append(0x2C) }
                try transcodeToJSON(depth: depth + 1, into: &w)
            }
            w.append(0x5D)
        case .map(let n):
            w.append(0x7B)
            for i in 0..<n {
                if i > 0 { w.append(0x2C) }
                let k = try readStr("a map key")
                JSONWriter.writeValidString(k, into: &w)
                w.append(0x3A)
                try transcodeToJSON(depth: depth + 1, into: &w)
            }
            w.append(0x7D)
        }
    }

    /// One value as JSON text in a new array of exactly its size (for the small values of
    /// headers, metadata and extensions).
    mutating func transcodeToJSON(depth: Int) throws(OrchestraError) -> [UInt8] {
        var w = ByteWriter(capacity: min(remaining, 1 << 16) * 9 / 8 + 16)
        try transcodeToJSON(depth: depth, into: &w)
        return makeBytes(w.bytes)
    }

    /// One value as JSON text in a new array of `capacity` bytes, written straight into the
    /// array's storage (for a large payload: no second allocation and copy); only a text that
    /// outgrows `capacity` is copied from the writer's own memory.
    mutating func transcodeToJSON(depth: Int, capacity: Int) throws(OrchestraError) -> [UInt8] {
        let cap = max(capacity, 16)
        var failure: OrchestraError? = nil
        var spill: [UInt8]? = nil
        let text = [UInt8](unsafeUninitializedCapacity: cap) { buf, initialized in
            var w = ByteWriter(lending: UnsafeMutableRawPointer(buf.baseAddress), capacity: cap)
            do throws(OrchestraError) {
                try transcodeToJSON(depth: depth, into: &w)
            } catch {
                failure = error
                initialized = 0
                return
            }
            if w.isInLentBuffer {
                initialized = w.count
            } else {
                // Too big for the guess: the bytes are in the writer's memory; copied below.
                initialized = 0
                spill = makeBytes(w.bytes)
            }
        }
        if let failure { throw failure }
        if let spill { return spill }
        return text
    }

    /// Checks one value exactly as `transcodeToJSON` does (the same errors at the same
    /// offsets) without writing anything. Returns whether the value is in the form
    /// `jsonToMsgPack` writes for its JSON text (smallest int, str, array and map headers;
    /// float64, as float32 becomes float64 through JSON), so that copying it gives the same
    /// bytes as transcoding it to JSON and back.
    mutating func checkJSONValue(depth: Int) throws(OrchestraError) -> Bool {
        let start = pos
        switch try nextJSONValue(depth: depth) {
        case .null, .bool, .uint, .float64: return true
        case .int(let v): return MsgPackReader.isSmallestInt(v, first: bytes[start], size: pos - start)
        case .float32: return false
        case .str(let s): return pos - s.count - start == MsgPackReader.smallestStrHeader(s.count)
        case .bin, .ext: return false   // refused by nextJSONValue
        case .array(let n):
            var smallest = pos - start == MsgPackReader.smallestContainerHeader(n)
            for _ in 0..<n {
                if !(try checkJSONValue(depth: depth + 1)) { smallest = false }
            }
            return smallest
        case .map(let n):
            var smallest = pos - start == MsgPackReader.smallestContainerHeader(n)
            for _ in 0..<n {
                let keyStart = pos
                let k = try readStr("a map key")
                if pos - k.count - keyStart != MsgPackReader.smallestStrHeader(k.count) { smallest = false }
                if !(try checkJSONValue(depth: depth + 1)) { smallest = false }
            }
            return smallest
        }
    }
}
