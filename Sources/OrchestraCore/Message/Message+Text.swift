// How a message stores its text fields and headers.
//
// A decoded message used to hold each text field, header key and header value as its own
// `[UInt8]` (about ten small allocations per envelope, each about 370 instructions to make and
// free). Now the JSON decoder copies all of them into one byte buffer and the message keeps
// slices of it (`ArraySlice<UInt8>` shares the buffer and keeps it alive). A setter replaces
// only its own field's slice (with a slice of a new array); the buffer is never written after
// it was built, so bytes handed out for the other fields stay where they are. That keeps the
// C contract: a pointer from a getter stays valid until *that* field (for headers: the headers)
// is changed or the message is freed.
//
// The public Swift API keeps its shape: `idBytes`, `versionBytes`, ... are `[UInt8]` and
// `headers` is `[Field]`, computed from the slices (a getter copies the bytes unless the slice
// spans its whole array, as one set through a setter does).
import Glibc

/// One header as stored: key and value are slices of the message's text buffer (or of their
/// own arrays after `setHeader`). A value is UTF-8 text (`isJSON == false`, unescaped) or the
/// raw text of another JSON value.
struct HeaderEntry: Sendable {
    var key: ArraySlice<UInt8>
    var value: ArraySlice<UInt8>
    var isJSON: Bool

    init(key: ArraySlice<UInt8>, value: ArraySlice<UInt8>, isJSON: Bool) {
        self.key = key
        self.value = value
        self.isJSON = isJSON
    }

    init(_ f: Field) {
        key = ArraySlice(f.key)
        switch f.value {
        case .string(let s): value = ArraySlice(s); isJSON = false
        case .json(let j): value = ArraySlice(j); isJSON = true
        }
    }

    var fieldValue: FieldValue { isJSON ? .json(Array(value)) : .string(Array(value)) }
    var field: Field { Field(key: Array(key), value: fieldValue) }
}

/// The text fields and the headers of a message.
struct MessageText: Sendable {
    var id: ArraySlice<UInt8>
    var type: ArraySlice<UInt8>
    var version: ArraySlice<UInt8>?
    var source: ArraySlice<UInt8>?
    var target: ArraySlice<UInt8>?
    var correlationId: ArraySlice<UInt8>?
    var replyTo: ArraySlice<UInt8>?
    var headers: [HeaderEntry]

    init(id: ArraySlice<UInt8>, type: ArraySlice<UInt8>, version: ArraySlice<UInt8>? = nil,
         source: ArraySlice<UInt8>? = nil, target: ArraySlice<UInt8>? = nil,
         correlationId: ArraySlice<UInt8>? = nil, replyTo: ArraySlice<UInt8>? = nil,
         headers: [HeaderEntry] = []) {
        self.id = id
        self.type = type
        self.version = version
        self.source = source
        self.target = target
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.headers = headers
    }

    subscript(field: TextField) -> ArraySlice<UInt8>? {
        get {
            switch field {
            case .id: return id
            case .type: return type
            case .version: return version
            case .source: return source
            case .target: return target
            case .correlationId: return correlationId
            case .replyTo: return replyTo
            }
        }
        set {
            switch field {
            case .id: id = newValue ?? []
            case .type: type = newValue ?? []
            case .version: version = newValue
            case .source: source = newValue
            case .target: target = newValue
            case .correlationId: correlationId = newValue
            case .replyTo: replyTo = newValue
            }
        }
    }

    /// The index of the first header whose key is `key`.
    func headerIndex(_ key: UnsafeRawBufferPointer) -> Int? {
        for i in headers.indices where headers[i].key.withUnsafeBytes({ equalBytes($0, key) }) {
            return i
        }
        return nil
    }
}

@inline(__always)
func equalBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    if a.count == 0 { return true }
    return memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}

/// A pointer to the bytes of `s` in the storage it shares (never written after it was built,
/// so the pointer stays valid while a slice of it is kept).
@inline(__always)
func storageBytes(_ s: ArraySlice<UInt8>) -> UnsafeRawBufferPointer {
    s.withUnsafeBytes { $0 }
}

extension Message {
    // MARK: Byte views (public API: arrays, computed from the stored slices)

    public var idBytes: [UInt8] {
        get { Array(text.id) }
        set { text.id = ArraySlice(newValue) }
    }
    /// Dotted subject, e.g. `task.stream`.
    public var typeBytes: [UInt8] {
        get { Array(text.type) }
        set { text.type = ArraySlice(newValue) }
    }
    public var versionBytes: [UInt8]? {
        get { text.version.map { Array($0) } }
        set { text.version = newValue.map { ArraySlice($0) } }
    }
    public var sourceBytes: [UInt8]? {
        get { text.source.map { Array($0) } }
        set { text.source = newValue.map { ArraySlice($0) } }
    }
    public var targetBytes: [UInt8]? {
        get { text.target.map { Array($0) } }
        set { text.target = newValue.map { ArraySlice($0) } }
    }
    public var correlationIdBytes: [UInt8]? {
        get { text.correlationId.map { Array($0) } }
        set { text.correlationId = newValue.map { ArraySlice($0) } }
    }
    public var replyToBytes: [UInt8]? {
        get { text.replyTo.map { Array($0) } }
        set { text.replyTo = newValue.map { ArraySlice($0) } }
    }

    /// The headers, in order of arrival. Setting replaces all of them.
    public var headers: [Field] {
        get { text.headers.map { $0.field } }
        set { text.headers = newValue.map { HeaderEntry($0) } }
    }

    // MARK: Views into the storage (the C ABI hands these pointers out)

    /// The bytes of text field `field` where the message keeps them, or nil when the field is
    /// absent. Valid until that field is changed or the message is freed.
    public func textStorage(_ field: TextField) -> UnsafeRawBufferPointer? {
        text[field].map { storageBytes($0) }
    }

    /// The number of headers.
    public var headerCount: Int { text.headers.count }

    /// Header `index` (0..<headerCount) where the message keeps it: key, value and whether
    /// the value is raw JSON text. Valid until the headers are changed or the message is freed.
    public func headerStorage(at index: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool) {
        let h = text.headers[index]
        return (storageBytes(h.key), storageBytes(h.value), h.isJSON)
    }

    /// The index of the first header named `key`, or nil.
    public func headerIndex(_ key: UnsafeRawBufferPointer) -> Int? {
        text.headerIndex(key)
    }
}
