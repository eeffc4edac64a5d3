import Testing
import Glibc
import Synchronization
@testable import OrchestraCore
import OrchestraTestSupport

/// The MessagePack envelope {"id":"i","type":"t","payload":<payload>}, `payload` given as
/// raw MessagePack bytes.
private func envelope(payload: [UInt8]) -> [UInt8] {
    [0x83, 0xA2, 0x69, 0x64, 0xA1, 0x69, 0xA4] + bytes("type") + [0xA1, 0x74, 0xA7] + bytes("payload") + payload
}

/// What `jsonToMsgPack` writes for `json` (our encoder's form).
private func packed(_ json: String) throws -> [UInt8] {
    var out: [UInt8] = []
    try jsonToMsgPack(bytes(json), into: &out, what: "test")
    return out
}

private func base(_ a: [UInt8]?) -> UnsafeRawPointer? { a?.withUnsafeBytes { $0.baseAddress } }

/// What the reader threads saw, behind a pthread mutex (TSan does not see the futex inside
/// Synchronization.Mutex and reported the appends as a race; it does see pthread mutexes).
private final class Seen: @unchecked Sendable {
    private var seen: [(UInt, [UInt8])] = []
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        m.initialize(to: pthread_mutex_t())
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    func add(_ p: UnsafeRawPointer?, _ b: [UInt8]) {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        seen.append((UInt(bitPattern: p), b))
    }
    var all: [(UInt, [UInt8])] {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return seen
    }
}

@Suite struct PayloadFormTests {
    static let json = "{\"s\":\"a\\nb\\u0001\\\"q\\\" h\u{e9}\",\"n\":[0,-1,127,128,-33,65536,-2147483649,18446744073709551615,0.5,-0.0,1e+300],\"t\":true,\"z\":null,\"o\":{},\"l\":[" + (0..<20).map(String.init).joined(separator: ",") + "]}"

    /// A JSON payload in our encoder's form is kept as MessagePack: encoding it again is a copy
    /// (the same bytes), and `payload` still gives its JSON text.
    @Test func msgpackPayloadIsKeptAndCopied() throws {
        let src = Message(type: bytes("t"), id: bytes("i"))
        try src.setPayload(json: bytes(PayloadFormTests.json))
        let wire = try EnvelopeCodec.encode(src, format: .msgpack)
        let d = try EnvelopeCodec.decode(wire, format: .msgpack)
        #expect(d.payloadForm == .msgpack)
        #expect(d.payloadStorage == (try packed(PayloadFormTests.json)))
        #expect(try EnvelopeCodec.encode(d, format: .msgpack) == wire)
        #expect(d.payloadJSONCache.load(ordering: .acquiring) == nil)   // encoding did not transcode
        #expect(text(d.payload) == PayloadFormTests.json)
        #expect(d.payloadString == PayloadFormTests.json)
        #expect(d.contentType == .json)
        #expect(try EnvelopeCodec.encode(d, format: .json) == EnvelopeCodec.encode(src, format: .json))
        #expect(try EnvelopeCodec.encode(d, format: .msgpack) == wire)   // still a copy after the text was made
    }

    /// Values in another valid form than ours (float32, wider ints or headers than needed) are
    /// decoded to the same JSON text as before and re-encoded in our form, as before.
    @Test func otherFormsAreReencodedAsBefore() throws {
        let f32: [UInt8] = [0xCA] + withUnsafeBytes(of: Float(0.5).bitPattern.bigEndian, Array.init)
        let cases: [([UInt8], String)] = [
            (f32, "0.5"),
            ([0xD0, 0x05], "5"),
            ([0xCC, 0x05], "5"),
            ([0xCD, 0x00, 0x80], "128"),
            ([0xD1, 0xFF, 0xFF], "-1"),
            ([0xD2, 0xFF, 0xFF, 0xFF, 0x7F], "-129"),
            ([0xD3, 0, 0, 0, 0x01, 0, 0, 0, 0], "4294967296"),
            ([0xCF, 0, 0, 0, 0, 0, 0, 0, 0x01], "1"),
            ([0xD9, 0x01, 0x61], "\"a\""),
            ([0xDA, 0x00, 0x01, 0x61], "\"a\""),
            ([0xDC, 0x00, 0x01, 0x01], "[1]"),
            ([0xDD, 0x00, 0x00, 0x00, 0x01, 0x01], "[1]"),
            ([0xDE, 0x00, 0x01, 0xA1, 0x6B, 0x01], "{\"k\":1}"),
            ([0x81, 0xD9, 0x01, 0x6B, 0x01], "{\"k\":1}"),
            ([0x92, 0x01, 0x91, 0xCD, 0x00, 0x01], "[1,[1]]"),
            ([0x81, 0xA1, 0x6B, 0x91, f32[0], f32[1], f32[2], f32[3], f32[4]], "{\"k\":[0.5]}"),
        ]
        for (raw, json) in cases {
            let d = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack)
            #expect(d.payloadForm == .bytes, "\(raw)")
            #expect(text(d.payload) == json)
            let ours = try packed(json)
            #expect(ours != raw)
            #expect(try EnvelopeCodec.encode(d, format: .msgpack) == envelope(payload: ours), "\(raw)")
            // The same bytes as a message built from the JSON text.
            let twin = Message(type: bytes("t"), id: bytes("i"))
            try twin.setPayload(json: bytes(json))
            #expect(try EnvelopeCodec.encode(twin, format: .msgpack) == envelope(payload: ours))
        }
    }

    /// Our form, at the edges of each size class, is kept and copied.
    @Test func ourFormAtTheEdgesIsKept() throws {
        let s31 = String(repeating: "x", count: 31), s32 = String(repeating: "y", count: 32)
        let s256 = String(repeating: "z", count: 256), s65536 = String(repeating: "w", count: 65536)
        let texts = [
            "0", "127", "128", "255", "256", "65535", "65536", "4294967295", "4294967296",
            "9223372036854775807", "18446744073709551615", "-1", "-32", "-33", "-128", "-129",
            "-32768", "-32769", "-2147483648", "-2147483649", "-9223372036854775808",
            "0.1", "-0.0", "5e-324", "1.7976931348623157e+308", "true", "false", "null",
            "\"\"", "\"\(s31)\"", "\"\(s32)\"", "\"\(s256)\"", "\"\(s65536)\"",
            "[]", "{}", "[" + (0..<15).map(String.init).joined(separator: ",") + "]",
            "[" + (0..<16).map(String.init).joined(separator: ",") + "]",
            "[" + (0..<65536).map { _ in "0" }.joined(separator: ",") + "]",
            "{" + (0..<16).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}",
            "{\"\(s32)\":[[[{}]]]}",
        ]
        for json in texts {
            let raw = try packed(json)
            let d = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack)
            #expect(d.payloadForm == .msgpack, "\(json.prefix(40))")
            #expect(text(d.payload) == json, "\(json.prefix(40))")
            #expect(try EnvelopeCodec.encode(d, format: .msgpack) == envelope(payload: raw), "\(json.prefix(40))")
        }
    }

    /// Errors in a JSON payload are still reported by the decoder, with the same texts.
    @Test func errorsAreReportedAtDecoding() throws {
        let cases: [([UInt8], ErrorCode, String)] = [
            ([0x91, 0xC4, 0x00], .parse, "invalid MessagePack at byte 22: bin where a JSON value is expected"),
            ([0x92, 0x01, 0xD4, 0x01, 0x00], .parse, "at byte 23: ext type 1 where a JSON value is expected"),
            ([0x81, 0x01, 0x02], .parse, "at byte 22: a map key must be a str"),
            ([0x81, 0xA1, 0xFF, 0x02], .parse, "at byte 23: a map key is not valid UTF-8"),
            ([0xA2, 0x61, 0xC0], .parse, "at byte 23: str is not valid UTF-8"),
            ([0x91, 0xCB, 0x7F, 0xF0, 0, 0, 0, 0, 0, 0], .parse, "at byte 22: float inf has no JSON form"),
            ([0x92, 0x01], .parse, "truncated input"),
            ([0x91, 0x91, 0x91, 0x90], .tooBig, "MessagePack nesting at byte 23 exceeds the depth limit of 3"),
        ]
        for (raw, code, fragment) in cases {
            expectFailure(code, fragment) { () throws(OrchestraError) in
                _ = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack, limits: DecodeLimits(maxDepth: 3))
            }
        }
        // Within the limit it decodes.
        let ok = try EnvelopeCodec.decode(envelope(payload: [0x91, 0x90]), format: .msgpack, limits: DecodeLimits(maxDepth: 3))
        #expect(text(ok.payload) == "[[]]")
    }

    /// The JSON text is made once and kept; a change of the payload drops it; a copy shares it.
    @Test func jsonTextIsMadeOnceAndDroppedOnChange() throws {
        let raw = try packed(PayloadFormTests.json)
        let d = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack)
        let a = d.payload, b = d.payload
        #expect(a != nil && base(a) == base(b))
        let c = d.copy()
        #expect(c.payloadForm == .msgpack && base(c.payload) == base(a))
        #expect(try EnvelopeCodec.encode(c, format: .msgpack) == envelope(payload: raw))
        d.payload = bytes("[1]")
        #expect(d.payloadForm == .bytes && text(d.payload) == "[1]")
        #expect(d.payloadJSONCache.load(ordering: .acquiring) == nil)
        #expect(try EnvelopeCodec.encode(d, format: .msgpack) == envelope(payload: [0x91, 0x01]))
        #expect(text(c.payload) == PayloadFormTests.json)   // the copy keeps its own
        try c.setPayload(json: bytes("{\"a\":2}"))
        #expect(c.payloadForm == .checkedJSON && text(c.payload) == "{\"a\":2}")
    }

    /// A message decoded with a MessagePack JSON payload whose content type is then changed
    /// encodes its payload's JSON text, as before (when the payload was stored as JSON text).
    @Test func contentTypeChangedAfterDecoding() throws {
        let raw = try packed(PayloadFormTests.json)
        for ct in [ContentType.text, .binary] {
            let d = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack)
            d.contentType = ct
            let twin = Message(type: bytes("t"), id: bytes("i"))
            twin.payload = bytes(PayloadFormTests.json)
            twin.contentType = ct
            for f in WireFormat.allCases {
                #expect(try EnvelopeCodec.encode(d, format: f) == EnvelopeCodec.encode(twin, format: f))
            }
        }
        let d = try EnvelopeCodec.decode(envelope(payload: raw), format: .msgpack)
        #expect(try PayloadCompression.compress(d, threshold: 0))
        try PayloadCompression.decompress(d, maxSize: 1 << 20)
        #expect(text(d.payload) == PayloadFormTests.json)
    }

    /// JSON strings with escapes are unescaped straight into the MessagePack output, with the
    /// smallest str header for the unescaped length (shrunk from the raw length's where the
    /// escapes cross a size class).
    @Test func escapedStringsGetTheSmallestHeader() throws {
        func strHeader(_ n: Int) -> [UInt8] {
            n < 32 ? [0xA0 | UInt8(n)] : n <= 0xFF ? [0xD9, UInt8(n)]
                : n <= 0xFFFF ? [0xDA, UInt8(n >> 8), UInt8(n & 0xFF)]
                : [0xDB, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
        }
        let escapes = ["\\n", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\r", "\\t", "\\u0000", "\\u001F",
                       "\\u00e9", "\\u00E9", "\\u20AC", "\\uFFFF", "\\uD834\\uDD1E", "\\udbff\\udfff"]
        var cases: [String] = escapes
        // Unescaped lengths around each class edge (31/32, 255/256, 65535/65536) with raw
        // lengths above them: the header reserved for the raw length is shrunk.
        for edge in [32, 256, 65536] {
            for (e, unescapedCount) in [("\\n", 1), ("\\u20AC", 3), ("\\uD834\\uDD1E", 4)] {
                for target in [edge - 1, edge, edge + 1] {
                    for k in [1, 3] {
                        let filler = String(repeating: "a", count: target - k * unescapedCount)
                        let run = String(repeating: e, count: k)
                        cases.append(filler + run)
                        cases.append(run + filler)
                    }
                }
            }
        }
        for body in cases {
            let json = bytes("\"" + body + "\"")
            let unescaped: [UInt8] = try json.withUnsafeBytes { (b) throws(OrchestraError) -> [UInt8] in
                var sc = JSONScanner(b, maxDepth: 1)
                return try sc.readString()
            }
            var out: [UInt8] = []
            try jsonToMsgPack(json, into: &out, what: "test")
            #expect(out == strHeader(unescaped.count) + unescaped, "\(body.prefix(30)) (\(body.count) raw bytes)")
            // And back: the JSON text of that str decodes to the same bytes.
            let d = try EnvelopeCodec.decode(envelope(payload: out), format: .msgpack)
            let again = try d.payload!.withUnsafeBytes { (b) throws(OrchestraError) -> [UInt8] in
                var sc = JSONScanner(b, maxDepth: 1)
                return try sc.readString()
            }
            #expect(again == unescaped)
        }
    }

    /// Threads reading the payload of a shared message for the first time at once all get the
    /// same text in the same storage (one of them publishes it; run under ThreadSanitizer too).
    @Test func concurrentFirstReadsAgree() throws {
        let wire = envelope(payload: try packed(PayloadFormTests.json))
        for _ in 0..<50 {
            let d = try EnvelopeCodec.decode(wire, format: .msgpack)
            let seen = Seen()
            let threads = (0..<4).map { _ in
                TestThread { let p = d.payload ?? []; seen.add(base(p), p) }
            }
            for t in threads { t.join() }
            let all = seen.all
            #expect(all.count == 4)
            #expect(Set(all.map(\.0)).count == 1)
            #expect(all.allSatisfy { text($0.1) == PayloadFormTests.json })
            #expect(UInt(bitPattern: base(d.payload)) == all[0].0)
        }
    }
}
