// How a message stores its text fields and headers.
//
// A decoded message used to hold each text field, header key and header value as its own
// `[UInt8]` (about ten small allocations per envelope, each about 370 instructions to make and
// free). Now the JSON decoder puts all of them into one `TextBlock`: one allocation holding
// where each field and header is, then their bytes. A block is never written after it is
// built. A setter does not touch it: the field's new value is kept in an array of its own
// (`MessageText.own`), and a change of the headers copies them into a `[Field]` first. So
// bytes handed out for a field stay where they are until *that* field (for headers: the
// headers) is changed or the message is freed, which is the C ABI's contract.
//
// The public Swift API keeps its shape: `idBytes`, `versionBytes`, ... are `[UInt8]` and
// `headers` is `[Field]`, computed (a getter of a decoded field copies its bytes out).
import Glibc

/// The header of a `TextBlock`'s memory.
struct TextBlockHeader {
    /// Number of headers in the block's table.
    var headerCount: Int
}

/// One allocation holding a decoded message's text. Its elements are, as native-endian Ints:
/// for each of the 7 text fields (by `TextField` raw value) its start and count in the text
/// (start -1: absent); for each header its key start, key count, value start and value count
/// (a raw JSON value has its count stored as ~count); then the text bytes.
typealias TextBlock = ManagedBuffer<TextBlockHeader, UInt8>

enum TextBlockLayout {
    static let fieldSlots = 7
    static let intSize = MemoryLayout<Int>.size

    /// Byte offset of the text in the elements.
    @inline(__always)
    static func textOffset(headerCount: Int) -> Int { (2 * fieldSlots + 4 * headerCount) * intSize }
}

extension ManagedBuffer where Header == TextBlockHeader, Element == UInt8 {
    /// The block's elements (valid while the block lives; a block is never written after it
    /// was built).
    @inline(__always)
    var base: UnsafeRawPointer {
        UnsafeRawPointer(withUnsafeMutablePointerToElements { $0 })
    }

    @inline(__always)
    private func int(_ i: Int) -> Int {
        base.loadUnaligned(fromByteOffset: i * TextBlockLayout.intSize, as: Int.self)
    }

    /// The number of headers in the table. Read through the header's pointer: the `header`
    /// property would make a dynamic exclusivity check (a runtime call) on every read.
    @inline(__always)
    var headerCount: Int {
        withUnsafeMutablePointerToHeader { $0.pointee.headerCount }
    }

    @inline(__always)
    private var text: UnsafeRawPointer {
        base + TextBlockLayout.textOffset(headerCount: headerCount)
    }

    /// Field `i`'s bytes, or nil when the decoded envelope did not have it.
    @inline(__always)
    func field(_ i: Int) -> UnsafeRawBufferPointer? {
        let start = int(2 * i)
        if start < 0 { return nil }
        return UnsafeRawBufferPointer(start: text + start, count: int(2 * i + 1))
    }

    /// Header `i`: key, value, whether the value is raw JSON text.
    @inline(__always)
    func headerAt(_ i: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool) {
        let r = 2 * TextBlockLayout.fieldSlots + 4 * i
        let t = text
        let vc = int(r + 3)
        return (UnsafeRawBufferPointer(start: t + int(r), count: int(r + 1)),
                UnsafeRawBufferPointer(start: t + int(r + 2), count: vc < 0 ? ~vc : vc), vc < 0)
    }
}

/// The text fields and the headers of a message.
struct MessageText {
    /// The decoded text (nil for a message made in code).
    var block: TextBlock?
    /// Fields set since decoding (bit `TextField.rawValue`): their value is in `own` (nil:
    /// absent), not in the block.
    var overridden: UInt8
    var own: (id: [UInt8]?, type: [UInt8]?, version: [UInt8]?, source: [UInt8]?, target: [UInt8]?,
              correlationId: [UInt8]?, replyTo: [UInt8]?)
    /// The headers once changed (or for a message made in code); nil: the block's headers.
    var headerFields: [Field]?

    /// A message's text made in code.
    init(id: [UInt8], type: [UInt8], version: [UInt8]? = nil, source: [UInt8]? = nil,
         target: [UInt8]? = nil, correlationId: [UInt8]? = nil, replyTo: [UInt8]? = nil,
         headers: [Field] = []) {
        block = nil
        overridden = 0x7F
        own = (id, type, version, source, target, correlationId, replyTo)
        headerFields = headers
    }

    /// A decoded message's text.
    @inline(__always)
    init(block: TextBlock) {
        self.block = block
        overridden = 0
        own = (nil, nil, nil, nil, nil, nil, nil)
        headerFields = nil
    }

    @inline(__always)
    func ownValue(_ field: TextField) -> [UInt8]? {
        switch field {
        case .id: return own.id
        case .type: return own.type
        case .version: return own.version
        case .source: return own.source
        case .target: return own.target
        case .correlationId: return own.correlationId
        case .replyTo: return own.replyTo
        }
    }

    /// Sets a field (nil: absent) without touching the block or the other fields.
    mutating func set(_ field: TextField, _ value: [UInt8]?) {
        switch field {
        case .id: own.id = value
        case .type: own.type = value
        case .version: own.version = value
        case .source: own.source = value
        case .target: own.target = value
        case .correlationId: own.correlationId = value
        case .replyTo: own.replyTo = value
        }
        overridden |= 1 << UInt8(field.rawValue)
    }

    /// The field's bytes where they are kept, or nil when absent. Valid while the message
    /// keeps this text and the field is not changed.
    @inline(__always)
    func storage(_ field: TextField) -> UnsafeRawBufferPointer? {
        if overridden & (1 << UInt8(field.rawValue)) != 0 {
            guard let v = ownValue(field) else { return nil }
            return v.withUnsafeBytes { $0 }   // the stored array's buffer
        }
        return block?.field(Int(field.rawValue))
    }

    /// The field's bytes (empty when absent) with what keeps them alive: for a reader that may
    /// run code which changes the message while it reads them (the router, around handlers).
    func holding(_ field: TextField) -> TextHold {
        if overridden & (1 << UInt8(field.rawValue)) != 0 {
            let v = ownValue(field) ?? []
            return TextHold(bytes: v.withUnsafeBytes { $0 }, array: v, block: nil)
        }
        let b = block.flatMap { $0.field(Int(field.rawValue)) }
        return TextHold(bytes: b ?? UnsafeRawBufferPointer(start: nil, count: 0), array: nil, block: block)
    }

    /// The field as a new array (the stored array itself for a field set in code).
    func bytes(_ field: TextField) -> [UInt8]? {
        if overridden & (1 << UInt8(field.rawValue)) != 0 { return ownValue(field) }
        return block?.field(Int(field.rawValue)).map { makeBytes($0) }
    }

    var headerCount: Int {
        if let headerFields { return headerFields.count }
        return block?.headerCount ?? 0
    }

    /// Header `i` where it is kept. Valid while the message keeps this text and its headers
    /// are not changed.
    func headerStorage(_ i: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool) {
        if let headerFields {
            let f = headerFields[i]
            let key = f.key.withUnsafeBytes { $0 }
            switch f.value {
            case .string(let s): return (key, s.withUnsafeBytes { $0 }, false)
            case .json(let j): return (key, j.withUnsafeBytes { $0 }, true)
            }
        }
        return block.unsafelyUnwrapped.headerAt(i)
    }

    /// The headers as fields (copies for a decoded message).
    var headers: [Field] {
        get {
            if let headerFields { return headerFields }
            let n = headerCount
            var out: [Field] = []
            out.reserveCapacity(n)
            for i in 0..<n {
                let h = headerStorage(i)
                let v = makeBytes(h.value)
                out.append(Field(key: makeBytes(h.key), value: h.isJSON ? .json(v) : .string(v)))
            }
            return out
        }
            set { headerFields = newValue }
    }

    /// Makes the headers a `[Field]` of their own (before changing them).
    mutating func ownHeaders() {
        if headerFields == nil { headerFields = headers }
    }

    /// The index of the first header whose key is `key`.
    func headerIndex(_ key: UnsafeRawBufferPointer) -> Int? {
        for i in 0..<headerCount where equalBytes(headerStorage(i).key, key) { return i }
        return nil
    }
}

/// Bytes of a text field and the storage they are in, kept alive while this is.
struct TextHold {
    let bytes: UnsafeRawBufferPointer
    let array: [UInt8]?
    let block: TextBlock?
}

@inline(__always)
func equalBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    if a.count == 0 { return true }
    return memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
}

extension Message {
    // MARK: Byte views (public API: arrays, computed from the stored text)

    public var idBytes: [UInt8] {
        get { text.bytes(.id) ?? [] }
        set { text.set(.id, newValue) }
    }
    /// Dotted subject, e.g. `task.stream`.
    public var typeBytes: [UInt8] {
        get { text.bytes(.type) ?? [] }
        set { text.set(.type, newValue) }
    }
    public var versionBytes: [UInt8]? {
        get { text.bytes(.version) }
        set { text.set(.version, newValue) }
    }
    public var sourceBytes: [UInt8]? {
        get { text.bytes(.source) }
        set { text.set(.source, newValue) }
    }
    public var targetBytes: [UInt8]? {
        get { text.bytes(.target) }
        set { text.set(.target, newValue) }
    }
    public var correlationIdBytes: [UInt8]? {
        get { text.bytes(.correlationId) }
        set { text.set(.correlationId, newValue) }
    }
    public var replyToBytes: [UInt8]? {
        get { text.bytes(.replyTo) }
        set { text.set(.replyTo, newValue) }
    }

    /// The headers, in order of arrival. Setting replaces all of them.
    public var headers: [Field] {
        get { text.headers }
        set { text.headers = newValue }
    }

    // MARK: Views into the storage (the encoders read these; the C ABI hands them out)
    //
    // These read the stored parts they need (`text.overridden`, `text.own.x`, `text.block`)
    // one by one: calling a method of `text` would copy the whole MessageText (retaining and
    // releasing every reference in it) on every call.

    @inline(__always)
    func ownText(_ field: TextField) -> [UInt8]? {
        switch field {
        case .id: return text.own.id
        case .type: return text.own.type
        case .version: return text.own.version
        case .source: return text.own.source
        case .target: return text.own.target
        case .correlationId: return text.own.correlationId
        case .replyTo: return text.own.replyTo
        }
    }

    /// The bytes of text field `field` where the message keeps them, or nil when the field is
    /// absent. Valid until that field is changed or the message is freed.
    @inline(__always)
    public func textStorage(_ field: TextField) -> UnsafeRawBufferPointer? {
        if text.overridden & (1 << UInt8(field.rawValue)) != 0 {
            guard let v = ownText(field) else { return nil }
            return v.withUnsafeBytes { $0 }   // the stored array's buffer
        }
        return text.block?.field(Int(field.rawValue))
    }

    /// The field's bytes (empty when absent) with what keeps them alive, for a reader that
    /// may run code which changes the message while it reads them (the router's handlers).
    @inline(__always)
    func holdingText(_ field: TextField) -> TextHold {
        if text.overridden & (1 << UInt8(field.rawValue)) != 0 {
            let v = ownText(field) ?? []
            return TextHold(bytes: v.withUnsafeBytes { $0 }, array: v, block: nil)
        }
        let block = text.block
        let b = block.flatMap { $0.field(Int(field.rawValue)) }
        return TextHold(bytes: b ?? UnsafeRawBufferPointer(start: nil, count: 0), array: nil, block: block)
    }

    /// The number of headers.
    public var headerCount: Int {
        if let h = text.headerFields { return h.count }
        return text.block?.headerCount ?? 0
    }

    /// Header `index` (0..<headerCount) where the message keeps it: key, value and whether
    /// the value is raw JSON text. Valid until the headers are changed or the message is freed.
    public func headerStorage(at index: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isJSON: Bool) {
        if let fields = text.headerFields {
            let f = fields[index]   // the stored arrays' buffers
            let key = f.key.withUnsafeBytes { $0 }
            switch f.value {
            case .string(let v): return (key, v.withUnsafeBytes { $0 }, false)
            case .json(let v): return (key, v.withUnsafeBytes { $0 }, true)
            }
        }
        return text.block.unsafelyUnwrapped.headerAt(index)
    }

    /// The index of the first header named `key`, or nil.
    public func headerIndex(_ key: UnsafeRawBufferPointer) -> Int? {
        for i in 0..<headerCount where equalBytes(headerStorage(at: i).key, key) { return i }
        return nil
    }
}
