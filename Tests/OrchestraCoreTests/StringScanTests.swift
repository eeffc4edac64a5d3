import Testing
@testable import OrchestraCore

@Suite struct StringScanTests {
    /// `firstStringStop` (16-, 8- and 1-byte steps) finds the first '"', '\' or control
    /// character at every position around its step boundaries, from every start.
    @Test func firstStopAtEveryPosition() {
        for length in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100] {
            for stopAt in 0...length {
                for stop: UInt8 in [0x22, 0x5C, 0x00, 0x0A, 0x1F] {
                    var b = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                    if stopAt < length { b[stopAt] = stop }
                    b.append(contentsOf: [0x7F, 0xC3, 0xA9])   // never stops
                    let n = b.count
                    for from in Set([0, 1, 9, stopAt, max(stopAt - 17, 0)]) where from <= n {
                        let want = stopAt < length && from <= stopAt ? stopAt : n
                        let got = b.withUnsafeBytes { firstStringStop($0.baseAddress!, from: from, count: n) }
                        #expect(got == want, "length \(length), stop \(stop) at \(stopAt), from \(from)")
                    }
                }
            }
        }
    }

    /// JSON strings with escapes at every offset round-trip through the writer and the scanner.
    @Test func escapesAtEveryOffsetRoundTrip() throws {
        for length in [1, 15, 16, 17, 31, 32, 33, 64, 65, 200] {
            for at in 0..<length {
                for c: UInt8 in [0x22, 0x5C, 0x0A, 0x01, 0x1F] {
                    var s = [UInt8](repeating: UInt8(ascii: "y"), count: length)
                    s[at] = c
                    var w = ByteWriter(capacity: 8)
                    s.withUnsafeBytes { JSONWriter.writeValidString($0, into: &w) }
                    let json = Array(w.bytes)
                    let back = try json.withUnsafeBytes { (b) throws(OrchestraError) -> [UInt8] in
                        var sc = JSONScanner(b, maxDepth: 1)
                        let v = try sc.readString()
                        #expect(sc.pos == b.count)
                        return v
                    }
                    #expect(back == s, "length \(length), \(c) at \(at)")
                }
            }
        }
    }

    /// Every reader of JSON strings (the scanner, the tree, the envelope's text fields, header
    /// keys and values, extension keys, JSONText's compact form and the JSON -> MessagePack
    /// transcoding) gives the same bytes for each escape, and they are the bytes RFC 8259
    /// says (written out here, not computed by the code under test).
    @Test func everyReaderUnescapesAlike() throws {
        let long = String(repeating: "x", count: 40)
        let cases: [(String, [UInt8])] = [
            (#"plain"#, Array("plain".utf8)),
            (#"\"\\\/\b\f\n\r\t"#, [0x22, 0x5C, 0x2F, 0x08, 0x0C, 0x0A, 0x0D, 0x09]),
            (#"\u0000\u001f\u007F"#, [0x00, 0x1F, 0x7F]),
            (#"\u00e9\u00C9"#, [0xC3, 0xA9, 0xC3, 0x89]),
            (#"\u20ac\uFFFF"#, [0xE2, 0x82, 0xAC, 0xEF, 0xBF, 0xBF]),
            (#"\ud83d\ude00\uDBFF\uDFFF"#, [0xF0, 0x9F, 0x98, 0x80, 0xF4, 0x8F, 0xBF, 0xBF]),
            (#"a\u0062c"# + long + #"\n"#, Array("abc".utf8) + Array(long.utf8) + [0x0A]),
        ]
        for (escaped, want) in cases {
            let quoted = "\"" + escaped + "\""
            let scanned = try bytes(quoted).withUnsafeBytes { (b) throws(OrchestraError) -> [UInt8] in
                var sc = JSONScanner(b, maxDepth: 1)
                return try sc.readString()
            }
            #expect(scanned == want, "scanner: \(escaped)")
            let tree = try JSONValue.parse("{" + quoted + ":" + quoted + "}")
            #expect(tree.object.map { Array($0[0].0.utf8) } == want, "tree key: \(escaped)")
            #expect(tree.object.flatMap { $0[0].1.string }.map { Array($0.utf8) } == want, "tree value: \(escaped)")
            let envelope = #"{"id":"# + quoted + #","type":"t","headers":{"# + quoted + ":" + quoted + #"},"x-"# + escaped + #"":1}"#
            let m = try EnvelopeCodec.decode(bytes(envelope), format: .json)
            #expect(m.idBytes == want, "id: \(escaped)")
            #expect(m.headers.first?.key == want, "header key: \(escaped)")
            #expect(m.headers.first?.value == .string(want), "header value: \(escaped)")
            #expect(m.extensions.first?.key == Array("x-".utf8) + want, "extension key: \(escaped)")
            var compact = ByteWriter(capacity: 16)
            bytes(quoted).withUnsafeBytes { JSONText.writeCompact($0, into: &compact) }
            var rewritten = ByteWriter(capacity: 16)
            want.withUnsafeBytes { JSONWriter.writeValidString($0, into: &rewritten) }
            #expect(Array(compact.bytes) == Array(rewritten.bytes), "compact: \(escaped)")
            var mp: [UInt8] = []
            try jsonToMsgPack(bytes(quoted), into: &mp, what: "test")
            #expect(Array(mp.dropFirst(want.count < 32 ? 1 : 2)) == want, "msgpack: \(escaped)")
        }
    }
}
