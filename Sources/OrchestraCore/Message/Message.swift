import CSSL
import Synchronization

/// Message priority: four lanes in the queue, LOW..CRITICAL (orc_priority_t of the header).
public enum Priority: UInt8, Sendable, CaseIterable, Comparable {
    case low = 0, normal = 1, high = 2, critical = 3

    public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }
}

/// What the payload bytes are. The envelope codec embeds a JSON payload as a JSON value, text
/// as a JSON string and binary data as base64 (JSON) or `bin` (MessagePack).
public enum ContentType: UInt8, Sendable, CaseIterable {
    case json = 0, text = 1, binary = 2

    /// The MIME type written in the envelope's `contentType` field (absent means JSON).
    public var mimeType: String {
        switch self {
        case .json: return "application/json"
        case .text: return "text/plain"
        case .binary: return "application/octet-stream"
        }
    }

    public init?(mimeType: some Sequence<UInt8>) {
        let s = Array(mimeType)
        if s == Array("application/json".utf8) { self = .json }
        else if s == Array("text/plain".utf8) { self = .text }
        else if s == Array("application/octet-stream".utf8) { self = .binary }
        else { return nil }
    }
}

/// A value the library carries without interpreting it: a header value, a metadata entry or an
/// unknown envelope field. Strings are kept unescaped; any other JSON value is kept as its
/// validated JSON text, so it round-trips exactly (large integers included).
public enum FieldValue: Equatable, Sendable {
    case string([UInt8])
    case json([UInt8])
}

/// A key with its value, in the order they arrived.
public struct Field: Equatable, Sendable {
    public var key: [UInt8]
    public var value: FieldValue

    public init(key: [UInt8], value: FieldValue) {
        self.key = key
        self.value = value
    }

    public init(_ key: String, _ value: String) {
        self.key = Array(key.utf8)
        self.value = .string(Array(value.utf8))
    }
}

/// The text fields of the envelope, for generic accessors (the C ABI uses these).
public enum TextField: Int32, Sendable, CaseIterable {
    case id = 0, type, version, source, target, correlationId, replyTo

    public var jsonName: String {
        switch self {
        case .id: return "id"
        case .type: return "type"
        case .version: return "version"
        case .source: return "source"
        case .target: return "target"
        case .correlationId: return "correlationId"
        case .replyTo: return "replyTo"
        }
    }
}

/// The one envelope of every layer (docs/protocol.md; include/orchestra.h, section MESSAGE).
///
/// A message is a reference type; the C ABI exposes it reference counted
/// (`orc_msg_retain`/`orc_msg_release`) so one message can fan out without copies. A message
/// is not synchronised: mutate it from one thread, then share it read-only. That rule is also
/// why its stored properties are `@exclusivity(unchecked)`: the dynamic exclusivity checks
/// (a runtime call on every field access, a third of a queue push) could only catch a breach
/// of it, which is already a data race.
///
/// Only `id` and `type` are required; every other field is optional and is written on the
/// wire only when present, so a decoded message encodes back to the same fields.
public final class Message: @unchecked Sendable {
    /// Largest text field (id, type, source, ...) the library accepts, in bytes.
    public static let maxTextFieldLength = 64 * 1024

    /// The text fields and headers (`MessageText`): slices of one byte buffer for a decoded
    /// message, so decoding allocates one buffer for all of them. The public `[UInt8]` views
    /// (`idBytes`, `headers`, ...) are computed from it.
    @exclusivity(unchecked) var text: MessageText
    /// Milliseconds since the Unix epoch.
    @exclusivity(unchecked) public var timestamp: Int64?
    /// Time to live in milliseconds; a queue drops the message this long after it was pushed.
    @exclusivity(unchecked) public var ttl: Int64?
    @exclusivity(unchecked) public var priority: Priority?
    /// The payload as stored, in the form `payloadForm` says (nil: no payload). The public
    /// view is `payload` (Message+Payload.swift), which gives JSON text for a JSON payload
    /// whatever form it arrived in.
    @exclusivity(unchecked) var payloadStorage: [UInt8]?
    /// What `payloadStorage` holds (see `PayloadForm`).
    @exclusivity(unchecked) var payloadForm: PayloadForm
    /// The JSON text of a `.msgpack`-form payload, made on first use: a retained
    /// `PayloadText`, set once by compare-exchange so that readers on several threads may
    /// fill it (Message+Payload.swift); released when the payload changes or the message dies.
    let payloadJSONCache = Atomic<UnsafeMutableRawPointer?>(nil)

    deinit { dropPayloadJSONCache() }

    @exclusivity(unchecked) public var contentType: ContentType
    /// The payload holds zlib-deflated bytes of the original payload (`metadata.compressed`).
    @exclusivity(unchecked) public var compressed: Bool
    /// The payload holds nonce | AES-256-GCM ciphertext | tag (`metadata.encrypted`).
    @exclusivity(unchecked) public var encrypted: Bool
    /// Other `metadata` entries (retryCount, deliveryTag, ...), kept in order.
    @exclusivity(unchecked) public var metadata: [Field]
    /// Top-level fields this version does not know, kept so they survive decode + encode.
    @exclusivity(unchecked) public var extensions: [Field]
    /// The network connection a received message came from (0: none). Transport metadata,
    /// never encoded.
    @exclusivity(unchecked) public var connectionId: UInt64 = 0

    /// A message with the given fields. Without an id a random UUID (v4) is generated.
    public init(
        type: [UInt8], id: [UInt8]? = nil, timestamp: Int64? = nil, version: [UInt8]? = nil,
        source: [UInt8]? = nil
    ) {
        self.text = MessageText(id: id ?? Message.newId(), type: type, version: version, source: source)
        self.timestamp = timestamp
        self.ttl = nil
        self.priority = nil
        self.payloadStorage = nil
        self.payloadForm = .bytes
        self.contentType = .json
        self.compressed = false
        self.encrypted = false
        self.metadata = []
        self.extensions = []
    }

    /// A message with every field given (the decoders' one-step construction: no property
    /// is set after initialisation, so no access checks or observers run).
    init(
        text: MessageText, timestamp: Int64?, ttl: Int64?,
        priority: Priority?, payload: [UInt8]?, payloadForm: PayloadForm,
        contentType: ContentType, compressed: Bool, encrypted: Bool, metadata: [Field],
        extensions: [Field]
    ) {
        self.text = text
        self.timestamp = timestamp
        self.ttl = ttl
        self.priority = priority
        self.payloadStorage = payload
        self.payloadForm = payload == nil ? .bytes : payloadForm
        self.contentType = contentType
        self.compressed = compressed
        self.encrypted = encrypted
        self.metadata = metadata
        self.extensions = extensions
    }

    /// A new message of `type`, stamped now, version "1.0", with a random id.
    public convenience init(type: String, source: String? = nil) {
        self.init(
            type: Array(type.utf8), timestamp: wallClockMillis(), version: Array("1.0".utf8),
            source: source.map { Array($0.utf8) })
    }

    /// A deep copy (the C ABI's `orc_msg_clone`). A decoded message's text block is shared,
    /// not copied: it is never written, and either message's setters store values of their own.
    public func copy() -> Message {
        let m = Message(type: [], id: [], timestamp: timestamp)
        // The copy shares the (immutable) text buffer; either message's setters replace slices.
        m.text = text
        m.ttl = ttl
        m.priority = priority
        m.copyPayload(from: self)
        m.contentType = contentType
        m.compressed = compressed
        m.encrypted = encrypted
        m.metadata = metadata
        m.extensions = extensions
        m.connectionId = connectionId
        return m
    }

    /// The effective priority (absent means normal).
    @inlinable public var effectivePriority: Priority { priority ?? .normal }

    // MARK: String views

    public var id: String {
        get { String(decoding: idBytes, as: UTF8.self) }
        set { idBytes = Array(newValue.utf8) }
    }
    public var type: String {
        get { String(decoding: typeBytes, as: UTF8.self) }
        set { typeBytes = Array(newValue.utf8) }
    }
    public var version: String? {
        get { versionBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { versionBytes = newValue.map { Array($0.utf8) } }
    }
    public var source: String? {
        get { sourceBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { sourceBytes = newValue.map { Array($0.utf8) } }
    }
    public var target: String? {
        get { targetBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { targetBytes = newValue.map { Array($0.utf8) } }
    }
    public var correlationId: String? {
        get { correlationIdBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { correlationIdBytes = newValue.map { Array($0.utf8) } }
    }
    public var replyTo: String? {
        get { replyToBytes.map { String(decoding: $0, as: UTF8.self) } }
        set { replyToBytes = newValue.map { Array($0.utf8) } }
    }

    /// The payload as text (for `.text` and `.json` payloads).
    public var payloadString: String? {
        payload.map { String(decoding: $0, as: UTF8.self) }
    }

    /// Sets a text payload.
    public func setPayload(text: String) {
        payload = Array(text.utf8)
        contentType = .text
    }

    /// Sets a JSON payload from JSON text, which must be one valid JSON value.
    public func setPayload(json: [UInt8]) throws(OrchestraError) {
        try JSONValidator.validate(json, limits: .default)
        setCheckedJSONPayload(json)
        contentType = .json
    }

    /// Sets a JSON payload from JSON text the caller wrote itself and so vouches for, without
    /// checking it again: it must be exactly one JSON value, valid UTF-8, nested at most
    /// `DecodeLimits.depthCeiling` deep (e.g. a `JSONObjectWriter`'s output). The encoders copy
    /// it as it is, so text that breaks this makes invalid envelopes: JSON from elsewhere
    /// (users, the network) goes through `setPayload(json:)`.
    public func setPayload(checkedJSON json: [UInt8]) {
        setCheckedJSONPayload(json)
        contentType = .json
    }

    /// Sets a binary payload.
    public func setPayload(binary: [UInt8]) {
        payload = binary
        contentType = .binary
    }

    // MARK: Generic text-field access

    public func get(_ field: TextField) -> [UInt8]? {
        text.bytes(field)
    }

    /// Sets a text field after checking UTF-8 and length; nil clears an optional field.
    public func set(_ field: TextField, _ value: [UInt8]?) throws(OrchestraError) {
        if let value {
            if value.count > Message.maxTextFieldLength {
                throw OrchestraError(.tooBig, "\(field.jsonName) is \(value.count) bytes; the limit is \(Message.maxTextFieldLength)")
            }
            if let bad = value.withUnsafeBytes({ UTF8Validator.firstInvalidOffset($0) }) {
                throw OrchestraError(.invalidArgument, "\(field.jsonName) is not valid UTF-8 (byte \(bad))")
            }
        }
        if field == .id || field == .type {
            guard let value, !value.isEmpty else {
                throw OrchestraError(.invalidArgument, "\(field.jsonName) is required and cannot be empty")
            }
        }
        text.set(field, value)
    }

    // MARK: Headers

    /// The value of header `key` (first match), or nil.
    public func header(_ key: [UInt8]) -> FieldValue? {
        guard let i = key.withUnsafeBytes({ text.headerIndex($0) }) else { return nil }
        let h = text.headerStorage(i)
        return h.isJSON ? .json(makeBytes(h.value)) : .string(makeBytes(h.value))
    }

    public func header(_ key: String) -> String? {
        switch header(Array(key.utf8)) {
        case .string(let v)?: return String(decoding: v, as: UTF8.self)
        case .json(let v)?: return String(decoding: v, as: UTF8.self)
        case nil: return nil
        }
    }

    /// Sets (replaces or appends) header `key`. String values and keys must be UTF-8; JSON
    /// values must be one valid JSON value.
    public func setHeader(_ key: [UInt8], _ value: FieldValue) throws(OrchestraError) {
        guard UTF8Validator.isValid(key) else {
            throw OrchestraError(.invalidArgument, "header key is not valid UTF-8")
        }
        switch value {
        case .string(let s):
            if let bad = s.withUnsafeBytes({ UTF8Validator.firstInvalidOffset($0) }) {
                throw OrchestraError(.invalidArgument, "header value is not valid UTF-8 (byte \(bad))")
            }
        case .json(let j):
            try JSONValidator.validate(j, limits: .default)
        }
        text.ownHeaders()
        if let i = key.withUnsafeBytes({ text.headerIndex($0) }) {
            text.headerFields![i].value = value
        } else {
            text.headerFields!.append(Field(key: key, value: value))
        }
    }

    public func setHeader(_ key: String, _ value: String) {
        // Swift strings are always valid UTF-8, so this cannot fail.
        try? setHeader(Array(key.utf8), .string(Array(value.utf8)))
    }

    /// Removes header `key`; returns whether it was there.
    @discardableResult
    public func removeHeader(_ key: [UInt8]) -> Bool {
        guard let i = key.withUnsafeBytes({ text.headerIndex($0) }) else { return false }
        text.ownHeaders()
        text.headerFields!.remove(at: i)
        return true
    }

    // MARK: Ids

    /// A random UUID version 4 in its canonical 36-character form. The bits come from
    /// OpenSSL's CSPRNG through a per-thread pool (RandomPool): one RAND_bytes call per 256
    /// ids, where a call per id cost a getpid syscall and a getrandom draw per 8 bytes two.
    public static func newId() -> [UInt8] {
        var words: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &words) { RandomPool.fill($0.baseAddress!, 16) }
        var hi = words.0
        var lo = words.1
        hi = (hi & ~0xF000) | 0x4000                    // version 4
        lo = (lo & ~(0xC000 << 48)) | (0x8000 << 48)    // variant 10
        // 8-4-4-4-12 hex digits written 8 or 4 at a time into 40 bytes on the stack, then
        // copied into an array of exactly 36.
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &text) { t in
            let p = t.baseAddress!
            let dash = UInt8(ascii: "-")
            p.storeBytes(of: hexDigits8(UInt32(truncatingIfNeeded: hi >> 32)), toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: dash, toByteOffset: 8, as: UInt8.self)
            p.storeBytes(of: hexDigits4(UInt16(truncatingIfNeeded: hi >> 16)), toByteOffset: 9, as: UInt32.self)
            p.storeBytes(of: dash, toByteOffset: 13, as: UInt8.self)
            p.storeBytes(of: hexDigits4(UInt16(truncatingIfNeeded: hi)), toByteOffset: 14, as: UInt32.self)
            p.storeBytes(of: dash, toByteOffset: 18, as: UInt8.self)
            p.storeBytes(of: hexDigits4(UInt16(truncatingIfNeeded: lo >> 48)), toByteOffset: 19, as: UInt32.self)
            p.storeBytes(of: dash, toByteOffset: 23, as: UInt8.self)
            p.storeBytes(of: hexDigits4(UInt16(truncatingIfNeeded: lo >> 32)), toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: hexDigits8(UInt32(truncatingIfNeeded: lo)), toByteOffset: 28, as: UInt64.self)
            return makeBytes(UnsafeRawBufferPointer(t), 0, 36)
        }
    }
}

/// The 8 lower-case hex digits of `v`, most significant first, as the bytes of a UInt64 to
/// store in memory (little-endian: the first digit in the lowest byte).
@inline(__always)
func hexDigits8(_ v: UInt32) -> UInt64 {
    // One nibble per byte, the most significant nibble in the lowest byte.
    var x = UInt64(v)
    x = (x | x << 16) & 0x0000_FFFF_0000_FFFF
    x = (x | x << 8) & 0x00FF_00FF_00FF_00FF
    x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F
    x = x.byteSwapped
    // '0' + n, plus 39 more ('a' - '0' - 10) for the nibbles 10...15.
    let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101
    return (x &+ 0x3030_3030_3030_3030 &+ letters &* 39).littleEndian
}

/// The 4 lower-case hex digits of `v`, as `hexDigits8`.
@inline(__always)
func hexDigits4(_ v: UInt16) -> UInt32 {
    UInt32(truncatingIfNeeded: hexDigits8(UInt32(v)).littleEndian >> 32).littleEndian
}
