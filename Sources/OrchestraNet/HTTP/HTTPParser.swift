// Strict incremental parsers for HTTP/1.1 message heads (RFC 9110, RFC 9112): the request head
// the server reads before an upgrade or a plain GET, and the response head the client reads
// after sending its upgrade request. Sans-I/O: feed chunks as they arrive, in any split; the
// parser answers "need more", "done, the head ended after N bytes of this chunk" (what follows
// belongs to the next protocol: a body or WebSocket frames), or an error carrying the status
// to answer with.
//
// Strictness: lines end with CRLF (a bare CR or a bare LF is an error), obs-fold is rejected,
// no whitespace between a field name and its colon, field values hold no control bytes but
// HTAB, the start line has single spaces. Limits bound the start line, each field line, the
// number of fields and the whole head, so a hostile peer cannot make the head grow.

/// Why a head was refused, with the status a server answers (400, 414, 431, 505). For response
/// heads `status` is 0: the client fails the connection instead.
public struct HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public init(_ status: Int, _ message: String) { self.status = status; self.message = message }
    public var description: String { "\(status): \(message)" }
}

/// The outcome of feeding a chunk.
public enum HTTPParseResult: Sendable, Equatable {
    /// The whole chunk was consumed and the head is not complete yet.
    case needMore
    /// The head is complete; it ended after `consumed` bytes of this chunk.
    case done(consumed: Int)
    /// The head is malformed or over a limit; the parser stays in this state.
    case error(HTTPParseError)
}

/// Size limits of a head. A start line or field line over its limit, more fields than allowed,
/// or a head over `maxHeadSize` is refused as soon as the excess byte arrives.
public struct HTTPLimits: Sendable {
    /// The request line or status line, without its CRLF (a longer request line: 414).
    public var maxStartLineLength = 8192
    /// One field line, without its CRLF (431).
    public var maxFieldLineLength = 8192
    /// Number of field lines (431).
    public var maxFieldCount = 100
    /// The whole head, start line to the empty line, CRLFs included (431).
    public var maxHeadSize = 16384
    public init() {}
}

/// The line scanner both parsers share.
struct HTTPLineScanner {
    var lineStart = 0
    var sawCR = false
    var lineIndex = 0
    var finished: HTTPParseResult? = nil

    static let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A
}

protocol HTTPHeadParsing {
    var limits: HTTPLimits { get }
    var scanner: HTTPLineScanner { get set }
    var headers: HTTPHeaders { get set }
    /// The status for a start line over its limit.
    var startLineTooLongStatus: Int { get }
    /// The status for malformed input (400 for requests, 0 for responses).
    var badStatus: Int { get }
    mutating func parseStartLine(_ r: Range<Int>) -> HTTPParseError?
    mutating func finishHead() -> HTTPParseError?
}

extension HTTPHeadParsing {
    mutating func feedBytes(_ chunk: UnsafeRawBufferPointer) -> HTTPParseResult {
        if let f = scanner.finished {
            if case .error = f { return f }
            return .done(consumed: 0)
        }
        let r = scan(chunk)
        if case .needMore = r { return r }
        scanner.finished = r
        return r
    }

    private mutating func scan(_ chunk: UnsafeRawBufferPointer) -> HTTPParseResult {
        let n = chunk.count
        var i = 0
        while i < n {
            let b = chunk[i]
            i += 1
            if headers.storage.count >= limits.maxHeadSize {
                return .error(HTTPParseError(431, "head larger than \(limits.maxHeadSize) bytes"))
            }
            headers.storage.append(b)
            if scanner.sawCR {
                guard b == HTTPLineScanner.lf else { return .error(HTTPParseError(badStatus, "CR not followed by LF")) }
                scanner.sawCR = false
                let lineEnd = headers.storage.count - 2
                if lineEnd == scanner.lineStart {
                    if scanner.lineIndex == 0 {
                        // RFC 9112 section 2.2: empty lines before the start line are ignored.
                        scanner.lineStart = headers.storage.count
                        continue
                    }
                    if let e = finishHead() { return .error(e) }
                    return .done(consumed: i)
                }
                let line = scanner.lineStart..<lineEnd
                if scanner.lineIndex == 0 {
                    if let e = parseStartLine(line) { return .error(e) }
                } else if let e = parseFieldLine(line) {
                    return .error(e)
                }
                scanner.lineIndex += 1
                scanner.lineStart = headers.storage.count
            } else if b == HTTPLineScanner.cr {
                scanner.sawCR = true
            } else if b == HTTPLineScanner.lf {
                return .error(HTTPParseError(badStatus, "bare LF (lines must end with CRLF)"))
            } else {
                let len = headers.storage.count - scanner.lineStart
                if scanner.lineIndex == 0 {
                    if len > limits.maxStartLineLength {
                        return .error(HTTPParseError(startLineTooLongStatus, "start line longer than \(limits.maxStartLineLength) bytes"))
                    }
                } else if len > limits.maxFieldLineLength {
                    return .error(HTTPParseError(431, "header field line longer than \(limits.maxFieldLineLength) bytes"))
                }
            }
        }
        return .needMore
    }

    private mutating func parseFieldLine(_ r: Range<Int>) -> HTTPParseError? {
        let s = headers.storage
        let first = s[r.lowerBound]
        if first == 0x20 || first == 0x09 {
            return HTTPParseError(badStatus, "obsolete line folding (a field line starts with whitespace)")
        }
        if headers.count >= limits.maxFieldCount {
            return HTTPParseError(431, "more than \(limits.maxFieldCount) header fields")
        }
        var i = r.lowerBound
        while i < r.upperBound && HTTPBytes.isToken(s[i]) { i += 1 }
        guard i < r.upperBound, s[i] == UInt8(ascii: ":") else {
            if i < r.upperBound && (s[i] == 0x20 || s[i] == 0x09) {
                return HTTPParseError(badStatus, "whitespace between a header field name and its colon")
            }
            return HTTPParseError(badStatus, "malformed header field line (no token followed by ':')")
        }
        if i == r.lowerBound { return HTTPParseError(badStatus, "empty header field name") }
        let nameEnd = i
        var vs = i + 1, ve = r.upperBound
        while vs < ve && (s[vs] == 0x20 || s[vs] == 0x09) { vs += 1 }
        while ve > vs && (s[ve - 1] == 0x20 || s[ve - 1] == 0x09) { ve -= 1 }
        for k in vs..<ve {
            let c = s[k]
            if (c < 0x20 && c != 0x09) || c == 0x7F {
                return HTTPParseError(badStatus, "control byte 0x\(String(c, radix: 16)) in a header field value")
            }
        }
        headers.append(nameStart: r.lowerBound, nameEnd: nameEnd, valueStart: vs, valueEnd: ve)
        return nil
    }
}

/// Parses "HTTP/d.d" at `at`; nil when malformed.
private func parseVersion(_ s: [UInt8], _ at: Int, _ end: Int) -> (Int, Int)? {
    guard end - at == 8 else { return nil }
    guard s[at] == 0x48, s[at + 1] == 0x54, s[at + 2] == 0x54, s[at + 3] == 0x50, s[at + 4] == 0x2F else {
        return nil  // "HTTP/"
    }
    let ma = s[at + 5], dot = s[at + 6], mi = s[at + 7]
    guard ma &- 0x30 < 10, dot == UInt8(ascii: "."), mi &- 0x30 < 10 else { return nil }
    return (Int(ma - 0x30), Int(mi - 0x30))
}

/// The server's parser of request heads.
public struct HTTPRequestParser: HTTPHeadParsing {
    public let limits: HTTPLimits
    var scanner = HTTPLineScanner()
    var request = HTTPRequestHead()
    /// The Content-Length of the request, if it has one (validated: digits, repeats agree).
    public private(set) var contentLength: Int? = nil
    /// Whether the request body is chunked (Transfer-Encoding ending in "chunked").
    public private(set) var isChunked = false

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
        request.headers.storage.reserveCapacity(min(limits.maxHeadSize, 1024))
    }

    /// The head parsed so far (complete once `feed` returned `.done`).
    public var head: HTTPRequestHead { request }

    var headers: HTTPHeaders {
        get { request.headers }
        _modify { yield &request.headers }
    }
    var startLineTooLongStatus: Int { 414 }
    var badStatus: Int { 400 }

    /// Feeds the next chunk. After `.done` or `.error` further calls return the same outcome
    /// (`.done(consumed: 0)`) until `reset()`.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) -> HTTPParseResult {
        feedBytes(chunk)
    }

    public mutating func feed(_ bytes: [UInt8]) -> HTTPParseResult {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Gets ready for the next request on the same connection (keeps the buffer's memory).
    public mutating func reset() {
        scanner = HTTPLineScanner()
        var storage = request.headers.storage
        request = HTTPRequestHead()
        storage.removeAll(keepingCapacity: true)
        request.headers.storage = storage
        contentLength = nil
        isChunked = false
    }

    mutating func parseStartLine(_ r: Range<Int>) -> HTTPParseError? {
        let s = request.headers.storage
        var i = r.lowerBound
        while i < r.upperBound && HTTPBytes.isToken(s[i]) { i += 1 }
        guard i > r.lowerBound, i < r.upperBound, s[i] == 0x20 else {
            return HTTPParseError(400, "malformed request line (method)")
        }
        request.methodRange = r.lowerBound..<i
        let ts = i + 1
        var t = ts
        while t < r.upperBound && s[t] != 0x20 {
            let c = s[t]
            if c < 0x21 || c > 0x7E { return HTTPParseError(400, "invalid byte 0x\(String(c, radix: 16)) in the request target") }
            if c == UInt8(ascii: "#") { return HTTPParseError(400, "fragment in the request target") }
            t += 1
        }
        guard t > ts, t < r.upperBound else { return HTTPParseError(400, "malformed request line (target)") }
        guard let v = parseVersion(s, t + 1, r.upperBound) else {
            return HTTPParseError(400, "malformed request line (HTTP version)")
        }
        guard v.0 == 1 else { return HTTPParseError(505, "HTTP version \(v.0).\(v.1) is not supported") }
        request.version = v
        request.targetRange = ts..<t
        // Path and query of the target.
        var pathStart = ts
        if s[ts] == UInt8(ascii: "/") {
            // origin-form
        } else if t - ts == 1 && s[ts] == UInt8(ascii: "*") {
            request.pathRange = ts..<t
            return nil
        } else {
            // absolute-form: scheme "://" authority [path-abempty] ["?" query]
            var k = ts
            while k < t && s[k] != UInt8(ascii: ":") { k += 1 }
            guard k > ts, k + 2 < t, s[k + 1] == UInt8(ascii: "/"), s[k + 2] == UInt8(ascii: "/") else {
                return HTTPParseError(400, "request target is neither origin-form nor absolute-form")
            }
            k += 3
            while k < t && s[k] != UInt8(ascii: "/") && s[k] != UInt8(ascii: "?") { k += 1 }
            pathStart = k
        }
        var q = pathStart
        while q < t && s[q] != UInt8(ascii: "?") { q += 1 }
        request.pathRange = pathStart..<q
        request.queryRange = q < t ? (q + 1)..<t : nil
        return nil
    }

    mutating func finishHead() -> HTTPParseError? {
        let h = request.headers
        let hosts = h.count(of: "host")
        if request.isAtLeastHTTP11 && hosts != 1 {
            return HTTPParseError(400, hosts == 0 ? "HTTP/1.1 request without Host" : "more than one Host field")
        }
        if hosts > 1 { return HTTPParseError(400, "more than one Host field") }
        var length: Int? = nil
        var bad = false
        h.forEachListElement("content-length") { e in
            var v = 0
            for c in e {
                guard c &- 0x30 < 10, v < Int.max / 10 - 9 else { bad = true; return false }
                v = v * 10 + Int(c - 0x30)
            }
            if let l = length, l != v { bad = true; return false }
            length = v
            return true
        }
        if bad || (length == nil && h.count(of: "content-length") > 0) {
            return HTTPParseError(400, "invalid or conflicting Content-Length")
        }
        if h.count(of: "transfer-encoding") > 0 {
            if length != nil { return HTTPParseError(400, "both Transfer-Encoding and Content-Length") }
            if !request.isAtLeastHTTP11 { return HTTPParseError(400, "Transfer-Encoding in an HTTP/1.0 request") }
            var last: ArraySlice<UInt8>? = nil
            h.forEachListElement("transfer-encoding") { last = $0; return true }
            guard let l = last, HTTPBytes.equalsLowercase(l, "chunked") else {
                return HTTPParseError(400, "Transfer-Encoding does not end in chunked")
            }
            isChunked = true
        }
        contentLength = length
        request.contentLength = length
        request.isChunked = isChunked
        return nil
    }
}

/// The client's parser of response heads.
public struct HTTPResponseParser: HTTPHeadParsing {
    public let limits: HTTPLimits
    var scanner = HTTPLineScanner()
    var response = HTTPResponseHead()

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
        response.headers.storage.reserveCapacity(min(limits.maxHeadSize, 1024))
    }

    public var head: HTTPResponseHead { response }

    var headers: HTTPHeaders {
        get { response.headers }
        _modify { yield &response.headers }
    }
    var startLineTooLongStatus: Int { 0 }
    var badStatus: Int { 0 }

    public mutating func feed(_ chunk: UnsafeRawBufferPointer) -> HTTPParseResult {
        feedBytes(chunk)
    }

    public mutating func feed(_ bytes: [UInt8]) -> HTTPParseResult {
        bytes.withUnsafeBytes { feed($0) }
    }

    mutating func parseStartLine(_ r: Range<Int>) -> HTTPParseError? {
        let s = response.headers.storage
        guard r.count >= 12, let v = parseVersion(s, r.lowerBound, r.lowerBound + 8) else {
            return HTTPParseError(0, "malformed status line")
        }
        guard v.0 == 1 else { return HTTPParseError(0, "HTTP version \(v.0).\(v.1) in the status line") }
        let c = r.lowerBound + 9
        guard s[r.lowerBound + 8] == 0x20, s[c] &- 0x30 < 10, s[c + 1] &- 0x30 < 10, s[c + 2] &- 0x30 < 10,
              s[c] != 0x30 else {
            return HTTPParseError(0, "malformed status code")
        }
        response.version = v
        response.status = Int(s[c] - 0x30) * 100 + Int(s[c + 1] - 0x30) * 10 + Int(s[c + 2] - 0x30)
        // RFC 9112 section 4: SP reason-phrase (possibly empty). A missing SP after the code is
        // tolerated, as by most clients.
        if c + 3 < r.upperBound {
            guard s[c + 3] == 0x20 else { return HTTPParseError(0, "malformed status line after the code") }
            for k in (c + 4)..<r.upperBound {
                let b = s[k]
                if (b < 0x20 && b != 0x09) || b == 0x7F { return HTTPParseError(0, "control byte in the reason phrase") }
            }
            response.reasonRange = (c + 4)..<r.upperBound
        } else {
            response.reasonRange = r.upperBound..<r.upperBound
        }
        return nil
    }

    mutating func finishHead() -> HTTPParseError? { nil }
}
