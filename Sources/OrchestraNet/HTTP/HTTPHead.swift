// A parsed HTTP/1.1 message head: the start line and the header fields, kept as ranges into
// one byte buffer that holds the head as it arrived (one allocation per head, no String per
// field). Names compare ASCII case-insensitively; repeated fields stay separate, in order.

/// The header fields of one message head.
public struct HTTPHeaders: Sendable {
    /// Where one field's name and value lie in `storage` (the value without surrounding OWS).
    @usableFromInline
    struct Field: Sendable {
        @usableFromInline var nameStart: Int32, nameEnd: Int32, valueStart: Int32, valueEnd: Int32
    }

    /// The head's bytes as received (start line, fields, CRLFs).
    public internal(set) var storage: [UInt8] = []
    @usableFromInline var fields: [Field] = []

    public init() {}

    /// Number of fields (a repeated name counts once per line).
    public var count: Int { fields.count }

    public func name(at i: Int) -> ArraySlice<UInt8> {
        let f = fields[i]
        return storage[Int(f.nameStart)..<Int(f.nameEnd)]
    }

    public func value(at i: Int) -> ArraySlice<UInt8> {
        let f = fields[i]
        return storage[Int(f.valueStart)..<Int(f.valueEnd)]
    }

    /// Whether field `i` is called `name` (ASCII case-insensitive; `name` is given in lowercase).
    public func nameMatches(at i: Int, _ name: StaticString) -> Bool {
        let f = fields[i]
        let n = Int(f.nameEnd - f.nameStart)
        guard n == name.utf8CodeUnitCount else { return false }
        let p = name.utf8Start
        for k in 0..<n where HTTPBytes.lower(storage[Int(f.nameStart) + k]) != p[k] { return false }
        return true
    }

    /// Indices of the fields called `name` (lowercase), in order.
    public func indices(of name: StaticString) -> [Int] {
        (0..<fields.count).filter { nameMatches(at: $0, name) }
    }

    /// Number of fields called `name` (lowercase).
    public func count(of name: StaticString) -> Int {
        var n = 0
        for i in 0..<fields.count where nameMatches(at: i, name) { n += 1 }
        return n
    }

    /// The value of the first field called `name` (lowercase).
    public func first(_ name: StaticString) -> ArraySlice<UInt8>? {
        for i in 0..<fields.count where nameMatches(at: i, name) { return value(at: i) }
        return nil
    }

    /// The value of the first field called `name` (lowercase) as a String (values are ASCII or
    /// obs-text; obs-text is decoded as UTF-8 with replacement).
    public func string(_ name: StaticString) -> String? {
        first(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Calls `body` with every element of the comma-separated lists in the fields called `name`
    /// (RFC 9110 section 5.6.1: elements trimmed of OWS, empty elements skipped). Stops when
    /// `body` returns false.
    public func forEachListElement(_ name: StaticString, _ body: (ArraySlice<UInt8>) -> Bool) {
        for i in 0..<fields.count where nameMatches(at: i, name) {
            if !HTTPBytes.forEachListElement(value(at: i), body) { return }
        }
    }

    /// Whether a comma-separated list in the fields called `name` holds `token` (lowercase),
    /// compared ASCII case-insensitively.
    public func listContains(_ name: StaticString, token: StaticString) -> Bool {
        var found = false
        forEachListElement(name) { e in
            if HTTPBytes.equalsLowercase(e, token) { found = true; return false }
            return true
        }
        return found
    }

    mutating func append(nameStart: Int, nameEnd: Int, valueStart: Int, valueEnd: Int) {
        fields.append(Field(nameStart: Int32(nameStart), nameEnd: Int32(nameEnd),
                            valueStart: Int32(valueStart), valueEnd: Int32(valueEnd)))
    }
}

/// A parsed request head (request line + fields).
public struct HTTPRequestHead: Sendable {
    public var headers = HTTPHeaders()
    var methodRange = 0..<0
    var targetRange = 0..<0
    var pathRange = 0..<0
    var queryRange: Range<Int>? = nil
    /// The HTTP version, e.g. (1, 1).
    public internal(set) var version: (major: Int, minor: Int) = (1, 1)
    /// The Content-Length of the request, if it has one (validated by the parser).
    public internal(set) var contentLength: Int? = nil
    /// Whether the request body is chunked (Transfer-Encoding ending in "chunked").
    public internal(set) var isChunked = false

    public init() {}

    /// The method token, e.g. "GET" (case-sensitive per RFC 9110 section 9.1).
    public var method: ArraySlice<UInt8> { headers.storage[methodRange] }
    public var isGET: Bool { method.elementsEqual("GET".utf8) }
    /// The request target as sent (origin-form "/a/b?x=1" or absolute-form "http://h/a").
    public var target: ArraySlice<UInt8> { headers.storage[targetRange] }
    /// The path of the target ("/" for an absolute-form target without one); still percent-encoded.
    public var path: ArraySlice<UInt8> {
        pathRange.isEmpty ? ArraySlice("/".utf8) : headers.storage[pathRange]
    }
    /// The query (after '?', without it), nil when the target has no '?'.
    public var query: ArraySlice<UInt8>? { queryRange.map { headers.storage[$0] } }
    /// HTTP/1.1 or later.
    public var isAtLeastHTTP11: Bool { version.major > 1 || (version.major == 1 && version.minor >= 1) }

    public var methodString: String { String(decoding: method, as: UTF8.self) }
    public var pathString: String { String(decoding: path, as: UTF8.self) }
    public var queryString: String? { query.map { String(decoding: $0, as: UTF8.self) } }
}

/// A parsed response head (status line + fields).
public struct HTTPResponseHead: Sendable {
    public var headers = HTTPHeaders()
    public internal(set) var version: (major: Int, minor: Int) = (1, 1)
    /// The three-digit status code.
    public internal(set) var status: Int = 0
    var reasonRange = 0..<0

    public init() {}

    /// The reason phrase (possibly empty); clients should not act on it.
    public var reason: ArraySlice<UInt8> { headers.storage[reasonRange] }
}

/// Byte classes and helpers of RFC 9110 (tokens, whitespace, lists).
public enum HTTPBytes {
    /// tchar: "!#$%&'*+-.^_`|~", digits, letters.
    static let tokenTable: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = true }
        for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = true }
        for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = true }
        for c in "!#$%&'*+-.^_`|~".utf8 { t[Int(c)] = true }
        return t
    }()

    @inline(__always) public static func isToken(_ b: UInt8) -> Bool { tokenTable[Int(b)] }
    @inline(__always) static func isOWS(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
    @inline(__always) static func lower(_ b: UInt8) -> UInt8 {
        b &- 0x41 < 26 ? b | 0x20 : b
    }

    /// Whether `s` is a non-empty token.
    public static func isToken<C: Collection<UInt8>>(_ s: C) -> Bool {
        !s.isEmpty && s.allSatisfy { isToken($0) }
    }

    /// ASCII case-insensitive comparison with a lowercase literal.
    public static func equalsLowercase(_ s: ArraySlice<UInt8>, _ lit: StaticString) -> Bool {
        guard s.count == lit.utf8CodeUnitCount else { return false }
        let p = lit.utf8Start
        var k = 0
        for b in s {
            if lower(b) != p[k] { return false }
            k += 1
        }
        return true
    }

    static func trimOWS(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex, hi = s.endIndex
        while lo < hi && isOWS(s[lo]) { lo += 1 }
        while hi > lo && isOWS(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    /// Splits a comma-separated list value (elements trimmed, empty ones skipped). Does not
    /// look inside quoted strings: the lists this layer reads (Connection, Upgrade,
    /// Sec-WebSocket-Protocol) hold tokens only; Sec-WebSocket-Extensions has its own parser.
    /// Returns false when `body` stopped the walk.
    @discardableResult
    static func forEachListElement(_ v: ArraySlice<UInt8>, _ body: (ArraySlice<UInt8>) -> Bool) -> Bool {
        var start = v.startIndex
        var i = v.startIndex
        while true {
            if i == v.endIndex || v[i] == UInt8(ascii: ",") {
                let e = trimOWS(v[start..<i])
                if !e.isEmpty && !body(e) { return false }
                if i == v.endIndex { return true }
                start = i + 1
            }
            i += 1
        }
    }
}
