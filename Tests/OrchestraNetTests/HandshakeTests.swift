import Testing
import OrchestraCore
@testable import OrchestraNet

func requestHead(_ s: String) -> HTTPRequestHead {
    var p = HTTPRequestParser()
    let r = p.feed(bytes(s))
    guard case .done = r else { Issue.record("request did not parse: \(r)"); return p.head }
    return p.head
}

func responseHead(_ b: [UInt8]) -> HTTPResponseHead {
    var p = HTTPResponseParser()
    let r = p.feed(b)
    guard case .done = r else { Issue.record("response did not parse: \(r)"); return p.head }
    return p.head
}

@Suite struct ServerHandshakeTests {
    static let fields: [(String, String)] = [
        ("Host", "server.example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ("Origin", "http://example.com"),
    ]

    /// The RFC 6455 section 1.3 request, with fields replaced, removed (value nil) or added.
    func request(_ changes: [(String, String?)] = [], line: String = "GET /chat HTTP/1.1") -> String {
        var f = Self.fields.map { ($0.0, Optional($0.1)) }
        for (name, value) in changes {
            if let i = f.firstIndex(where: { $0.0 == name }) { f[i].1 = value } else { f.append((name, value)) }
        }
        return line + "\r\n" + f.compactMap { n, v in v.map { "\(n): \($0)\r\n" } }.joined() + "\r\n"
    }

    func accept(_ s: String, _ config: ServerHandshake.Configuration = .init()) -> Result<ServerHandshake.Accepted, HandshakeError> {
        ServerHandshake.accept(requestHead(s), config)
    }

    func refusal(_ s: String, _ config: ServerHandshake.Configuration = .init()) -> HandshakeError? {
        if case .failure(let e) = accept(s, config) { return e }
        return nil
    }

    @Test func rfcExample() throws {
        #expect(ServerHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==".utf8) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let a = try accept(request()).get()
        #expect(a.subprotocol == nil && a.perMessageDeflate == nil)
        #expect(String(decoding: a.response(), as: UTF8.self) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        let extra = a.response(extra: [HTTPField("Set-Cookie", "s=1"), HTTPField("Bad", "x\r\nInjected: 1")])
        let h = responseHead(extra)
        #expect(h.headers.string("set-cookie") == "s=1" && h.headers.first("bad") == nil && h.headers.first("injected") == nil)
        #expect(ServerHandshake.isUpgradeRequest(requestHead(request())))
        #expect(!ServerHandshake.isUpgradeRequest(requestHead("GET /health HTTP/1.1\r\nHost: h\r\n\r\n")))
    }

    @Test func tokensAreCaseInsensitiveInLists() throws {
        _ = try accept(request([("Upgrade", "WebSocket"), ("Connection", "keep-alive, UPGRADE")])).get()
        _ = try accept(request([("Upgrade", "h2c, websocket"), ("Connection", "close,upgrade")])).get()
        _ = try accept(request([("Connection", "keep-alive"), ("connection", "Upgrade")])).get()
    }

    @Test func missingOrBrokenFields() {
        #expect(refusal(request([("Upgrade", nil)]))?.status == 400)
        #expect(refusal(request([("Upgrade", "websocketx")]))?.status == 400)
        #expect(refusal(request([("Upgrade", "websocket/13")]))?.status == 400)
        #expect(refusal(request([("Connection", nil)]))?.status == 400)
        #expect(refusal(request([("Connection", "keep-alive")]))?.status == 400)
        #expect(refusal(request([("Connection", "upgrades")]))?.status == 400)
        #expect(refusal(request([("Sec-WebSocket-Key", nil)]))?.status == 400)
        #expect(refusal(request([("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==")]))?.status == 400)  // twice
        for key in ["", "not base64!!", "AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAAAAAA",
                    "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAA AAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAB=="] {
            #expect(refusal(request([("Sec-WebSocket-Key", key)]))?.status == 400, "key \(key)")
        }
        // Base64 of 16 bytes, any content.
        #expect(refusal(request([("Sec-WebSocket-Key", "/////////////////////w==")])) == nil)
    }

    @Test func versions() {
        for v in ["8", "12", "14", "13, 8", "013", "13.0", ""] {
            let e = refusal(request([("Sec-WebSocket-Version", v)]))
            #expect(e?.status == 426, "version \(v)")
            #expect(e?.headers == [HTTPField("Sec-WebSocket-Version", "13")])
        }
        let dup = refusal(request([("sec-websocket-version", "13")]))
        #expect(dup?.status == 426)
        let missing = refusal(request([("Sec-WebSocket-Version", nil)]))
        #expect(missing?.status == 400 && missing?.headers == [HTTPField("Sec-WebSocket-Version", "13")])
        // The refusal is a complete response that says which version we speak.
        let r = responseHead(refusal(request([("Sec-WebSocket-Version", "8")]))!.response)
        #expect(r.status == 426 && r.headers.string("sec-websocket-version") == "13")
        #expect(r.headers.string("connection") == "close")
    }

    @Test func methodVersionAndHost() {
        let post = refusal(request(line: "POST /chat HTTP/1.1"))
        #expect(post?.status == 405 && post?.headers == [HTTPField("Allow", "GET")])
        #expect(refusal(request(line: "get /chat HTTP/1.1"))?.status == 405)
        #expect(refusal(request(line: "GET /chat HTTP/1.0"))?.status == 400)
        #expect(refusal(request([("Host", nil)], line: "GET /chat HTTP/1.0"))?.status == 400)
        // A head built without the parser's Host rule still needs exactly one Host.
        var p = HTTPRequestParser()
        _ = p.feed(bytes(request([("Host", nil)], line: "GET /chat HTTP/1.0")))
        var h = p.head
        h.version = (1, 1)
        if case .failure(let e) = ServerHandshake.accept(h) { #expect(e.status == 400) } else { Issue.record("accepted without Host") }
    }

    @Test func subprotocols() throws {
        var c = ServerHandshake.Configuration()
        c.subprotocols = ["v2.orchestra", "v1.orchestra"]
        #expect(try accept(request([("Sec-WebSocket-Protocol", "v1.orchestra, v2.orchestra")]), c).get().subprotocol == "v2.orchestra")
        #expect(try accept(request([("Sec-WebSocket-Protocol", "chat"), ("sec-websocket-protocol", "v1.orchestra")]), c).get().subprotocol == "v1.orchestra")
        let none = try accept(request([("Sec-WebSocket-Protocol", "chat, superchat")]), c).get()
        #expect(none.subprotocol == nil)
        #expect(responseHead(none.response()).headers.first("sec-websocket-protocol") == nil)
        #expect(try accept(request(), c).get().subprotocol == nil)
        let chosen = try accept(request([("Sec-WebSocket-Protocol", "v1.orchestra")]), c).get()
        #expect(responseHead(chosen.response()).headers.string("sec-websocket-protocol") == "v1.orchestra")
        #expect(refusal(request([("Sec-WebSocket-Protocol", "a b")]), c)?.status == 400)
        #expect(refusal(request([("Sec-WebSocket-Protocol", "chat, chat")]), c)?.status == 400)
        #expect(refusal(request([("Sec-WebSocket-Protocol", "a/b")]), c)?.status == 400)
        // Case matters for subprotocols.
        #expect(try accept(request([("Sec-WebSocket-Protocol", "V1.orchestra")]), c).get().subprotocol == nil)
    }

    @Test func deflateInTheHandshake() throws {
        var c = ServerHandshake.Configuration()
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=12"
        #expect(try accept(request([("Sec-WebSocket-Extensions", offer)]), c).get().perMessageDeflate == nil,
                "not configured: not negotiated")
        c.perMessageDeflate = PerMessageDeflate.Configuration()
        let a = try accept(request([("Sec-WebSocket-Extensions", offer)]), c).get()
        #expect(a.perMessageDeflate?.serverMaxWindowBits == 12)
        #expect(responseHead(a.response()).headers.string("sec-websocket-extensions") == "permessage-deflate; server_max_window_bits=12")
        #expect(try accept(request(), c).get().perMessageDeflate == nil)
        #expect(refusal(request([("Sec-WebSocket-Extensions", "permessage-deflate; =1")]), c)?.status == 400)
    }
}

@Suite struct ClientHandshakeTests {
    func server(_ request: [UInt8], _ config: ServerHandshake.Configuration = .init()) -> ServerHandshake.Accepted? {
        var p = HTTPRequestParser()
        guard case .done = p.feed(request) else { Issue.record("request did not parse"); return nil }
        switch ServerHandshake.accept(p.head, config) {
        case .success(let a): return a
        case .failure(let e): Issue.record("server refused: \(e)"); return nil
        }
    }

    /// A 101 response for `c`'s key, with fields replaced or added.
    func response(_ c: ClientHandshake, _ extra: String = "", accept: String? = nil) -> HTTPResponseHead {
        let a = accept ?? ServerHandshake.acceptValue(forKey: c.key.utf8)
        return responseHead(bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  + "Sec-WebSocket-Accept: \(a)\r\n\(extra)\r\n"))
    }

    func failure(_ r: Result<ClientHandshake.Accepted, HandshakeError>) -> String? {
        if case .failure(let e) = r { return e.message }
        return nil
    }

    @Test func roundTripWithOurServer() throws {
        var cc = ClientHandshake.Configuration()
        cc.subprotocols = ["v1.orchestra", "chat"]
        cc.perMessageDeflate = PerMessageDeflate.Configuration()
        cc.headers = [HTTPField("Origin", "https://app.example"), HTTPField("Authorization", "Bearer t0k3n")]
        let c = try ClientHandshake(host: "hub.example:8443", target: "/ws?agent=7", cc)
        var p = HTTPRequestParser()
        #expect(p.feed(c.request) == .done(consumed: c.request.count))
        #expect(p.head.pathString == "/ws" && p.head.queryString == "agent=7")
        #expect(p.head.headers.string("host") == "hub.example:8443")
        #expect(p.head.headers.string("origin") == "https://app.example")
        #expect(p.head.headers.string("sec-websocket-extensions") == "permessage-deflate; client_max_window_bits")
        var sc = ServerHandshake.Configuration()
        sc.subprotocols = ["chat"]
        sc.perMessageDeflate = PerMessageDeflate.Configuration()
        sc.perMessageDeflate!.clientMaxWindowBits = 11
        sc.perMessageDeflate!.serverNoContextTakeover = true
        guard let a = server(c.request, sc) else { return }
        let result = try c.validate(responseHead(a.response())).get()
        #expect(result.subprotocol == "chat")
        var expected = PerMessageDeflate.Agreement()
        expected.serverNoContextTakeover = true
        expected.clientMaxWindowBits = 11
        #expect(result.perMessageDeflate == expected)
        #expect(a.perMessageDeflate == expected)
    }

    @Test func keysAreFreshBase64Of16Bytes() throws {
        var keys = Set<String>()
        for _ in 0..<50 {
            let c = try ClientHandshake(host: "h", target: "/")
            guard case .success(let raw) = Array(c.key.utf8).withUnsafeBytes({ Base64.decode($0) }) else {
                Issue.record("key is not base64"); return
            }
            #expect(raw.count == 16)
            keys.insert(c.key)
        }
        #expect(keys.count == 50)
    }

    @Test func responseChecks() throws {
        var cc = ClientHandshake.Configuration()
        cc.subprotocols = ["a", "b"]
        let c = try ClientHandshake(host: "h", target: "/", cc)
        #expect(try c.validate(response(c)).get() == ClientHandshake.Accepted(subprotocol: nil, perMessageDeflate: nil))
        #expect(try c.validate(response(c, "Sec-WebSocket-Protocol: b\r\n")).get().subprotocol == "b")
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Protocol: c\r\n"))) != nil)
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Protocol: a, b\r\n"))) != nil)
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n"))) != nil)
        #expect(failure(c.validate(response(c, accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))) == "wrong Sec-WebSocket-Accept")
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Accept: \(ServerHandshake.acceptValue(forKey: c.key.utf8))\r\n"))) != nil)
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Extensions: permessage-deflate\r\n")))?.contains("not offered") == true)
        #expect(failure(c.validate(response(c, "Sec-WebSocket-Extensions: x-custom\r\n"))) != nil)
        let plain = try ClientHandshake(host: "h", target: "/")
        #expect(failure(plain.validate(response(plain, "Sec-WebSocket-Protocol: a\r\n"))) != nil)
        let accept = ServerHandshake.acceptValue(forKey: c.key.utf8)
        for bad in ["HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n",
                    "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n",
                    "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n",
                    "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"] {
            #expect(failure(c.validate(responseHead(bytes(bad)))) != nil, "\(bad.debugDescription)")
        }
    }

    @Test func requestBuilderRefusesInjection() {
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "/a b") }
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "a") }
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h\r\nX: 1", target: "/") }
        var c = ClientHandshake.Configuration()
        c.headers = [HTTPField("X-Token", "a\r\nInjected: 1")]
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "/", c) }
        c.headers = [HTTPField("Bad Name", "1")]
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "/", c) }
        c.headers = []
        c.subprotocols = ["a,b"]
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "/", c) }
        c.subprotocols = ["a", "a"]
        #expect(throws: HandshakeError.self) { try ClientHandshake(host: "h", target: "/", c) }
    }
}
