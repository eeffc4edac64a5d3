import Testing
@testable import OrchestraCore

/// The text storage of decoded messages (one TextBlock) and the JSON decoder's single pass:
/// UTF-8 checked while strings are scanned, the integer fast path, headers in the block.
@Suite struct MessageTextTests {
    static let small = "{\"id\":\"8f14e45f-ceea-467f-a8f5-3c2e1b6d9a10\",\"type\":\"task.stream\",\"timestamp\":1763880000123,\"version\":\"1.0\",\"source\":\"agent\",\"target\":\"web:42\",\"correlationId\":\"c1d2e3f4\",\"priority\":1,\"ttl\":30000,\"headers\":{\"traceId\":\"abc123\",\"n\":[1, 2]},\"payload\":{\"taskId\":\"t-17\",\"data\":\"a\\nb \u{e9}\"}}"

    @Test func decodedFieldsAndHeaders() throws {
        let m = try EnvelopeCodec.decode(bytes(Self.small), format: .json)
        #expect(m.id == "8f14e45f-ceea-467f-a8f5-3c2e1b6d9a10" && m.type == "task.stream")
        #expect(m.version == "1.0" && m.source == "agent" && m.target == "web:42" && m.correlationId == "c1d2e3f4")
        #expect(m.replyTo == nil && m.replyToBytes == nil && m.get(.replyTo) == nil && m.textStorage(.replyTo) == nil)
        #expect(m.headers == [Field("traceId", "abc123"), Field(key: bytes("n"), value: .json(bytes("[1, 2]")))])
        #expect(m.headerCount == 2 && m.header("traceId") == "abc123" && m.header(bytes("n")) == .json(bytes("[1, 2]")))
        #expect(m.header("nope") == nil)
        // The storage views agree with the arrays.
        for f in TextField.allCases {
            #expect(m.textStorage(f).map { Array($0) } == m.get(f), "\(f)")
        }
        let h = m.headerStorage(at: 1)
        #expect(Array(h.key) == bytes("n") && Array(h.value) == bytes("[1, 2]") && h.isJSON)
        #expect(m.headerIndex(UnsafeRawBufferPointer(start: nil, count: 0)) == nil)
        // Round trip.
        let again = try EnvelopeCodec.decode(EnvelopeCodec.encode(m, format: .json), format: .json)
        #expect(again.headers == m.headers && again.idBytes == m.idBytes && again.payload == m.payload)
        let viaMsgPack = try EnvelopeCodec.decode(EnvelopeCodec.encode(m, format: .msgpack), format: .msgpack)
        // (MessagePack carries the JSON header value as values: it comes back without spaces.)
        #expect(viaMsgPack.headers == [Field("traceId", "abc123"), Field(key: bytes("n"), value: .json(bytes("[1,2]")))])
        #expect(viaMsgPack.targetBytes == m.targetBytes)
    }

    @Test func escapedTextAndKeys() throws {
        let m = try EnvelopeCodec.decode(bytes("{\"i\\u0064\":\"a\\\"b\\u00e9\\ud834\\udd1e\",\"type\":\"t\",\"headers\":{\"k\\n\":\"v\\t\",\"x\":\"\"}}"), format: .json)
        #expect(m.idBytes == bytes("a\"b\u{e9}\u{1D11E}") && m.type == "t")
        #expect(m.headers == [Field("k\n", "v\t"), Field("x", "")])
    }

    @Test func settersReplaceOneFieldOnly() throws {
        let m = try EnvelopeCodec.decode(bytes(Self.small), format: .json)
        let id = try #require(m.textStorage(.id))
        let trace = m.headerStorage(at: 0).value
        try m.set(.type, bytes("other.subject"))
        m.source = nil
        m.targetBytes = bytes("web:43")
        // Pointers to fields that did not change still show the same bytes.
        #expect(m.textStorage(.id)?.baseAddress == id.baseAddress && Array(id) == bytes("8f14e45f-ceea-467f-a8f5-3c2e1b6d9a10"))
        #expect(m.headerStorage(at: 0).value.baseAddress == trace.baseAddress && Array(trace) == bytes("abc123"))
        #expect(m.type == "other.subject" && m.source == nil && m.target == "web:43" && m.version == "1.0")
        // Header changes keep the other headers' values.
        try m.setHeader(bytes("traceId"), .string(bytes("xyz")))
        m.setHeader("added", "1")
        #expect(m.headers == [Field("traceId", "xyz"), Field(key: bytes("n"), value: .json(bytes("[1, 2]"))), Field("added", "1")])
        #expect(m.removeHeader(bytes("n")) && !m.removeHeader(bytes("n")))
        #expect(m.headers == [Field("traceId", "xyz"), Field("added", "1")])
        let s = String(decoding: try EnvelopeCodec.encode(m, format: .json), as: UTF8.self)
        #expect(s.contains("\"type\":\"other.subject\"") && !s.contains("\"source\"") && s.contains("\"target\":\"web:43\""))
        #expect(s.contains("\"headers\":{\"traceId\":\"xyz\",\"added\":\"1\"}"))
    }

    @Test func copiesAreIndependent() throws {
        let m = try EnvelopeCodec.decode(bytes(Self.small), format: .json)
        let c = m.copy()
        c.type = "changed"
        c.setHeader("traceId", "changed")
        #expect(m.type == "task.stream" && m.header("traceId") == "abc123")
        #expect(c.type == "changed" && c.header("traceId") == "changed" && c.id == m.id)
        m.headers = []
        #expect(m.headerCount == 0 && c.headerCount == 2)
    }

    /// Every input with invalid UTF-8 anywhere reports the first invalid byte (as the separate
    /// validation pass did), whatever else is wrong with it; valid inputs never report UTF-8.
    @Test func utf8ErrorsComeFirst() {
        let base = bytes(Self.small)
        let bad: [[UInt8]] = [[0xFF], [0xC3], [0xC3, 0x28], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80],
                              [0xF4, 0x90, 0x80, 0x80], [0xF0, 0x80, 0x80, 0x80], [0x80], [0xC2, 0xA9]]
        var checked = 0
        for seq in bad {
            for at in stride(from: 0, through: base.count, by: 3) {
                for cut in [false, true] {
                    var input = base
                    input.insert(contentsOf: seq, at: at)
                    if cut { input = Array(input.prefix(at + seq.count + 5)) }
                    let expected = input.withUnsafeBytes { UTF8Validator.firstInvalidOffset($0) }
                    do {
                        _ = try EnvelopeCodec.decode(input, format: .json)
                        #expect(expected == nil, "decoded input with invalid UTF-8 at \(at)")
                    } catch {
                        if let k = expected {
                            #expect(error.code == .parse && error.message == "invalid JSON at byte \(k): invalid UTF-8",
                                    "at \(at): \(error.message)")
                        } else {
                            #expect(!error.message.contains("UTF-8"), "at \(at): \(error.message)")
                        }
                    }
                    checked += 1
                }
            }
        }
        #expect(checked > 1000)
        // Valid non-ASCII text is kept byte for byte, in fields, keys, headers and the payload.
        let m = try? EnvelopeCodec.decode(bytes("{\"id\":\"\u{e9}\u{4e2d}\u{1F600}\",\"type\":\"t\",\"headers\":{\"\u{df}\":\"\u{20ac}\"},\"\u{e9}x\":\"\u{e9}\",\"payload\":[\"\u{10FFFF}\"]}"), format: .json)
        #expect(m?.id == "\u{e9}\u{4e2d}\u{1F600}" && m?.header("\u{df}") == "\u{20ac}")
        #expect(m?.extensions == [Field(key: bytes("\u{e9}x"), value: .json(bytes("\"\u{e9}\"")))])
        #expect(m?.payload == bytes("[\"\u{10FFFF}\"]"))
    }

    /// The integer fast path gives what the full parser gives (values and errors).
    @Test func integers() {
        let ok: [(String, Int64)] = [("0", 0), ("-0", 0), ("7", 7), ("-7", -7), ("30000", 30000),
                                     ("1763880000123", 1763880000123), ("999999999999999999", 999999999999999999),
                                     ("1000000000000000000", 1000000000000000000), ("9223372036854775807", .max),
                                     ("-9223372036854775808", .min), ("12 ", 12), ("5\n", 5)]
        for (lexeme, v) in ok {
            let m = try? EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":\(lexeme)}"), format: .json)
            #expect(m?.timestamp == v, "\(lexeme)")
        }
        let bad: [(String, ErrorCode, String)] = [
            ("01", .parse, "leading zeros are not allowed"),
            ("-", .parse, "expected a digit in number"),
            ("-a", .parse, "expected a digit in number"),
            ("1.5", .parse, "\"timestamp\" must be an integer, got 1.5 (fractions and exponents are not allowed)"),
            ("1e3", .parse, "fractions and exponents are not allowed"),
            ("2E+1", .parse, "fractions and exponents are not allowed"),
            ("9223372036854775808", .parse, "\"timestamp\" 9223372036854775808 is out of the 64-bit integer range"),
            ("-9223372036854775809", .parse, "out of the 64-bit integer range"),
            ("123456789012345678901234", .parse, "out of the 64-bit integer range"),
            ("\"1\"", .parse, "\"timestamp\" must be an integer, got a string"),
            ("12x", .parse, "expected ',' or '}' after object member"),
        ]
        for (lexeme, code, fragment) in bad {
            expectFailure(code, fragment) { () throws(OrchestraError) in
                _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":\(lexeme)}"), format: .json)
            }
        }
        expectFailure(.parse, "at byte 35: unexpected end of input, expected ',' or '}'") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"timestamp\":12"), format: .json)
        }
    }

    @Test func headerErrors() {
        expectFailure(.parse, "invalid envelope at byte 31: duplicate key \"a\" in \"headers\"") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"headers\":{\"a\":1,\"b\":\"x\",\"a\":\"y\"}}"), format: .json)
        }
        // Past 16 headers the duplicate check uses a set; the first repeated key is named.
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k7\":\"again\""
        expectFailure(.parse, "duplicate key \"k7\" in \"headers\"") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"headers\":{\(many)}}"), format: .json)
        }
        expectFailure(.parse, "\"headers\" must be an object, got an array") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(bytes("{\"id\":\"1\",\"type\":\"t\",\"headers\":[]}"), format: .json)
        }
        // Many headers and long texts spill the decoder's stack scratch to the heap.
        let long = String(repeating: "v", count: 3000)
        let lots = (0..<100).map { "\"key\($0)\":\"\(long.prefix($0 * 7))\"" }.joined(separator: ",")
        let m = try? EnvelopeCodec.decode(bytes("{\"id\":\"\(long)\",\"type\":\"t\",\"headers\":{\(lots)}}"), format: .json)
        #expect(m?.headerCount == 100 && m?.id == long)
        #expect(m?.header("key99") == String(long.prefix(693)) && m?.header("key0") == "")
    }
}
