// The envelope codec: one Message <-> JSON text or MessagePack bytes.
//
// JSON object keys (camelCase, as docs/protocol.md names them; the same str keys in
// MessagePack), written in this order:
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

    /// The checks of a text field's value of `count` bytes (unescaped) for key `k`: at most
    /// `Message.maxTextFieldLength` bytes; id and type not empty.
    @inline(__always)
    static func checkText(count: Int, _ k: EnvelopeKey, at: Int) throws(OrchestraError) {
        if count > Message.maxTextFieldLength || (count == 0 && (k == .id || k == .type)) {
            throw textError(count: count, k, at: at)
        }
    }

    @inline(never)
    static func textError(count: Int, _ k: EnvelopeKey, at: Int) -> OrchestraError {
        if count > Message.maxTextFieldLength {
            return OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        return error(at, "\"\(k.name)\" must not be empty")
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
