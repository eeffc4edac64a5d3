import Testing
@testable import OrchestraNet

@Suite struct PerMessageDeflateTests {
    func elements(_ values: String...) -> Result<[ExtensionElement], HandshakeError> {
        ExtensionElement.parseAll(requestHead("GET / HTTP/1.1\r\nHost: h\r\n"
            + values.map { "Sec-WebSocket-Extensions: \($0)\r\n" }.joined() + "\r\n").headers)
    }

    func negotiate(_ offer: String, _ config: PerMessageDeflate.Configuration = .init()) -> PerMessageDeflate.Agreement? {
        guard case .success(let e) = elements(offer) else { Issue.record("offer did not parse: \(offer)"); return nil }
        return PerMessageDeflate.negotiate(offers: e, config)
    }

    @Test func extensionGrammar() throws {
        let e = try elements("foo, Permessage-Deflate ; Client_Max_Window_Bits ; server_max_window_bits=\"10\"", "bar;x=y").get()
        #expect(e.map { String(decoding: $0.name, as: UTF8.self) } == ["foo", "permessage-deflate", "bar"])
        #expect(e[1].params.map { String(decoding: $0.name, as: UTF8.self) } == ["client_max_window_bits", "server_max_window_bits"])
        #expect(e[1].params[0].value == nil && e[1].params[1].value == bytes("10"))
        #expect(e[2].params[0].value == bytes("y"))
        #expect(try elements("a;b=\"c\\d\"").get()[0].params[0].value == bytes("cd"))
        #expect(try elements(", a ,, b ,").get().count == 2)
        for bad in ["a;", "a; =1", ";a", "a=1", "a;b=", "a;b=\"c", "a;b=\"c d\"", "a;b=\"\"", "a b", "a;b=c d", "a;b=\"c\"d", "a/b"] {
            guard case .failure(let err) = elements(bad) else { Issue.record("accepted \(bad)"); continue }
            #expect(err.status == 400)
        }
    }

    @Test func serverDefaults() {
        let a = negotiate("permessage-deflate")
        #expect(a == PerMessageDeflate.Agreement())
        #expect(a?.responseValue == "permessage-deflate")
        #expect(a?.canCompress(.server) == true && a?.canCompress(.client) == true)
        #expect(negotiate("x-webkit-deflate-frame") == nil)
        #expect(negotiate("x-webkit-deflate-frame, permessage-deflate") == PerMessageDeflate.Agreement())
    }

    @Test func serverParameters() {
        let a = negotiate("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(a?.serverNoContextTakeover == true && a?.clientNoContextTakeover == true)
        #expect(a?.responseValue == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(negotiate("permessage-deflate; server_max_window_bits=10")?.serverMaxWindowBits == 10)
        #expect(negotiate("permessage-deflate; server_max_window_bits=\"9\"")?.serverMaxWindowBits == 9)
        let eight = negotiate("permessage-deflate; server_max_window_bits=8")
        #expect(eight?.serverMaxWindowBits == 8 && eight?.canCompress(.server) == false)
        #expect(negotiate("permessage-deflate; client_max_window_bits")?.clientMaxWindowBits == 15)
        #expect(negotiate("permessage-deflate; client_max_window_bits=12")?.clientMaxWindowBits == 12)
        var c = PerMessageDeflate.Configuration()
        c.clientMaxWindowBits = 10
        c.serverMaxWindowBits = 11
        c.clientNoContextTakeover = true
        let limited = negotiate("permessage-deflate; client_max_window_bits", c)
        #expect(limited?.clientMaxWindowBits == 10 && limited?.serverMaxWindowBits == 11 && limited?.clientNoContextTakeover == true)
        #expect(limited?.responseValue == "permessage-deflate; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10")
        #expect(negotiate("permessage-deflate; client_max_window_bits=9", c)?.clientMaxWindowBits == 9)
        #expect(negotiate("permessage-deflate; server_max_window_bits=14", c)?.serverMaxWindowBits == 11)
        // A client that did not offer client_max_window_bits cannot be limited.
        #expect(negotiate("permessage-deflate", c)?.clientMaxWindowBits == 15)
    }

    @Test func invalidOffersAreDeclinedAndTheNextOneTaken() {
        let bad = ["server_max_window_bits=7", "server_max_window_bits=16", "server_max_window_bits=0",
                   "server_max_window_bits=08", "server_max_window_bits=1a", "server_max_window_bits",
                   "client_max_window_bits=7", "client_max_window_bits=100", "server_no_context_takeover=1",
                   "client_no_context_takeover=true", "server_no_context_takeover; server_no_context_takeover",
                   "client_max_window_bits; client_max_window_bits=10", "mystery", "server_max_window_bits=10; server_max_window_bits=10"]
        for p in bad {
            #expect(negotiate("permessage-deflate; \(p)") == nil, "\(p)")
            var expected = PerMessageDeflate.Agreement()
            expected.clientNoContextTakeover = true
            #expect(negotiate("permessage-deflate; \(p), permessage-deflate; client_no_context_takeover") == expected, "\(p)")
        }
    }

    @Test func clientOffer() {
        var c = PerMessageDeflate.Configuration()
        #expect(PerMessageDeflate.offerValue(c) == "permessage-deflate; client_max_window_bits")
        c.serverNoContextTakeover = true
        c.serverMaxWindowBits = 10
        c.clientMaxWindowBits = 12
        #expect(PerMessageDeflate.offerValue(c) == "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12")
        c = PerMessageDeflate.Configuration()
        c.clientMaxWindowBitsOffered = false
        #expect(PerMessageDeflate.offerValue(c) == "permessage-deflate")
    }

    func clientAccept(_ response: String, _ c: PerMessageDeflate.Configuration = .init()) -> Result<PerMessageDeflate.Agreement, HandshakeError> {
        guard case .success(let e) = elements(response), e.count == 1 else { return .failure(HandshakeError(0, "bad test input")) }
        return PerMessageDeflate.accept(response: e[0], offered: c)
    }

    @Test func clientChecksTheResponse() throws {
        #expect(try clientAccept("permessage-deflate").get() == PerMessageDeflate.Agreement())
        #expect(try clientAccept("permessage-deflate; client_max_window_bits=9").get().clientMaxWindowBits == 9)
        let eight = try clientAccept("permessage-deflate; client_max_window_bits=8").get()
        #expect(eight.clientMaxWindowBits == 8 && !eight.canCompress(.client))
        #expect(try clientAccept("permessage-deflate; server_no_context_takeover; client_no_context_takeover").get()
                .serverNoContextTakeover == true)
        #expect(try clientAccept("permessage-deflate; server_max_window_bits=9").get().serverMaxWindowBits == 9)
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; client_max_window_bits").get() }
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; mystery").get() }
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; server_max_window_bits=16").get() }
        #expect(throws: HandshakeError.self) {
            try clientAccept("permessage-deflate; server_no_context_takeover; server_no_context_takeover").get()
        }
        var notOffered = PerMessageDeflate.Configuration()
        notOffered.clientMaxWindowBitsOffered = false
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; client_max_window_bits=10", notOffered).get() }
        var c = PerMessageDeflate.Configuration()
        c.serverMaxWindowBits = 10
        c.serverNoContextTakeover = true
        c.clientMaxWindowBits = 12
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; server_no_context_takeover", c).get() }
        #expect(throws: HandshakeError.self) { try clientAccept("permessage-deflate; server_max_window_bits=10", c).get() }
        #expect(throws: HandshakeError.self) {
            try clientAccept("permessage-deflate; server_no_context_takeover; server_max_window_bits=11", c).get()
        }
        #expect(throws: HandshakeError.self) {
            try clientAccept("permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13", c).get()
        }
        let ok = try clientAccept("permessage-deflate; server_no_context_takeover; server_max_window_bits=9", c).get()
        #expect(ok.serverMaxWindowBits == 9 && ok.clientMaxWindowBits == 12 && ok.serverNoContextTakeover)
    }
}
