import Testing
@testable import OrchestraCore

@Suite struct CodecMsgPackTests {
    @Test func roundTripAllFields() throws {
        let m = try fullMessage()
        #expect(m.removeHeader(bytes("big")))   // beyond 64 bits: JSON only (see the next test)
        let packed = try EnvelopeCodec.encode(m, format: .msgpack)
        let d = try EnvelopeCodec.decode(packed, format: .msgpack)
        #expect(try EnvelopeCodec.encode(d, format: .msgpack) == packed)
        // JSON values come back as compact JSON text with the same meaning.
        #expect(d.idBytes == m.idBytes && d.sourceBytes == m.sourceBytes && d.targetBytes == m.targetBytes)
        #expect(d.timestamp == m.timestamp && d.ttl == m.ttl && d.priority == m.priority)
        #expect(d.header(bytes("traceId")) == .string(bytes("abc\u{01}")))
        #expect(d.header(bytes("nested")) == .json(bytes("{\"a\":[1,{\"b\":null}],\"c\":-1.5e-07}")))
        #expect(d.metadata == m.metadata)
        #expect(d.extensions == m.extensions)
        #expect(text(d.payload) == "{\"text\":\"héllo \\\"w\\\"\",\"n\":[1,2,3],\"deep\":{\"x\":{}}}")
    }

    @Test func bigIntegerOutOfRangeIsAnEncodeError() throws {
        let m = try fullMessage()   // header "big" = 123456789012345678901234567890
        expectFailure(.invalidArgument, "integer 123456789012345678901234567890 is out of MessagePack range") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.encode(m, format: .msgpack)
        }
        let n = Message(type: bytes("t"), id: bytes("1"))
        try n.setPayload(json: bytes("[18446744073709551615,-9223372036854775808,0,-1,-33,127,128,65535,65536,4294967296]"))
        let d = try EnvelopeCodec.decode(try EnvelopeCodec.encode(n, format: .msgpack), format: .msgpack)
        #expect(d.payload == n.payload)
        try n.setPayload(json: bytes("-9223372036854775809"))
        expectFailure(.invalidArgument, "out of MessagePack range") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(n, format: .msgpack) }
        try n.setPayload(json: bytes("1e400"))
        expectFailure(.invalidArgument, "out of the float64 range") { () throws(OrchestraError) in _ = try EnvelopeCodec.encode(n, format: .msgpack) }
    }

    @Test func exactBytesAndSmallestIntegers() throws {
        let m = Message(type: bytes("b"), id: bytes("a"))
        #expect(try EnvelopeCodec.encode(m, format: .msgpack) == [0x82, 0xA2, 0x69, 0x64, 0xA1, 0x61, 0xA4, 0x74, 0x79, 0x70, 0x65, 0xA1, 0x62])
        func packedInt(_ v: Int64) -> [UInt8] { var o: [UInt8] = []; MsgPackWriter.writeInt(v, into: &o); return o }
        #expect(packedInt(0) == [0x00])
        #expect(packedInt(127) == [0x7F])
        #expect(packedInt(128) == [0xCC, 0x80])
        #expect(packedInt(-1) == [0xFF])
        #expect(packedInt(-32) == [0xE0])
        #expect(packedInt(-33) == [0xD0, 0xDF])
        #expect(packedInt(256) == [0xCD, 0x01, 0x00])
        #expect(packedInt(-129) == [0xD1, 0xFF, 0x7F])
        #expect(packedInt(1_700_000_000_123) == [0xCF, 0, 0, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B])
        #expect(packedInt(Int64.min) == [0xD3, 0x80, 0, 0, 0, 0, 0, 0, 0])
        // Containers get their smallest header after transcoding.
        var out: [UInt8] = []
        try jsonToMsgPack(bytes("[" + (0..<16).map(String.init).joined(separator: ",") + "]"), into: &out, what: "x")
        #expect(Array(out.prefix(3)) == [0xDC, 0x00, 0x10] && out.count == 19)
        out.removeAll()
        try jsonToMsgPack(bytes("{\"k\":[],\"s\":\"\",\"f\":0.5,\"t\":true,\"n\":null}"), into: &out, what: "x")
        #expect(out == [0x85, 0xA1, 0x6B, 0x90, 0xA1, 0x73, 0xA0, 0xA1, 0x66, 0xCB, 0x3F, 0xE0, 0, 0, 0, 0, 0, 0,
                        0xA1, 0x74, 0xC3, 0xA1, 0x6E, 0xC0])
    }

    @Test func payloadKindsAndFloats() throws {
        let t = Message(type: bytes("t"), id: bytes("1"))
        t.setPayload(text: "line\nnext ✓")
        let dt = try EnvelopeCodec.decode(try EnvelopeCodec.encode(t, format: .msgpack), format: .msgpack)
        #expect(dt.contentType == .text && dt.payload == t.payload)
        let b = Message(type: bytes("t"), id: bytes("1"))
        b.setPayload(binary: (0...255).map { UInt8($0) })
        let pb = try EnvelopeCodec.encode(b, format: .msgpack)
        #expect(pb.contains(0xC5))   // bin 16
        let db = try EnvelopeCodec.decode(pb, format: .msgpack)
        #expect(db.contentType == .binary && db.payload == b.payload)
        let f = Message(type: bytes("t"), id: bytes("1"))
        try f.setPayload(json: bytes("[0.1,1.0,-0.0,1e300,2.5e-8,1E2,null]"))
        let df = try EnvelopeCodec.decode(try EnvelopeCodec.encode(f, format: .msgpack), format: .msgpack)
        #expect(text(df.payload) == "[0.1,1.0,-0.0,1e+300,2.5e-08,100.0,null]")
        try JSONValidator.validate(df.payload!)
        // float32 is accepted and printed in its own shortest form.
        let f32: [UInt8] = [0x83, 0xA2, 0x69, 0x64, 0xA1, 0x31, 0xA4, 0x74, 0x79, 0x70, 0x65, 0xA1, 0x74,
                            0xA7] + bytes("payload") + [0xCA] + withUnsafeBytes(of: Float(0.1).bitPattern.bigEndian, Array.init)
        #expect(text(try EnvelopeCodec.decode(f32, format: .msgpack).payload) == "0.1")
    }

    @Test func crossFormat() throws {
        let json = "{\"id\":\"i\",\"type\":\"a.b\",\"timestamp\":5,\"version\":\"1.0\",\"ttl\":0,\"priority\":2,\"headers\":{\"h\":\"v\",\"n\":[1,\"x\",{\"y\":false}]},\"metadata\":{\"compressed\":true,\"retry\":2},\"ext\":{\"a\":-3},\"payload\":\"AAEC\"}"
        let m = try EnvelopeCodec.decode(bytes(json), format: .json)
        let viaPack = try EnvelopeCodec.decode(try EnvelopeCodec.encode(m, format: .msgpack), format: .msgpack)
        #expect(text(try EnvelopeCodec.encode(viaPack, format: .json)) == json)
    }

    func key(_ s: String) -> [UInt8] { [0xA0 | UInt8(s.utf8.count)] + bytes(s) }

    static let header: [UInt8] = [0x82, 0xA2, 0x69, 0x64, 0xA1, 0x31, 0xA4, 0x74, 0x79, 0x70, 0x65]   // {"id":"1","type":

    @Test func hostileInput() throws {
        let good = try EnvelopeCodec.encode(try { let m = try fullMessage(); m.headers.removeAll { $0.key == bytes("big") }; return m }(), format: .msgpack)
        // Every strict prefix fails with .parse, never a trap.
        for n in 0..<good.count {
            expectFailure(.parse, "invalid MessagePack at byte") { () throws(OrchestraError) in
                _ = try EnvelopeCodec.decode(Array(good[0..<n]), format: .msgpack)
            }
        }
        func third(_ entry: [UInt8]) -> [UInt8] { [0x83] + Array(CodecMsgPackTests.header.dropFirst()) + [0xA1, 0x74] + entry }
        let cases: [([UInt8], ErrorCode, String)] = [
            ([0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61], .parse, "at byte 0: truncated input: str 32 declares 4294967295 bytes but only 1 remain"),
            ([0x91, 0xC0], .parse, "at byte 0: the envelope must be a map"),
            ([0x81, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF, 0x61], .parse, "at byte 1: truncated input: str 32 declares 4294967295 bytes but only 1 remain"),
            ([0xDF, 0xFF, 0xFF, 0xFF, 0xFF, 0xA0], .parse, "map declares 4294967295 entries but only 1 bytes remain"),
            (third(key("payload") + [0xDD, 0x7F, 0xFF, 0xFF, 0xFF, 0x01]), .parse, "at byte 21: truncated input: array declares 2147483647 elements but only 1 bytes remain"),
            (third(key("x") + [0xC6, 0xFF, 0xFF, 0xFF, 0xF0, 0x00]), .parse, "bin 32 declares 4294967280 bytes but only 1 remain"),
            (Self.header + [0xA1, 0x74, 0xC0], .parse, "at byte 13: 1 trailing bytes after the envelope map"),
            (Self.header + [0x01], .parse, "at byte 11: \"type\" must be a str"),
            ([0x82, 0x01, 0xA1, 0x31, 0xA4, 0x74, 0x79, 0x70, 0x65, 0xA1, 0x74], .parse, "an envelope key must be a str"),
            (Self.header + [0xA1, 0xFF], .parse, "at byte 12: \"type\" is not valid UTF-8"),
            (Self.header + [0xC1], .parse, "invalid type byte 0xC1"),
            ([0x81, 0xA1, 0x78, 0xCB], .parse, "truncated input: expected 8 more bytes"),
            ([0x82, 0xA2, 0x69, 0x64, 0xA1, 0x31, 0xA2, 0x69, 0x64, 0xA1, 0x32], .parse, "duplicate key \"id\""),
            ([0x81, 0xA2, 0x69, 0x64, 0xA1, 0x31], .parse, "missing required field \"type\""),
            ([0x82, 0xA2, 0x69, 0x64, 0xA0, 0xA4, 0x74, 0x79, 0x70, 0x65, 0xA1, 0x74], .parse, "\"id\" must not be empty"),
        ]
        for (input, code, fragment) in cases {
            expectFailure(code, fragment) { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(input, format: .msgpack) }
        }
        // A valid header, then each bad third entry.
        let entries: [([UInt8], ErrorCode, String)] = [
            (key("payload") + [0xC4, 0x01, 0x00], .parse, "bin where a JSON value is expected"),
            (key("payload") + [0xD4, 0x01, 0x00], .parse, "ext type 1 where a JSON value is expected"),
            (key("payload") + [0x81, 0x01, 0x02], .parse, "a map key must be a str"),
            (key("payload") + [0xCB, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0], .parse, "has no JSON form"),
            (key("payload") + [0xCA, 0x7F, 0x80, 0, 0], .parse, "float inf has no JSON form"),
            (key("timestamp") + [0xCF, 0xFF, 0, 0, 0, 0, 0, 0, 0], .parse, "out of the 64-bit integer range"),
            (key("timestamp") + [0xCB, 0, 0, 0, 0, 0, 0, 0, 0], .parse, "\"timestamp\" must be an integer, got a float"),
            (key("ttl") + [0xFF], .parse, "\"ttl\" must not be negative (got -1)"),
            (key("priority") + [0x04], .parse, "\"priority\" must be 0, 1, 2 or 3 (got 4)"),
            (key("headers") + [0x90], .parse, "\"headers\" must be a map"),
            (key("headers") + [0x82, 0xA1, 0x61, 0x01, 0xA1, 0x61, 0x02], .parse, "duplicate key \"a\" in \"headers\""),
            (key("metadata") + [0x81, 0xA9] + bytes("encrypted") + [0x01], .parse, "\"metadata.encrypted\" must be a boolean"),
            (key("contentType") + [0xA3, 0x61, 0x2F, 0x62], .parse, "unknown contentType \"a/b\""),
        ]
        for (entry, code, fragment) in entries {
            expectFailure(code, fragment) { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(third(entry), format: .msgpack) }
        }
        // Payload/contentType mismatches.
        let textPayloadBin = [0x84] + Array(CodecMsgPackTests.header.dropFirst()) + [0xA1, 0x74] + key("contentType") + key("text/plain") + key("payload") + [0xC4, 0x00]
        expectFailure(.parse, "a text/plain payload must be a str") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(textPayloadBin, format: .msgpack) }
        let binPayloadStr = [0x84] + Array(CodecMsgPackTests.header.dropFirst()) + [0xA1, 0x74] + key("contentType") + key("application/octet-stream") + key("payload") + [0xA0]
        expectFailure(.parse, "an application/octet-stream payload must be bin") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(binPayloadStr, format: .msgpack) }
    }

    @Test func depthAndSizeLimits() throws {
        func nested(_ n: Int) -> [UInt8] {
            [0x83] + Array(CodecMsgPackTests.header.dropFirst()) + [0xA1, 0x74] + key("payload")
                + [UInt8](repeating: 0x91, count: n) + [0xC0]
        }
        #expect((try? EnvelopeCodec.decode(nested(63), format: .msgpack)) != nil)
        expectFailure(.tooBig, "exceeds the depth limit of 64") { () throws(OrchestraError) in _ = try EnvelopeCodec.decode(nested(64), format: .msgpack) }
        expectFailure(.tooBig, "depth limit of \(DecodeLimits.depthCeiling)") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(nested(100_000), format: .msgpack, limits: DecodeLimits(maxDepth: .max))
        }
        expectFailure(.tooBig, "the limit is 10") { () throws(OrchestraError) in
            _ = try EnvelopeCodec.decode(nested(1), format: .msgpack, limits: DecodeLimits(maxSize: 10))
        }
    }
}
