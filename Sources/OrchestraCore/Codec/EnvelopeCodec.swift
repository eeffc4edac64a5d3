// The envelope codec: one Message <-> JSON text or MessagePack bytes.
//
// JSON object keys (camelCase, as docs/protocol.md names them), written in this order:
//   id, type, timestamp, version, source, target, correlationId, replyTo, ttl, priority,
//   contentType, headers, metadata, <extensions>, payload
// Optional fields are written only when present; contentType only when not application/json;
// headers only when non-empty; metadata only when a flag is set or other entries exist. So a
// decoded message re-encodes to an equal object, except that empty `headers`/`metadata`
// objects and `false` compressed/encrypted flags are dropped.
import Glibc

/// The wire format of an encoded envelope.
public enum WireFormat: Int32, Sendable, CaseIterable {
    case json = 0, msgpack = 1
}

public enum EnvelopeCodec {
    /// Appends the encoded envelope to `out`. Throws `.invalidArgument` for a message that
    /// cannot be encoded (empty id/type, invalid UTF-8, invalid JSON in a JSON field).
    public static func encode(_ m: Message, format: WireFormat, into out: inout [UInt8]) throws(OrchestraError) {
        var w = ByteWriter(capacity: estimatedSize(m))
        try encode(m, format: format, into: &w)
        out.append(contentsOf: w.bytes)
    }

    /// Writes the encoded envelope to `w` (nothing is written when it throws... except bytes
    /// already written before the failure; callers discard the writer then).
    public static func encode(_ m: Message, format: WireFormat, into w: inout ByteWriter) throws(OrchestraError) {
        switch format {
        case .json: try JSONEnvelope.encode(m, into: &w)
        case .msgpack: try MsgPackEnvelope.encode(m, into: &w)
        }
    }

    /// A first guess at the encoded size (for the initial allocation).
    public static func estimatedSize(_ m: Message) -> Int {
        256 + m.storedPayloadCount * 4 / 3
    }

    public static func encode(_ m: Message, format: WireFormat) throws(OrchestraError) -> [UInt8] {
        var out = [UInt8]()
        try encode(m, format: format, into: &out)
        return out
    }

    /// Decodes one envelope. Throws `.parse` (malformed input, with byte offset) or `.tooBig`
    /// (size/depth limits).
    public static func decode(_ bytes: UnsafeRawBufferPointer, format: WireFormat, limits: DecodeLimits = .default) throws(OrchestraError) -> Message {
        if bytes.count > limits.maxSize {
            throw OrchestraError(.tooBig, "envelope is \(bytes.count) bytes; the limit is \(limits.maxSize)")
        }
        switch format {
        case .json: return try JSONEnvelope.decode(bytes, limits: limits)
        case .msgpack: return try MsgPackEnvelope.decode(bytes, limits: limits)
        }
    }

    public static func decode(_ bytes: [UInt8], format: WireFormat, limits: DecodeLimits = .default) throws(OrchestraError) -> Message {
        try withBytes(bytes) { (b) throws(OrchestraError) -> Message in
            try decode(b, format: format, limits: limits)
        }
    }
}

/// The envelope's known top-level keys, in encoding order.
enum EnvelopeKey: Int, CaseIterable {
    case id, type, timestamp, version, source, target, correlationId, replyTo, ttl, priority,
         contentType, headers, metadata, payload

    var name: String {
        switch self {
        case .id: return "id"
        case .type: return "type"
        case .timestamp: return "timestamp"
        case .version: return "version"
        case .source: return "source"
        case .target: return "target"
        case .correlationId: return "correlationId"
        case .replyTo: return "replyTo"
        case .ttl: return "ttl"
        case .priority: return "priority"
        case .contentType: return "contentType"
        case .headers: return "headers"
        case .metadata: return "metadata"
        case .payload: return "payload"
        }
    }

    static let names: [[UInt8]] = allCases.map { Array($0.name.utf8) }

    @inline(__always)
    static func lookup(_ key: UnsafeRawBufferPointer) -> EnvelopeKey? {
        guard let p = key.baseAddress else { return nil }
        @inline(__always) func eq(_ s: StaticString) -> Bool { memcmp(p, s.utf8Start, s.utf8CodeUnitCount) == 0 }
        switch key.count {
        case 2: return eq("id") ? .id : nil
        case 3: return eq("ttl") ? .ttl : nil
        case 4: return eq("type") ? .type : nil
        case 6: return eq("source") ? .source : eq("target") ? .target : nil
        case 7:
            switch p.load(as: UInt8.self) {
            case 0x76: return eq("version") ? .version : nil
            case 0x72: return eq("replyTo") ? .replyTo : nil
            case 0x68: return eq("headers") ? .headers : nil
            case 0x70: return eq("payload") ? .payload : nil
            default: return nil
            }
        case 8: return eq("priority") ? .priority : eq("metadata") ? .metadata : nil
        case 9: return eq("timestamp") ? .timestamp : nil
        case 11: return eq("contentType") ? .contentType : nil
        case 13: return eq("correlationId") ? .correlationId : nil
        default: return nil
        }
    }

    static func lookup(_ key: [UInt8]) -> EnvelopeKey? {
        key.withUnsafeBytes { lookup($0) }
    }
}

let metaCompressed: [UInt8] = Array("compressed".utf8)
let metaEncrypted: [UInt8] = Array("encrypted".utf8)

/// Throws `.parse` naming the first duplicate key of `fields` (hash set past 16 entries, so
/// hostile inputs with many keys stay linear).
func checkDuplicateKeys(_ fields: [Field], in what: @autoclosure () -> String) throws(OrchestraError) {
    if fields.count <= 16 {
        for i in fields.indices {
            for j in (i + 1)..<fields.count where fields[i].key == fields[j].key {
                throw OrchestraError(.parse, "duplicate key \"\(String(decoding: fields[j].key, as: UTF8.self))\" in \(what())")
            }
        }
        return
    }
    var seen = Set<[UInt8]>(minimumCapacity: fields.count)
    for f in fields where !seen.insert(f.key).inserted {
        throw OrchestraError(.parse, "duplicate key \"\(String(decoding: f.key, as: UTF8.self))\" in \(what())")
    }
}

/// Checks what the encoders need of a message before writing anything.
func checkEncodable(_ m: Message) throws(OrchestraError) {
    if (m.textStorage(.id)?.count ?? 0) == 0 { throw OrchestraError(.invalidArgument, "cannot encode: id is empty") }
    if (m.textStorage(.type)?.count ?? 0) == 0 { throw OrchestraError(.invalidArgument, "cannot encode: type is empty") }
    if let ttl = m.ttl, ttl < 0 { throw OrchestraError(.invalidArgument, "cannot encode: ttl \(ttl) is negative") }
    for e in m.extensions where EnvelopeKey.lookup(e.key) != nil {
        throw OrchestraError(.invalidArgument, "cannot encode: extension \"\(String(decoding: e.key, as: UTF8.self))\" collides with an envelope field")
    }
}

// MARK: - JSON

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
        if let v = m.textStorage(.version) {
            w.append(",\"version\":")
            try JSONWriter.writeString(v, into: &w, what: "version")
        }
        if let v = m.textStorage(.source) {
            w.append(",\"source\":")
            try JSONWriter.writeString(v, into: &w, what: "source")
        }
        if let v = m.textStorage(.target) {
            w.append(",\"target\":")
            try JSONWriter.writeString(v, into: &w, what: "target")
        }
        if let v = m.textStorage(.correlationId) {
            w.append(",\"correlationId\":")
            try JSONWriter.writeString(v, into: &w, what: "correlationId")
        }
        if let v = m.textStorage(.replyTo) {
            w.append(",\"replyTo\":")
            try JSONWriter.writeString(v, into: &w, what: "replyTo")
        }
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

    /// Bytes of stack lent to the text collector (text, then header records); more moves to
    /// the heap. Kept at or under the standard library's 1 KiB stack-allocation threshold.
    static let scratchText = 512, scratchRecords = 256

    private static func decodeScanningUTF8(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        let r: Result<Message, OrchestraError> = withUnsafeTemporaryAllocation(
            byteCount: scratchText + scratchRecords, alignment: 16
        ) { scratch in
            var text = TextCollector(scratch)
            do throws(OrchestraError) {
                return .success(try decodeBody(bytes, limits: limits, text: &text))
            } catch {
                return .failure(error)
            }
        }
        return try r.get()
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
                var decodedKey: [UInt8]? = nil
                if escaped {
                    var k = JSONScanner(bytes, maxDepth: maxDepth, pos: keyPos)
                    decodedKey = try k.readString()
                }
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
        let count = to - from
        if count > Message.maxTextFieldLength {
            throw OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        if count == 0 && (k == .id || k == .type) {
            throw envelopeError(at, "\"\(k.name)\" must not be empty")
        }
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
        if v.count > Message.maxTextFieldLength {
            throw OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(v.count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        if v.isEmpty && (k == .id || k == .type) {
            throw envelopeError(at, "\"\(k.name)\" must not be empty")
        }
        return v
    }

    /// An integer value in Int64 range; fractions and exponents are rejected.
    @inline(__always)
    private static func readInt(_ s: inout JSONScanner, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        let at = s.pos
        // Fast path: -?0 or -?[1-9] with at most 17 more digits (below 10^18, so no overflow),
        // ending where a number must end. Anything else takes the full path below.
        let n = s.bytes.count
        var i = at
        let negative = i < n && s.bytes[i] == 0x2D
        if negative { i += 1 }
        if i < n, case let d0 = s.bytes[i] &- 0x30, d0 < 10 {
            var v = UInt64(d0)
            i += 1
            if d0 != 0 {
                let limit = min(n, i + 17)
                while i < limit {
                    let d = s.bytes[i] &- 0x30
                    if d >= 10 { break }
                    v = v &* 10 &+ UInt64(d)
                    i += 1
                }
            }
            if i < n && endsNumber(s.bytes[i]) {
                s.pos = i
                return negative ? -Int64(v) : Int64(v)
            }
        }
        // A fraction, exponent, leading zero, long number or an error.
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

extension JSONScanner {
    /// After an object member: consumes ',' (returns false) or '}' (returns true).
    @inline(__always)
    mutating func consumeObjectEnd() throws(OrchestraError) -> Bool {
        skipWhitespace()
        if pos < bytes.count {
            let c = bytes[pos]
            if c == 0x2C { pos += 1; return false }
            if c == 0x7D { pos += 1; return true }
        }
        throw objectEndFailure()
    }

    @inline(never)
    func objectEndFailure() -> OrchestraError {
        guard pos < bytes.count else { return fail("unexpected end of input, expected ',' or '}'") }
        return fail("expected ',' or '}' after object member")
    }
}

/// Whether `c` cannot continue a number (so a digit run before it is the whole integer).
@inline(__always)
func endsNumber(_ c: UInt8) -> Bool {
    !(isJSONDigit(c) || c == 0x2E || c == 0x65 || c == 0x45)
}

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

/// Parses an integer lexeme (-?digits) into Int64; nil when out of range.
func parseInt64(_ lexeme: UnsafeRawBufferPointer) -> Int64? {
    var i = 0
    let negative = lexeme.count > 0 && lexeme[0] == 0x2D
    if negative { i = 1 }
    guard i < lexeme.count else { return nil }
    var mag: UInt64 = 0
    while i < lexeme.count {
        let d = lexeme[i] &- 0x30
        guard d < 10 else { return nil }
        let (m1, o1) = mag.multipliedReportingOverflow(by: 10)
        let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
        if o1 || o2 { return nil }
        mag = m2
        i += 1
    }
    if negative {
        if mag > UInt64(Int64.max) + 1 { return nil }
        return mag == UInt64(Int64.max) + 1 ? Int64.min : -Int64(mag)
    }
    return mag > UInt64(Int64.max) ? nil : Int64(mag)
}

/// Parses a non-negative integer lexeme into UInt64; nil when out of range.
func parseUInt64(_ lexeme: UnsafeRawBufferPointer) -> UInt64? {
    guard lexeme.count > 0 else { return nil }
    var mag: UInt64 = 0
    for b in lexeme {
        let d = b &- 0x30
        guard d < 10 else { return nil }
        let (m1, o1) = mag.multipliedReportingOverflow(by: 10)
        let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
        if o1 || o2 { return nil }
        mag = m2
    }
    return mag
}

/// The envelope fields both decoders collect, turned into a message in one place.
struct EnvelopeFields {
    var id: [UInt8]?, type: [UInt8]?
    var timestamp: Int64?, ttl: Int64?
    var priority: Priority?
    var version: [UInt8]?, source: [UInt8]?, target: [UInt8]?, correlationId: [UInt8]?, replyTo: [UInt8]?
    var contentType = ContentType.json
    var headers: [Field] = []
    var metadata: [Field] = []
    var compressed = false, encrypted = false
    var extensions: [Field] = []

    static func error(_ at: Int, _ message: String) -> OrchestraError {
        OrchestraError(.parse, "invalid envelope at byte \(at): \(message)")
    }

    static func ttl(_ v: Int64, at: Int) throws(OrchestraError) -> Int64 {
        if v < 0 { throw error(at, "\"ttl\" must not be negative (got \(v))") }
        return v
    }

    static func priority(_ v: Int64, at: Int) throws(OrchestraError) -> Priority {
        guard v >= 0 && v <= 3, let p = Priority(rawValue: UInt8(v)) else {
            throw error(at, "\"priority\" must be 0, 1, 2 or 3 (got \(v))")
        }
        return p
    }

    static func contentType(_ v: [UInt8], at: Int) throws(OrchestraError) -> ContentType {
        guard let ct = ContentType(mimeType: v) else {
            throw error(at, "unknown contentType \"\(String(decoding: v, as: UTF8.self))\" (expected application/json, text/plain or application/octet-stream)")
        }
        return ct
    }

    /// The message, with the payload the decoder read.
    func assemble(payload: [UInt8]?, payloadForm: PayloadForm) throws(OrchestraError) -> Message {
        guard let id else { throw OrchestraError(.parse, "invalid envelope: missing required field \"id\"") }
        guard let type else { throw OrchestraError(.parse, "invalid envelope: missing required field \"type\"") }
        try checkDuplicateKeys(extensions, in: "the envelope")
        let text = MessageText(
            id: id, type: type, version: version, source: source, target: target,
            correlationId: correlationId, replyTo: replyTo, headers: headers)
        return Message(
            text: text, timestamp: timestamp, ttl: ttl, priority: priority,
            payload: payload, payloadForm: payloadForm, contentType: contentType,
            compressed: compressed, encrypted: encrypted, metadata: metadata, extensions: extensions)
    }

    /// Checks the required fields before the payload is read (the errors keep their order:
    /// a missing id or type, or a duplicate extension, is reported before a bad payload).
    func checkComplete() throws(OrchestraError) {
        if id == nil { throw OrchestraError(.parse, "invalid envelope: missing required field \"id\"") }
        if type == nil { throw OrchestraError(.parse, "invalid envelope: missing required field \"type\"") }
        try checkDuplicateKeys(extensions, in: "the envelope")
    }
}

/// Collects the unescaped text of an envelope's text fields and headers while the JSON
/// decoder scans it, in scratch memory (stack first, heap past it), then makes the message's
/// one text buffer from it (`makeText`): one allocation for all of them, plus the header list.
struct TextCollector: ~Copyable {
    /// The text bytes.
    private var w: ByteWriter
    /// Header records, four Ints each: key start, key end, value start, value end (negative,
    /// as ~end, for a raw JSON value).
    private var records: ByteWriter
    private(set) var headerCount = 0
    /// Offsets of the text fields in `w` (by TextField raw value); start -1: absent.
    private var starts = SIMD8<Int>(repeating: -1), ends = SIMD8<Int>(repeating: 0)

    init(_ scratch: UnsafeMutableRawBufferPointer) {
        let t = JSONEnvelope.scratchText
        w = ByteWriter(lending: scratch.baseAddress, capacity: t)
        records = ByteWriter(lending: scratch.baseAddress.map { $0 + t }, capacity: scratch.count - t)
    }

    var count: Int { w.count }

    func has(_ f: TextField) -> Bool { starts[Int(f.rawValue)] >= 0 }

    mutating func setField(_ f: TextField, _ from: Int, _ to: Int) {
        starts[Int(f.rawValue)] = from
        ends[Int(f.rawValue)] = to
    }

    /// Appends bytes; returns where they start.
    @inline(__always)
    mutating func append(_ b: UnsafeRawBufferPointer) -> Int {
        let from = w.count
        w.append(b)
        return from
    }

    /// Scans the string at `s.pos` (checked as `scanStringRaw` checks it) and appends its
    /// unescaped bytes; returns their range.
    @inline(__always)
    mutating func appendString(_ s: inout JSONScanner) throws(OrchestraError) -> (Int, Int) {
        let open = s.pos
        let (start, end, escaped) = try s.scanStringRaw()
        let from = w.count
        if !escaped {
            let len = end - start
            if len <= 16 && start + 16 <= s.bytes.count {
                // Short (most fields): two 8-byte words, no memcpy call. The bytes copied past
                // the string are beyond `count`, so they are overwritten or ignored.
                w.reserve(16)
                let src = s.bytes.baseAddress.unsafelyUnwrapped + start
                let dst = w.base.unsafelyUnwrapped + w.count
                dst.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
                dst.storeBytes(of: src.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                w.advance(len)
            } else {
                w.append(UnsafeRawBufferPointer(rebasing: s.bytes[start..<end]))
            }
        } else {
            var again = JSONScanner(s.bytes, maxDepth: s.maxDepth, pos: open)
            w.append(try again.readString())
        }
        return (from, w.count)
    }

    mutating func addHeader(_ ks: Int, _ ke: Int, _ vs: Int, _ ve: Int, isJSON: Bool) {
        records.reserve(4 * MemoryLayout<Int>.size)
        put(ks); put(ke); put(vs); put(isJSON ? ~ve : ve)
        headerCount += 1
    }

    private mutating func put(_ v: Int) {
        withUnsafeBytes(of: v) { records.put($0.baseAddress!, $0.count) }
    }

    private func record(_ i: Int) -> (ks: Int, ke: Int, vs: Int, ve: Int, isJSON: Bool) {
        let p = records.bytes
        let o = i * 4 * MemoryLayout<Int>.size
        let s = MemoryLayout<Int>.size
        let ve = p.loadUnaligned(fromByteOffset: o + 3 * s, as: Int.self)
        return (p.loadUnaligned(fromByteOffset: o, as: Int.self),
                p.loadUnaligned(fromByteOffset: o + s, as: Int.self),
                p.loadUnaligned(fromByteOffset: o + 2 * s, as: Int.self),
                ve < 0 ? ~ve : ve, ve < 0)
    }

    private func key(_ i: Int) -> UnsafeRawBufferPointer {
        let r = record(i)
        return UnsafeRawBufferPointer(rebasing: w.bytes[r.ks..<r.ke])
    }

    /// The first header key that repeats an earlier one (pairwise up to 16 headers, a hash
    /// set past that, as `checkDuplicateKeys`).
    func firstDuplicateHeaderKey() -> [UInt8]? {
        let n = headerCount
        if n <= 16 {
            for i in 0..<n {
                for j in (i + 1)..<n where equalBytes(key(i), key(j)) { return makeBytes(key(j)) }
            }
            return nil
        }
        var seen = Set<[UInt8]>(minimumCapacity: n)
        for i in 0..<n {
            let k = makeBytes(key(i))
            if !seen.insert(k).inserted { return k }
        }
        return nil
    }

    /// The message's text: one `TextBlock` holding where every field and header is, and
    /// every collected byte (see `TextBlock` for the layout).
    func makeBlock() -> TextBlock {
        let n = headerCount
        let textOffset = TextBlockLayout.textOffset(headerCount: n)
        let text = w.bytes
        let block = TextBlock.create(minimumCapacity: textOffset + text.count) { _ in
            TextBlockHeader(headerCount: n)
        }
        block.withUnsafeMutablePointerToElements { e in
            let raw = UnsafeMutableRawPointer(e)
            let size = TextBlockLayout.intSize
            for i in 0..<TextBlockLayout.fieldSlots {
                let start = starts[i]
                raw.storeBytes(of: start, toByteOffset: 2 * i * size, as: Int.self)
                raw.storeBytes(of: start < 0 ? 0 : ends[i] - start, toByteOffset: (2 * i + 1) * size, as: Int.self)
            }
            for i in 0..<n {
                let r = record(i)
                let o = (2 * TextBlockLayout.fieldSlots + 4 * i) * size
                raw.storeBytes(of: r.ks, toByteOffset: o, as: Int.self)
                raw.storeBytes(of: r.ke - r.ks, toByteOffset: o + size, as: Int.self)
                raw.storeBytes(of: r.vs, toByteOffset: o + 2 * size, as: Int.self)
                let vc = r.ve - r.vs
                raw.storeBytes(of: r.isJSON ? ~vc : vc, toByteOffset: o + 3 * size, as: Int.self)
            }
            if let src = text.baseAddress, text.count > 0 {
                memcpy(raw + textOffset, src, text.count)
            }
        }
        return block
    }
}

// MARK: - Headers in MessagePack

extension MsgPackWriter {
    /// A header: its key, then its value (a string, or a JSON value transcoded).
    static func writeHeader(_ h: (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool), into w: inout ByteWriter) throws(OrchestraError) {
        try writeStr(h.key, into: &w, what: "header key")
        if h.isJSON {
            try jsonToMsgPack(makeBytes(h.value), into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        } else {
            try writeStr(h.value, into: &w, what: "header \"\(String(decoding: h.key, as: UTF8.self))\"")
        }
    }
}
