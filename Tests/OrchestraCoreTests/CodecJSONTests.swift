import Testing
@testable import OrchestraCore

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ b: [UInt8]?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }

/// Runs `body`, which must throw an OrchestraError with `code` whose message contains `fragment`.
func expectFailure(_ code: ErrorCode, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () throws(OrchestraError) -> Void) {
    do {
        try body()
        Issue.record("expected \(code.name) containing \"\(fragment)\", but nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        #expect(error.message.contains(fragment), "message was: \(error.message)", sourceLocation: sourceLocation)
    }
}

/// A message with every field set, unicode and escapes included.
func fullMessage() throws -> Message {
    let m = Message(type: bytes("task.stream"), id: bytes("0b6f-☃"), timestamp: 1_700_000_000_123,
                    version: bytes("1.0"), source: bytes("agent:\"q\"\\"))
    m.targetBytes = bytes("web:42\n\t")
    m.correlationIdBytes = bytes("c-1 𝄞")
    m.replyToBytes = bytes("reply/to")
    m.ttl = 30_000
    m.priority = .critical
    try m.setHeader(bytes("traceId"), .string(bytes("abc\u{01}")))
    try m.setHeader(bytes("big"), .json(bytes("123456789012345678901234567890")))
    try m.setHeader(bytes("nested"), .json(bytes("{\"a\":[1,{\"b\":null}],\"c\":-1.5e-7}")))
    m.metadata = [Field(key: bytes("retryCount"), value: .json(bytes("3"))),
                  Field(key: bytes("deliveryTag"), value: .string(bytes("t-9")))]
    m.extensions = [Field(key: bytes("x-custom"), value: .json(bytes("[true,false,\"é\"]")))]
    try m.setPayload(json: bytes("{\"text\":\"héllo \\\"w\\\"\",\"n\":[1,2,3],\"deep\":{\"x\":{}}}"))
    return m
}

func expectSameMessage(_ a: Message, _ b: Message, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.idBytes == b.idBytes, sourceLocation: sourceLocation)
    #expect(a.typeBytes == b.typeBytes, sourceLocation: sourceLocation)
    #expect(a.timestamp == b.timestamp, sourceLocation: sourceLocation)
    #expect(a.versionBytes == b.versionBytes, sourceLocation: sourceLocation)
    #expect(a.sourceBytes == b.sourceBytes, sourceLocation: sourceLocation)
    #expect(a.targetBytes == b.targetBytes, sourceLocation: sourceLocation)
    #expect(a.correlationIdBytes == b.correlationIdBytes, sourceLocation: sourceLocation)
    #expect(a.replyToBytes == b.replyToBytes, sourceLocation: sourceLocation)
    #expect(a.ttl == b.ttl, sourceLocation: sourceLocation)
    #expect(a.priority == b.priority, sourceLocation: sourceLocation)
    #expect(a.headers == b.headers, sourceLocation: sourceLocation)
    #expect(a.payload == b.payload, sourceLocation: sourceLocation)
    #expect(a.contentType == b.contentType, sourceLocation: sourceLocation)
    #expect(a.compressed == b.compressed, sourceLocation: sourceLocation)
    #expect(a.encrypted == b.encrypted, sourceLocation: sourceLocation)
    #expect(a.metadata == b.metadata, sourceLocation: sourceLocation)
    #expect(a.extensions == b.extensions, sourceLocation: sourceLocation)
}

@Suite struct CodecJSONValidatorTests {
    @Test func acceptsValidJSON() throws {
        for s in ["0", " -0 ", "1e5", "-1.25E-3", "12.0e+7", "\"\"", "\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\\\\\"\"",
                  "true", "false", "null", "[]", "{}", " [ 1 , { \"a\" : [ ] } ] ", "\"é ✓ 𝄞\"",
                  "123456789012345678901234567890", "{\"a\":1,\"a\":2}"] {
            try JSONValidator.validate(bytes(s))
        }
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        try JSONValidator.validate(bytes(deep))
        let deepObj = String(repeating: "{\"k\":", count: 64) + "1" + String(repeating: "}", count: 64)
        try JSONValidator.validate(bytes(deepObj))
    }

    @Test func rejectsWithPositionAndReason() {
        let cases: [(String, String)] = [
            ("", "at byte 0: unexpected end of input, expected a value"),
            ("{\"a\" 1}", "invalid JSON at byte 5: expected ':' after object key"),
            ("01", "at byte 1: leading zeros are not allowed"),
            ("-01", "leading zeros"),
            ("+1", "unexpected character '+'"),
            (".5", "unexpected character '.'"),
            ("1.", "expected a digit after the decimal point"),
            ("1.e5", "expected a digit after the decimal point"),
            ("1e", "expected a digit in the exponent"),
            ("-", "unexpected end of input in a number"),
            ("-a", "expected a digit in number"),
            ("NaN", "unexpected character 'N'"),
            ("Infinity", "unexpected character 'I'"),
            ("[1,]", "at byte 3: unexpected character ']', expected a value"),
            ("[1 2]", "expected ',' or ']' after array element"),
            ("{\"a\":1,}", "expected a string as object key"),
            ("{\"a\":1 \"b\":2}", "expected ',' or '}' after object member"),
            ("{a:1}", "expected a string as object key"),
            ("[1", "unexpected end of input, expected ',' or ']'"),
            ("\"abc", "unterminated string"),
            ("\"a\nb\"", "at byte 2: control character 0x0A must be escaped"),
            ("\"\\x\"", "invalid escape sequence '\\x'"),
            ("\"\\u12g4\"", "invalid hex digit 'g'"),
            ("\"\\u12\"", "truncated \\u escape"),
            ("\"\\ud800\"", "lone high surrogate \\uD800"),
            ("\"\\ud800\\u0041\"", "lone high surrogate \\uD800 (followed by \\u0041)"),
            ("\"\\udc00\"", "lone low surrogate \\uDC00"),
            ("tru", "invalid literal (expected 'true')"),
            ("nul", "invalid literal"),
            ("1 2", "at byte 2: unexpected data after the JSON value"),
            ("{} x", "unexpected data after the JSON value"),
            ("'a'", "unexpected character '''"),
        ]
        for (input, fragment) in cases {
            expectFailure(.parse, fragment) { () throws(OrchestraError) in try JSONValidator.validate(bytes(input)) }
        }
        expectFailure(.parse, "at byte 2: invalid UTF-8") { () throws(OrchestraError) in
            try JSONValidator.validate([0x22, 0x61, 0xC3, 0x28, 0x22])
        }
        expectFailure(.parse, "invalid UTF-8") { () throws(OrchestraError) in
            try JSONValidator.validate([0x22, 0xED, 0xA0, 0x80, 0x22])   // encoded surrogate
        }
    }

    @Test func limits() {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        expectFailure(.tooBig, "exceeds the depth limit of 64") { () throws(OrchestraError) in try JSONValidator.validate(bytes(deep)) }
        let small = DecodeLimits(maxSize: 10, maxDepth: 2)
        expectFailure(.tooBig, "JSON text is 11 bytes; the limit is 10") { () throws(OrchestraError) in
            try JSONValidator.validate(bytes("[1,2,3,4,5]"), limits: small)
        }
        expectFailure(.tooBig, "depth limit of 2") { () throws(OrchestraError) in
            try JSONValidator.validate(bytes("[[[1]]]"), limits: small)
        }
        // Deep input far past the ceiling fails cleanly (no recursion in the validator).
        let huge = String(repeating: "[", count: 100_000)
        expectFailure(.tooBig, "depth limit of \(DecodeLimits.depthCeiling)") { () throws(OrchestraError) in
            try JSONValidator.validate(bytes(huge), limits: DecodeLimits(maxDepth: Int.max))
        }
    }

    @Test func writerEscapes() throws {
        var out: [UInt8] = []
        try JSONWriter.writeString(bytes("a\"b\\c\n\r\t\u{08}\u{0C}\u{01}\u{1F}é/✓"), into: &out, what: "s")
        #expect(text(out) == "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001fé/✓\"")
        expectFailure(.invalidArgument, "s is not valid UTF-8 (byte 1)") { () throws(OrchestraError) in
            var o: [UInt8] = []
            try JSONWriter.writeString([0x61, 0xFF], into: &o, what: "s")
        }
        out.removeAll()
        JSONWriter.writeInt(Int64.min, into: &out); out.append(0x20)
        JSONWriter.writeInt(0, into: &out); out.append(0x20)
        JSONWriter.writeUInt(UInt64.max, into: &out)
        #expect(text(out) == "-9223372036854775808 0 18446744073709551615")
    }

    @Test func base64() {
        for (raw, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            #expect(Base64.encode(bytes(raw)) == bytes(enc))
            let d = bytes(enc).withUnsafeBytes { Base64.decode($0) }
            #expect((try? d.get()) == bytes(raw))
        }
        let all = (0...255).map { UInt8($0) }
        #expect((try? Base64.encode(all).withUnsafeBytes { Base64.decode($0) }.get()) == all)
        for bad in ["Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zm 9", "Zg==Zg==", "Zm9v\n", "=Zm9", "Zm-v"] {
            let r = bytes(bad).withUnsafeBytes { Base64.decode($0) }
            if case .success = r { Issue.record("base64 \"\(bad)\" was accepted") }
        }
    }

    /// The URL-safe form (JWTs) is the standard one with '-' and '_' for '+' and '/' and no
    /// padding, for every length and byte; it decodes padded or not, and refuses the standard
    /// alphabet's two characters.
    @Test func base64URLIsTheStandardFormRespelled() {
        func respell(_ s: String) -> String {
            String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
        }
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
        for n in 0..<70 {
            let raw = (0..<n).map { _ -> UInt8 in
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                return UInt8(truncatingIfNeeded: rng)
            }
            let standard = String(decoding: Base64.encode(raw), as: UTF8.self)
            let url = Base64URL.encode(raw)
            #expect(url == respell(standard).filter { $0 != "=" }, "\(n) bytes")
            #expect(Base64URL.decode(url) == raw, "\(n) bytes")
            #expect(Base64URL.decode(respell(standard)) == raw, "\(n) bytes, padded")
            if standard.contains("+") || standard.contains("/") { #expect(Base64URL.decode(standard) == nil) }
        }
    }
}

@Suite struct CodecJSONEnvelopeTests {
    @Test func roundTripAllFields() throws {
        let m = try fullMessage()
        let encoded = try EnvelopeCodec.encode(m, format: .json)
        try JSONValidator.validate(encoded)
        let d = try EnvelopeCodec.decode(encoded, format: .json)
        expectSameMessage(m, d)
        #expect(try EnvelopeCodec.encode(d, format: .json) == encoded)
        let s = text(encoded)!
        #expect(s.hasPrefix("{\"id\":\"0b6f-☃\",\"type\":\"task.stream\",\"timestamp\":1700000000123,\"version\":\"1.0\",\"source\":\"agent:\\\"q\\\"\\\\\",\"target\":\"web:42\\n\\t\""))
        #expect(s.contains("\"ttl\":30000,\"priority\":3,\"headers\":{\"traceId\":\"abc\\u0001\",\"big\":123456789012345678901234567890,"))
        #expect(s.contains("\"metadata\":{\"retryCount\":3,\"deliveryTag\":\"t-9\"},\"x-custom\":[true,false,\"é\"],\"payload\":{"))
        #expect(s.hasSuffix("}}"))
    }

    @Test func minimalAndKeyOrder() throws {
        let m = Message(type: bytes("a.b"), id: bytes("1"))
        #expect(text(try EnvelopeCodec.encode(m, format: .json)) == "{\"id\":\"1\",\"type\":\"a.b\"}")
        let d = try EnvelopeCodec.decode(bytes(" {\"type\":\"a.b\" , \"id\":\"1\"}\n"), format: .json)
        #expect(d.id == "1" && d.type == "a.b")
        #expect(d.timestamp == nil && d.version == nil && d.source == nil && d.ttl == nil && d.priority == nil)
        #expect(d.payload == nil && d.headers.isEmpty && d.metadata.isEmpty && d.extensions.isEmpty)
        #expect(d.contentType == .json)
        // Empty headers/metadata objects are dropped on re-encode (documented).
        let e = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"headers\":{},\"metadata\":{\"compressed\":false}}"), format: .json)
        #expect(text(try EnvelopeCodec.encode(e, format: .json)) == "{\"id\":\"1\",\"type\":\"t\"}")
    }

    @Test func unknownFieldsAndRawValuesKeptExactly() throws {
        let input = "{\"id\":\"x\",\"zeta\":{ \"a\" : [1.50, 2e10] },\"type\":\"t\",\"headers\":{\"h\":[ 1,2 ],\"s\":\"\\u00e9\"},\"alpha\":null,\"payload\":  [1.0, \"\\u0041\"] }"
        let m = try EnvelopeCodec.decode(bytes(input), format: .json)
        #expect(m.extensions == [Field(key: bytes("zeta"), value: .json(bytes("{ \"a\" : [1.50, 2e10] }"))),
                                 Field(key: bytes("alpha"), value: .json(bytes("null")))])
        #expect(m.headers == [Field(key: bytes("h"), value: .json(bytes("[ 1,2 ]"))), Field(key: bytes("s"), value: .string(bytes("é")))])
        #expect(text(m.payload) == "[1.0, \"\\u0041\"]")
        #expect(text(try EnvelopeCodec.encode(m, format: .json)) ==
            "{\"id\":\"x\",\"type\":\"t\",\"headers\":{\"h\":[ 1,2 ],\"s\":\"é\"},\"zeta\":{ \"a\" : [1.50, 2e10] },\"alpha\":null,\"payload\":[1.0, \"\\u0041\"]}")
    }

    @Test func payloadKinds() throws {
        let n = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"payload\":null}"), format: .json)
        #expect(text(n.payload) == "null")
        let t = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"payload\":\"line\\nnext \\ud83d\\ude00\",\"type\":\"t\",\"contentType\":\"text/plain\"}"), format: .json)
        #expect(t.contentType == .text && text(t.payload) == "line\nnext 😀")
        #expect(text(try EnvelopeCodec.encode(t, format: .json)) == "{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"text/plain\",\"payload\":\"line\\nnext 😀\"}")
        let b = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"application/octet-stream\",\"payload\":\"AAEC/w==\"}"), format: .json)
        #expect(b.contentType == .binary && b.payload == [0, 1, 2, 255])
        #expect(text(try EnvelopeCodec.encode(b, format: .json))!.hasSuffix("\"payload\":\"AAEC/w==\"}"))
        let c = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"metadata\":{\"encrypted\":true,\"compressed\":true,\"k\":1},\"payload\":\"AAEC\"}"), format: .json)
        #expect(c.compressed && c.encrypted && c.payload == [0, 1, 2] && c.metadata == [Field(key: bytes("k"), value: .json(bytes("1")))])
        #expect(text(try EnvelopeCodec.encode(c, format: .json)) == "{\"id\":\"1\",\"type\":\"t\",\"metadata\":{\"compressed\":true,\"encrypted\":true,\"k\":1},\"payload\":\"AAEC\"}")
    }

    @Test func integerFields() throws {
        let m = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":-9223372036854775808,\"ttl\":9223372036854775807,\"priority\":0}"), format: .json)
        #expect(m.timestamp == Int64.min && m.ttl == Int64.max && m.priority == .low)
    }

    @Test func rejections() {
        let cases: [(String, ErrorCode, String)] = [
            ("[]", .parse, "the envelope must be a JSON object"),
            ("", .parse, "unexpected end of input"),
            ("{\"type\":\"t\"}", .parse, "missing required field \"id\""),
            ("{\"id\":\"1\"}", .parse, "missing required field \"type\""),
            ("{\"id\":\"\",\"type\":\"t\"}", .parse, "\"id\" must not be empty"),
            ("{\"id\":1,\"type\":\"t\"}", .parse, "\"id\" must be a string, got a number"),
            ("{\"id\":\"1\",\"type\":null}", .parse, "\"type\" must be a string, got null"),
            ("{\"id\":\"1\",\"type\":\"t\",\"source\":[]}", .parse, "\"source\" must be a string, got an array"),
            ("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":1.5}", .parse, "\"timestamp\" must be an integer, got 1.5 (fractions and exponents are not allowed)"),
            ("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":1e3}", .parse, "\"timestamp\" must be an integer, got 1e3"),
            ("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":\"5\"}", .parse, "\"timestamp\" must be an integer, got a string"),
            ("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":9223372036854775808}", .parse, "\"timestamp\" 9223372036854775808 is out of the 64-bit integer range"),
            ("{\"id\":\"1\",\"type\":\"t\",\"ttl\":-1}", .parse, "\"ttl\" must not be negative (got -1)"),
            ("{\"id\":\"1\",\"type\":\"t\",\"priority\":4}", .parse, "\"priority\" must be 0, 1, 2 or 3 (got 4)"),
            ("{\"id\":\"1\",\"type\":\"t\",\"priority\":true}", .parse, "\"priority\" must be an integer, got a boolean"),
            ("{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"image/png\"}", .parse, "unknown contentType \"image/png\""),
            ("{\"id\":\"1\",\"type\":\"t\",\"id\":\"2\"}", .parse, "duplicate key \"id\""),
            ("{\"id\":\"1\",\"type\":\"t\",\"x\":1,\"x\":2}", .parse, "duplicate key \"x\" in the envelope"),
            ("{\"id\":\"1\",\"type\":\"t\",\"headers\":{\"a\":\"1\",\"a\":\"2\"}}", .parse, "duplicate key \"a\" in \"headers\""),
            ("{\"id\":\"1\",\"type\":\"t\",\"metadata\":{\"k\":1,\"k\":2}}", .parse, "duplicate key \"k\" in \"metadata\""),
            ("{\"id\":\"1\",\"type\":\"t\",\"headers\":[]}", .parse, "\"headers\" must be an object, got an array"),
            ("{\"id\":\"1\",\"type\":\"t\",\"metadata\":{\"compressed\":\"yes\"}}", .parse, "\"metadata.compressed\" must be true or false"),
            ("{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"text/plain\",\"payload\":5}", .parse, "a text/plain payload must be a JSON string"),
            ("{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"application/octet-stream\",\"payload\":\"AB\"}", .parse, "payload is not valid base64"),
            ("{\"id\":\"1\",\"type\":\"t\",\"contentType\":\"application/octet-stream\",\"payload\":[1]}", .parse, "must be a base64 string"),
            ("{\"id\":\"1\",\"type\":\"t\",\"metadata\":{\"encrypted\":true},\"payload\":{}}", .parse, "a compressed or encrypted payload must be a base64 string"),
            ("{\"id\":\"1\",\"type\":\"t\"} {}", .parse, "unexpected data after the JSON value"),
            ("{\"id\":\"1\",\"type\":\"t\",}", .parse, "expected a string as object key"),
            ("{\"id\":\"1\",\"type\":\"t\"", .parse, "unexpected end of input, expected ',' or '}'"),
            ("{\"id\":\"1\",\"type\":\"t\",\"payload\":[1,2}", .parse, "expected ',' or ']' after array element"),
        ]
        for (input, code, fragment) in cases {
            expectFailure(code, fragment) { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(bytes(input), format: .json) }
        }
        let deep = "{\"id\":\"1\",\"type\":\"t\",\"payload\":" + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "}"
        expectFailure(.tooBig, "depth limit of 64") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(bytes(deep), format: .json) }
        let ok = "{\"id\":\"1\",\"type\":\"t\",\"payload\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        #expect((try? EnvelopeCodec.decode(bytes(ok), format: .json)) != nil)
        expectFailure(.tooBig, "envelope is 26 bytes; the limit is 25") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t.long\"}"), format: .json, limits: DecodeLimits(maxSize: 25))
        }
        let longId = "{\"id\":\"" + String(repeating: "a", count: Message.maxTextFieldLength + 1) + "\",\"type\":\"t\"}"
        expectFailure(.tooBig, "\"id\" is 65537 bytes") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(bytes(longId), format: .json) }
        expectFailure(.parse, "invalid UTF-8") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"") + [0xFF] + bytes("\",\"type\":\"t\"}"), format: .json)
        }
    }

    @Test func manyKeysStayLinearAndDuplicatesFound() throws {
        var s = "{\"id\":\"1\",\"type\":\"t\",\"headers\":{"
        for i in 0..<5000 { s += "\"k\(i)\":\"\(i)\"," }
        s += "\"k17\":\"dup\"}}"
        expectFailure(.parse, "duplicate key \"k17\" in \"headers\"") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(bytes(s), format: .json) }
    }

    @Test func encoderRejectsUnencodableMessages() throws {
        let m = Message(type: bytes("t"), id: bytes("1"))
        m.payload = bytes("{not json")
        expectFailure(.invalidArgument, "cannot encode JSON payload") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(m, format: .json) }
        m.payload = nil
        m.sourceBytes = [0xC3]
        expectFailure(.invalidArgument, "source is not valid UTF-8") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(m, format: .json) }
        m.sourceBytes = nil
        m.extensions = [Field(key: bytes("type"), value: .json(bytes("1")))]
        expectFailure(.invalidArgument, "collides with an envelope field") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(m, format: .json) }
        m.extensions = []
        m.idBytes = []
        expectFailure(.invalidArgument, "id is empty") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(m, format: .msgpack) }
    }

    @Test func encodeAppends() throws {
        var out = bytes("prefix")
        try EnvelopeCodec.encode(Message(type: bytes("t"), id: bytes("1")), format: .json, into: &out)
        #expect(text(out) == "prefix{\"id\":\"1\",\"type\":\"t\"}")
    }
}
