// The envelope in JSON: one Message <-> one JSON object (keys and their order are described in
// EnvelopeCodec.swift). Decoding is one pass of the JSON scanner; text fields and headers go
// into the message's one text block through a TextCollector.
import Glibc

enum JSONEnvelope {
    static func encode(_ m: Message, into w: inout ByteWriter) throws(OrchestraError) {
        try checkEncodable(m)
        w.reserve(160)
        w.put(0x7B)
        w.append("\"id\":")
        try JSONWriter.writeString(m.textStorage(.id) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "id")
        w.append(",\"type\":")
        try JSONWriter.writeString(m.textStorage(.type) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "type")
        if let ts = m.timestamp {
            w.append(",\"timestamp\":")
            JSONWriter.writeInt(ts, into: &w)
        }
        try writeText(m, .version, ",\"version\":", into: &w)
        try writeText(m, .source, ",\"source\":", into: &w)
        try writeText(m, .target, ",\"target\":", into: &w)
        try writeText(m, .correlationId, ",\"correlationId\":", into: &w)
        try writeText(m, .replyTo, ",\"replyTo\":", into: &w)
        if let ttl = m.ttl {
            w.append(",\"ttl\":")
            JSONWriter.writeInt(ttl, into: &w)
        }
        if let p = m.priority {
            w.append(",\"priority\":")
            JSONWriter.writeUInt(UInt64(p.rawValue), into: &w)
        }
        switch m.contentType {
        case .json: break
        case .text: w.append(",\"contentType\":\"text/plain\"")
        case .binary: w.append(",\"contentType\":\"application/octet-stream\"")
        }
        let headerCount = m.headerCount
        if headerCount > 0 {
            w.append(",\"headers\":{")
            for i in 0..<headerCount {
                if i > 0 { w.append(0x2C) }
                try writeHeader(m.headerStorage(at: i), into: &w)
            }
            w.append(0x7D)
        }
        let hasOthers = m.metadata.contains { $0.key != metaCompressed && $0.key != metaEncrypted }
        if m.compressed || m.encrypted || hasOthers {
            w.append(",\"metadata\":{")
            var first = true
            if m.compressed { w.append("\"compressed\":true"); first = false }
            if m.encrypted {
                if !first { w.append(0x2C) }
                w.append("\"encrypted\":true"); first = false
            }
            for f in m.metadata where f.key != metaCompressed && f.key != metaEncrypted {
                if !first { w.append(0x2C) }
                first = false
                try writeField(f, into: &w, what: "metadata")
            }
            w.append(0x7D)
        }
        for e in m.extensions {
            w.append(0x2C)
            try writeField(e, into: &w, what: "extension")
        }
        if let p = m.payload {
            w.append(",\"payload\":")
            if m.compressed || m.encrypted || m.contentType == .binary {
                w.reserve(Base64.encodedCount(p.count) + 2)
                w.put(0x22)
                p.withUnsafeBytes { Base64.encode($0, into: &w) }
                w.put(0x22)
            } else if m.contentType == .text {
                try JSONWriter.writeString(p, into: &w, what: "text payload")
            } else if m.payloadForm != .bytes {
                // Checked when it was decoded or set, or the JSON text of a checked MessagePack payload.
                w.append(p)
            } else {
                try appendValidatedJSON(p, into: &w, what: "JSON payload")
            }
        }
        w.append(0x7D)
    }

    /// `key` (`,"name":`) and the value of text field `f`, when the message has it.
    @inline(__always)
    private static func writeText(_ m: Message, _ f: TextField, _ key: StaticString, into w: inout ByteWriter) throws(OrchestraError) {
        guard let v = m.textStorage(f) else { return }
        w.append(key)
        try JSONWriter.writeString(v, into: &w, what: f.jsonName)
    }

    private static func writeField(_ f: Field, into w: inout ByteWriter, what: StaticString) throws(OrchestraError) {
        try JSONWriter.writeString(f.key, into: &w, what: "\(what) key")
        w.append(0x3A)
        switch f.value {
        case .string(let s):
            try JSONWriter.writeString(s, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        case .json(let j):
            try appendValidatedJSON(j, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        }
    }

    private static func writeHeader(_ h: (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool), into w: inout ByteWriter) throws(OrchestraError) {
        try JSONWriter.writeString(h.key, into: &w, what: "header key")
        w.append(0x3A)
        if h.isJSON {
            try appendValidatedJSON(h.value, into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        } else {
            try JSONWriter.writeString(h.value, into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        }
    }

    private static func appendValidatedJSON(_ j: [UInt8], into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        try withBytes(j) { (b) throws(OrchestraError) in try appendValidatedJSON(b, into: &w, what: what()) }
    }

    private static func appendValidatedJSON(_ j: UnsafeRawBufferPointer, into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        do {
            try JSONValidator.validate(j, limits: DecodeLimits(maxSize: .max, maxDepth: DecodeLimits.depthCeiling))
        } catch {
            throw OrchestraError(.invalidArgument, "cannot encode \(what()): \(error.message)")
        }
        w.append(j)
    }

    // MARK: Decoding

    /// Decodes one JSON envelope. One pass over the input: UTF-8 is checked as strings are
    /// scanned (outside strings a non-ASCII byte is a syntax error anyway), so a successful
    /// scan has seen valid UTF-8 throughout; when the scan fails, invalid UTF-8 anywhere in
    /// the input is reported first, as it was when a separate pass checked it first.
    static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        do {
            return try decodeScanningUTF8(bytes, limits: limits)
        } catch {
            if let bad = UTF8Validator.firstInvalidOffset(bytes) {
                throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
            }
            throw error
        }
    }

    private static func decodeScanningUTF8(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        try TextCollector.collecting { (text) throws(OrchestraError) in try decodeBody(bytes, limits: limits, text: &text) }
    }

    private static func decodeBody(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits, text: inout TextCollector) throws(OrchestraError) -> Message {
        let maxDepth = limits.effectiveDepth
        var s = JSONScanner(bytes, maxDepth: maxDepth, checksUTF8: true)
        s.skipWhitespace()
        guard try s.peek("a JSON object") == 0x7B else {
            throw s.fail("the envelope must be a JSON object")
        }
        if maxDepth < 1 { throw s.tooDeep() }
        s.pos += 1

        var timestamp: Int64? = nil, ttl: Int64? = nil
        var priority: Priority? = nil
        var contentType = ContentType.json
        var metadata: [Field] = []
        var compressed = false, encrypted = false
        var extensions: [Field] = []
        var payloadRange: Range<Int>?
        var seen: UInt32 = 0

        s.skipWhitespace()
        if try s.peek("'}' or a key") == 0x7D {
            s.pos += 1
        } else {
            while true {
                s.skipWhitespace()
                guard try s.peek("an object key") == 0x22 else { throw s.fail("expected a string as object key") }
                let keyPos = s.pos
                let (ks, ke, escaped) = try s.scanStringRaw()
                try s.expect(0x3A, "after object key")
                s.skipWhitespace()
                let valuePos = s.pos
                let decodedKey = escaped ? JSONScanner.unescaped(UnsafeRawBufferPointer(rebasing: bytes[ks..<ke])) : nil
                let k: EnvelopeKey?
                if let decodedKey { k = EnvelopeKey.lookup(decodedKey) }
                else { k = EnvelopeKey.lookup(UnsafeRawBufferPointer(rebasing: bytes[ks..<ke])) }
                guard let k else {
                    try s.skipValue(depth: 1)
                    extensions.append(Field(key: decodedKey ?? makeBytes(bytes, ks, ke),
                                            value: .json(makeBytes(bytes, valuePos, s.pos))))
                    if try s.consumeObjectEnd() { break } else { continue }
                }
                let bit: UInt32 = 1 << UInt32(k.rawValue)
                if seen & bit != 0 { throw OrchestraError(.parse, "invalid envelope at byte \(keyPos): duplicate key \"\(k.name)\"") }
                seen |= bit
                switch k {
                case .id: try collectText(&s, k, .id, &text)
                case .type: try collectText(&s, k, .type, &text)
                case .version: try collectText(&s, k, .version, &text)
                case .source: try collectText(&s, k, .source, &text)
                case .target: try collectText(&s, k, .target, &text)
                case .correlationId: try collectText(&s, k, .correlationId, &text)
                case .replyTo: try collectText(&s, k, .replyTo, &text)
                case .timestamp:
                    timestamp = try readInt(&s, k)
                case .ttl:
                    ttl = try EnvelopeFields.ttl(readInt(&s, k), at: valuePos)
                case .priority:
                    priority = try EnvelopeFields.priority(readInt(&s, k), at: valuePos)
                case .contentType:
                    let v = try readText(&s, k)
                    contentType = try EnvelopeFields.contentType(v, at: valuePos)
                case .headers:
                    try collectHeaders(&s, k, &text)
                case .metadata:
                    let fields = try readFields(&s, k)
                    metadata.reserveCapacity(fields.count)
                    for field in fields {
                        if field.key == metaCompressed || field.key == metaEncrypted {
                            let flag: Bool
                            switch field.value {
                            case .json(let j) where j == trueBytes: flag = true
                            case .json(let j) where j == falseBytes: flag = false
                            default:
                                throw envelopeError(valuePos, "\"metadata.\(String(decoding: field.key, as: UTF8.self))\" must be true or false")
                            }
                            if field.key == metaCompressed { compressed = flag } else { encrypted = flag }
                        } else {
                            metadata.append(field)
                        }
                    }
                case .payload:
                    try s.skipValue(depth: 1)
                    payloadRange = valuePos..<s.pos
                }
                if try s.consumeObjectEnd() { break }
            }
        }
        try s.expectEnd()

        // The checks of EnvelopeFields.checkComplete, in its order.
        if !text.has(.id) { throw OrchestraError(.parse, "invalid envelope: missing required field \"id\"") }
        if !text.has(.type) { throw OrchestraError(.parse, "invalid envelope: missing required field \"type\"") }
        try checkDuplicateKeys(extensions, in: "the envelope")

        var payload: [UInt8]? = nil
        var checkedJSON = false
        if let range = payloadRange {
            let start = range.lowerBound
            var p = JSONScanner(bytes, maxDepth: maxDepth, pos: start)
            let first = bytes[start]
            if compressed || encrypted || contentType != .json {
                let what = compressed || encrypted
                    ? "a compressed or encrypted payload must be a base64 string"
                    : contentType == .text ? "a text/plain payload must be a JSON string"
                    : "an application/octet-stream payload must be a base64 string"
                guard first == 0x22 else { throw envelopeError(start, what) }
                let text = try p.readString()
                if contentType == .text && !(compressed || encrypted) {
                    payload = text
                } else {
                    switch text.withUnsafeBytes({ Base64.decode($0) }) {
                    case .success(let data): payload = data
                    case .failure(let e):
                        throw envelopeError(start, "payload is not valid base64 (\(e.reason) at character \(e.offset))")
                    }
                }
            } else {
                payload = makeBytes(bytes, range.lowerBound, range.upperBound)
                // Validated above (UTF-8, RFC 8259, depth <= the ceiling): the encoder may copy it.
                checkedJSON = true
            }
        }
        return Message(
            text: MessageText(block: text.makeBlock()), timestamp: timestamp, ttl: ttl, priority: priority,
            payload: payload, payloadForm: checkedJSON ? .checkedJSON : .bytes, contentType: contentType,
            compressed: compressed, encrypted: encrypted, metadata: metadata, extensions: extensions)
    }

    /// Reads the string value of text field `k` into the collector, with the checks of
    /// `readText` (a string, at most `maxTextFieldLength` bytes unescaped, id/type not empty).
    @inline(__always)
    private static func collectText(_ s: inout JSONScanner, _ k: EnvelopeKey, _ field: TextField, _ text: inout TextCollector) throws(OrchestraError) {
        let at = s.pos
        guard try s.peek("a value") == 0x22 else {
            throw envelopeError(at, "\"\(k.name)\" must be a string, got \(describeJSON(s.bytes[at]))")
        }
        let (from, to) = try text.appendString(&s)
        try EnvelopeFields.checkText(count: to - from, k, at: at)
        text.setField(field, from, to)
    }

    /// Reads the `headers` object into the collector, with the checks of `readFields`.
    private static func collectHeaders(_ s: inout JSONScanner, _ k: EnvelopeKey, _ text: inout TextCollector) throws(OrchestraError) {
        let at = s.pos
        guard try s.peek("a value") == 0x7B else {
            throw envelopeError(at, "\"\(k.name)\" must be an object, got \(describeJSON(s.bytes[at]))")
        }
        if s.maxDepth < 2 { throw s.tooDeep() }
        s.pos += 1
        s.skipWhitespace()
        if try s.peek("'}' or a key") == 0x7D { s.pos += 1; return }
        while true {
            s.skipWhitespace()
            guard try s.peek("an object key") == 0x22 else { throw s.fail("expected a string as object key") }
            let (ks, ke) = try text.appendString(&s)
            try s.expect(0x3A, "after object key")
            s.skipWhitespace()
            let valuePos = s.pos
            if try s.peek("a value") == 0x22 {
                let (vs, ve) = try text.appendString(&s)
                text.addHeader(ks, ke, vs, ve, isJSON: false)
            } else {
                try s.skipValue(depth: 2)
                let vs = text.append(UnsafeRawBufferPointer(rebasing: s.bytes[valuePos..<s.pos]))
                text.addHeader(ks, ke, vs, text.count, isJSON: true)
            }
            s.skipWhitespace()
            if try s.consumeObjectEnd() { break }
        }
        if let dup = text.firstDuplicateHeaderKey() {
            throw envelopeError(at, "duplicate key \"\(String(decoding: dup, as: UTF8.self))\" in \"\(k.name)\"")
        }
    }

    static func envelopeError(_ at: Int, _ message: String) -> OrchestraError {
        EnvelopeFields.error(at, message)
    }

    /// A string value for key `k` (unescaped), with the text-field length limit.
    private static func readText(_ s: inout JSONScanner, _ k: EnvelopeKey) throws(OrchestraError) -> [UInt8] {
        let at = s.pos
        guard try s.peek("a value") == 0x22 else {
            throw envelopeError(at, "\"\(k.name)\" must be a string, got \(describeJSON(s.bytes[at]))")
        }
        let v = try s.readString()
        try EnvelopeFields.checkText(count: v.count, k, at: at)
        return v
    }

    /// An integer value in Int64 range; fractions and exponents are rejected.
    @inline(__always)
    private static func readInt(_ s: inout JSONScanner, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        if let v = s.scanShortInteger() { return v }
        return try readIntSlow(&s, k)
    }

    @inline(never)
    private static func readIntSlow(_ s: inout JSONScanner, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        let at = s.pos
        let c = try s.peek("a value")
        guard c == 0x2D || isJSONDigit(c) else {
            throw envelopeError(at, "\"\(k.name)\" must be an integer, got \(describeJSON(c))")
        }
        let isInteger = try s.scanNumber()
        let lexeme = UnsafeRawBufferPointer(rebasing: s.bytes[at..<s.pos])
        guard isInteger else {
            throw envelopeError(at, "\"\(k.name)\" must be an integer, got \(excerpt(lexeme)) (fractions and exponents are not allowed)")
        }
        guard let v = parseInt64(lexeme) else {
            throw envelopeError(at, "\"\(k.name)\" \(excerpt(lexeme)) is out of the 64-bit integer range")
        }
        return v
    }

    /// An object of fields: string values become `.string`, others `.json` with their raw text.
    private static func readFields(_ s: inout JSONScanner, _ k: EnvelopeKey) throws(OrchestraError) -> [Field] {
        let at = s.pos
        guard try s.peek("a value") == 0x7B else {
            throw envelopeError(at, "\"\(k.name)\" must be an object, got \(describeJSON(s.bytes[at]))")
        }
        if s.maxDepth < 2 { throw s.tooDeep() }
        s.pos += 1
        var fields: [Field] = []
        s.skipWhitespace()
        if try s.peek("'}' or a key") == 0x7D { s.pos += 1; return fields }
        while true {
            s.skipWhitespace()
            guard try s.peek("an object key") == 0x22 else { throw s.fail("expected a string as object key") }
            let key = try s.readString()
            try s.expect(0x3A, "after object key")
            s.skipWhitespace()
            let valuePos = s.pos
            if try s.peek("a value") == 0x22 {
                fields.append(Field(key: key, value: .string(try s.readString())))
            } else {
                try s.skipValue(depth: 2)
                fields.append(Field(key: key, value: .json(makeBytes(s.bytes, valuePos, s.pos))))
            }
            s.skipWhitespace()
            if try s.consumeObjectEnd() { break }
        }
        do {
            try checkDuplicateKeys(fields, in: "\"\(k.name)\"")
        } catch {
            throw envelopeError(at, error.message)
        }
        return fields
    }
}

let trueBytes: [UInt8] = Array("true".utf8)
let falseBytes: [UInt8] = Array("false".utf8)

/// What a JSON value starting with `c` is, for error messages.
func describeJSON(_ c: UInt8) -> String {
    switch c {
    case 0x7B: return "an object"
    case 0x5B: return "an array"
    case 0x22: return "a string"
    case 0x74, 0x66: return "a boolean"
    case 0x6E: return "null"
    case 0x2D, 0x30...0x39: return "a number"
    default: return "'\(printable(c))'"
    }
}
