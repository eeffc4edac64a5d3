import Testing
@testable import OrchestraNet

@Suite struct HTTPParserTests {
    static let upgrade = bytes("GET /chat/room?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
        + "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + "Sec-WebSocket-Version: 13\r\nX-Multi: a\r\nx-multi:   b  \r\nEmpty:\r\n\r\n")

    /// Feeds in chunks; returns the outcome and, when done, the bytes consumed from the whole input.
    func parseRequest(_ input: [UInt8], chunks: [Int] = [], limits: HTTPLimits = HTTPLimits()) -> (HTTPParseResult, Int, HTTPRequestParser) {
        var p = HTTPRequestParser(limits: limits)
        var pos = 0
        var sizes = chunks[...]
        while true {
            let n = min(sizes.popFirst() ?? (input.count - pos), input.count - pos)
            let r = Array(input[pos..<(pos + n)]).withUnsafeBytes { p.feed($0) }
            switch r {
            case .needMore:
                pos += n
                if pos >= input.count { return (r, pos, p) }
            case .done(let c): return (r, pos + c, p)
            case .error: return (r, pos, p)
            }
        }
    }

    func status(_ input: String, limits: HTTPLimits = HTTPLimits()) -> Int? {
        if case .error(let e) = parseRequest(bytes(input), limits: limits).0 { return e.status }
        return nil
    }

    @Test func parsesAnUpgradeRequest() {
        let (r, consumed, p) = parseRequest(Self.upgrade + bytes("\u{81}frames"))
        #expect(r == .done(consumed: Self.upgrade.count))
        #expect(consumed == Self.upgrade.count)
        let h = p.head
        #expect(h.methodString == "GET" && h.isGET)
        #expect(h.pathString == "/chat/room")
        #expect(h.queryString == "x=1&y=%20")
        #expect(h.version == (1, 1) && h.isAtLeastHTTP11)
        #expect(h.headers.count == 8)
        #expect(h.headers.string("host") == "example.com:8080")
        #expect(h.headers.string("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ==")
        #expect(h.headers.indices(of: "x-multi").map { String(decoding: h.headers.value(at: $0), as: UTF8.self) } == ["a", "b"])
        #expect(h.headers.string("empty") == "")
        #expect(h.headers.listContains("connection", token: "upgrade"))
        #expect(!h.headers.listContains("connection", token: "close"))
        #expect(h.headers.first("missing") == nil)
    }

    @Test func everySplitGivesTheSameHead() {
        let input = Self.upgrade + bytes("tail")
        for k in 0...input.count {
            let (r, consumed, p) = parseRequest(input, chunks: [k])
            #expect(r != .needMore && consumed == Self.upgrade.count, "split at \(k)")
            #expect(p.head.headers.count == 8 && p.head.pathString == "/chat/room")
        }
        let (r, consumed, _) = parseRequest(input, chunks: byteByByte(input.count))
        #expect(consumed == Self.upgrade.count)
        if case .done(let c) = r { #expect(c == 1) } else { Issue.record("\(r)") }
        var rng = TestRNG(seed: 5)
        for _ in 0..<100 {
            let (r2, c2, _) = parseRequest(input, chunks: randomChunks(input.count, max: 20, &rng))
            guard case .done = r2, c2 == Self.upgrade.count else { Issue.record("\(r2)"); return }
        }
    }

    @Test func needsMoreUntilTheEmptyLine() {
        #expect(parseRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n")).0 == .needMore)
        #expect(parseRequest(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r")).0 == .needMore)
        // Empty lines before the request line are skipped (RFC 9112 section 2.2).
        let (r, c, p) = parseRequest(bytes("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(r == .done(consumed: c) && p.head.pathString == "/")
    }

    @Test func targets() {
        let (_, _, p) = parseRequest(bytes("GET http://h.example:81/a/b?q HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(p.head.pathString == "/a/b" && p.head.queryString == "q")
        let (_, _, p2) = parseRequest(bytes("GET http://h.example HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(p2.head.pathString == "/" && p2.head.queryString == nil)
        let (_, _, p3) = parseRequest(bytes("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(p3.head.pathString == "*")
        let (_, _, p4) = parseRequest(bytes("GET /? HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(p4.head.queryString == "")
        #expect(status("GET example.com HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET /a\u{7F} HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET /é HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
    }

    @Test func requestLineErrors() {
        #expect(status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)        // two spaces
        #expect(status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n") == 400)        // trailing space
        #expect(status("GET /\r\nHost: h\r\n\r\n") == 400)                   // HTTP/0.9 style
        #expect(status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)          // method not a token
        #expect(status(" GET / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.10\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET / http/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == 505)
        #expect(status("GET / HTTP/0.9\r\nHost: h\r\n\r\n") == 505)
        #expect(status("GET / HTTP/1.0\r\n\r\n") == nil)                     // 1.0 needs no Host
    }

    @Test func lineEndings() {
        #expect(status("GET / HTTP/1.1\nHost: h\r\n\r\n") == 400)           // bare LF
        #expect(status("GET / HTTP/1.1\r\nHost: h\n\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\n\n") == 400)
        #expect(status("GET / HTTP/1.1\rHost: h\r\n\r\n") == 400)           // bare CR
        #expect(status("GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n") == 400)
    }

    @Test func fieldErrors() {
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n") == 400)  // obs-fold
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tfolded\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost : h\r\n\r\n") == 400)        // space before colon
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX(y): 1\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{0}b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{1B}b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{7F}\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n") == nil)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: caf\u{E9}\r\n\r\n") == nil)  // obs-text
    }

    @Test func hostRules() {
        #expect(status("GET / HTTP/1.1\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
    }

    @Test func bodyFraming() {
        let (_, _, p) = parseRequest(bytes("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n"))
        #expect(p.contentLength == 12 && !p.isChunked)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        let (_, _, p2) = parseRequest(bytes("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"))
        #expect(p2.isChunked && p2.contentLength == nil)
    }

    @Test func limits() {
        var l = HTTPLimits()
        l.maxStartLineLength = 30
        l.maxFieldLineLength = 20
        l.maxFieldCount = 3
        l.maxHeadSize = 100
        #expect(status("GET /0123456789abcdef HTTP/1.1\r\nHost: h\r\n\r\n", limits: l) == nil)   // 30 bytes
        #expect(status("GET /0123456789abcdefg HTTP/1.1\r\nHost: h\r\n\r\n", limits: l) == 414)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdefg\r\n\r\n", limits: l) == nil)  // 20 bytes
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789abcdefgh\r\n\r\n", limits: l) == 431)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", limits: l) == nil)
        #expect(status("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: l) == 431)
        l.maxFieldCount = 100
        let many = "GET / HTTP/1.1\r\nHost: h\r\n" + String(repeating: "A: 0123456789\r\n", count: 10) + "\r\n"
        #expect(status(many, limits: l) == 431)
        // Limits fail as soon as the excess byte arrives, without waiting for the line's end.
        var p = HTTPRequestParser(limits: l)
        #expect(p.feed(bytes("GET /" + String(repeating: "a", count: 40))) == .error(HTTPParseError(414, "start line longer than 30 bytes")))
        // The default limits accept a realistic browser request.
        let browser = "GET /ws HTTP/1.1\r\nHost: h\r\n" + String(repeating: "Cookie: " + String(repeating: "c", count: 4000) + "\r\n", count: 3) + "\r\n"
        #expect(status(browser) == nil)
    }

    @Test func doneAndErrorAreSticky() {
        var p = HTTPRequestParser()
        #expect(p.feed(bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\nmore")) == .done(consumed: 27))
        #expect(p.feed(bytes("more")) == .done(consumed: 0))
        p.reset()
        #expect(p.feed(bytes("GET /two HTTP/1.1\r\nHost: h\r\n\r\n")) == .done(consumed: 30))
        #expect(p.head.pathString == "/two" && p.head.headers.count == 1)
        var q = HTTPRequestParser()
        guard case .error(let e) = q.feed(bytes("GET / HTTP/1.1\n")) else { Issue.record("expected error"); return }
        #expect(q.feed(bytes("Host: h\r\n\r\n")) == .error(e))
    }

    // MARK: responses

    func parseResponse(_ s: String) -> (HTTPParseResult, HTTPResponseHead) {
        var p = HTTPResponseParser()
        let r = p.feed(bytes(s))
        return (r, p.head)
    }

    @Test func responses() {
        let s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        let (r, h) = parseResponse(s + "\u{81}\u{0}")
        #expect(r == .done(consumed: s.utf8.count))
        #expect(h.status == 101 && String(decoding: h.reason, as: UTF8.self) == "Switching Protocols")
        #expect(h.headers.string("upgrade") == "websocket")
        for k in 0...s.utf8.count {
            var p = HTTPResponseParser()
            let b = bytes(s)
            let r1 = Array(b[0..<k]).withUnsafeBytes { p.feed($0) }
            let r2 = Array(b[k...]).withUnsafeBytes { p.feed($0) }
            #expect(k == b.count ? r1 == .done(consumed: k) : (r1 == .needMore && r2 == .done(consumed: b.count - k)))
            #expect(p.head.status == 101)
        }
        #expect(parseResponse("HTTP/1.1 404 \r\n\r\n").1.status == 404)
        #expect(parseResponse("HTTP/1.1 200\r\n\r\n").1.status == 200)
        for bad in ["HTTP/1.1 99 x\r\n\r\n", "HTTP/1.1 1011 x\r\n\r\n", "HTTP/1.1 abc x\r\n\r\n", "HTTP/2 101 x\r\n\r\n",
                    "HTTP/2.0 101 x\r\n\r\n", "ICY 200 OK\r\n\r\n", "HTTP/1.1 101 x\r\n folded\r\n\r\n", "HTTP/1.1 101 x\n\n",
                    "HTTP/1.1 101 a\u{1}b\r\n\r\n", "HTTP/1.1 012 x\r\n\r\n"] {
            guard case .error(let e) = parseResponse(bad).0 else { Issue.record("accepted \(bad.debugDescription)"); continue }
            #expect(e.status == 0)
        }
    }

    @Test func randomInputNeverTraps() {
        var rng = TestRNG(seed: 99)
        let base = Self.upgrade
        for round in 0..<2000 {
            var s = base
            for _ in 0..<(1 + rng.below(4)) {
                let i = rng.below(s.count)
                switch rng.below(3) {
                case 0: s[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: s.remove(at: i)
                default: s.insert([0x0D, 0x0A, 0x20, 0x3A, 0x2C][rng.below(5)], at: i)
                }
            }
            let whole = parseRequest(s).0
            let split = parseRequest(s, chunks: randomChunks(s.count, max: 9, &rng)).0
            let same: Bool
            switch (whole, split) {
            case (.error(let a), .error(let b)): same = a.status == b.status
            case (.needMore, .needMore): same = true
            case (.done, .done): same = parseRequest(s).1 == parseRequest(s, chunks: [1]).1
            default: same = false
            }
            if !same { Issue.record("round \(round): \(whole) vs \(split)"); return }
        }
    }
}
