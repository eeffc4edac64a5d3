import Testing
@testable import OrchestraCore

@Suite struct JSONValueTests {
    @Test func parsesEveryKindAndWritesItBack() throws {
        let text = #"{"a":1,"b":-2.5,"c":"x\"y\n\u00e9\ud83d\ude00","d":[true,false,null],"e":{},"f":[],"g":-9223372036854775808,"h":18446744073709551616}"#
        let v = try JSONValue.parse(text)
        #expect(v["a"] == .int(1))
        #expect(v["b"]?.double == -2.5)
        #expect(v["c"]?.string == "x\"y\né😀")
        #expect(v["d"] == [true, false, nil])
        #expect(v["e"]?.object?.isEmpty == true)
        #expect(v["g"]?.int == Int64.min)
        #expect(v["h"]?.double == 18446744073709551616.0)
        #expect(v["missing"] == nil)
        // Writing and parsing again gives the same value.
        #expect(try JSONValue.parse(v.jsonText) == v)
        #expect(JSONValue.object([("k", "v"), ("n", 3)]).jsonText == #"{"k":"v","n":3}"#)
    }

    @Test func loneSurrogateIsRefused() {
        expectFailure(.parse, "lone high surrogate") { () throws(OrchestraError) in _ = try JSONValue.parse(#""\ud800x""#) }
    }

    @Test func rejectsBadInputWithOffsets() {
        expectFailure(.parse, "byte 5") { () throws(OrchestraError) in _ = try JSONValue.parse(#"{"a":}"#) }
        expectFailure(.parse, "invalid JSON") { () throws(OrchestraError) in _ = try JSONValue.parse("[1,2") }
        expectFailure(.tooBig, "depth") { () throws(OrchestraError) in _ = try JSONValue.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
        expectFailure(.tooBig, "limit is 4") { () throws(OrchestraError) in _ = try JSONValue.parse("[1,2,3]", limits: DecodeLimits(maxSize: 4)) }
    }

    @Test func setAndRemoveMembers() {
        var v: JSONValue = ["a": 1]
        v.set("b", "x")
        v.set("a", 2)
        v.remove("b")
        #expect(v == ["a": 2])
        #expect(JSONValue.double(.nan).jsonText == "null")
    }

    // MARK: JSONText (no tree)

    /// Texts whose compact form must be what the tree writes: whitespace, every escape,
    /// non-ASCII and emoji raw and escaped, numbers of every shape, duplicate keys, nesting.
    static let compactCases: [String] = [
        #"{}"#, #"[]"#, #""""#, "0", "-0", "-1", "1.0", "1.5e3", "1E2", "-0.0", "0.1", "1e400", "-1e400", "1e-400",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
        "123456789012345678", "1234567890123456789", "18446744073709551616", "2.5E-3", "1e+2",
        "true", "false", "null", " \n\t\r 7 \n",
        #"{"a": 1, "b" :[ 1 , 2.0 , -3e1 ], "c": {"d": null, "e": true, "f": false}}"#,
        #""plain é 😀 \u007f""#,
        #""q\"b\\s\/n\nr\rt\tb\bf\f""#,
        #""\u0000\u001f\u001F\u0041\u00e9\u00E9\ud83d\ude00\u2028\u007F""#,
        #"{"k\u0065y": "v", "key": "w", "key": "dup"}"#,
        #"[[[[{"deep": [0, -0, 0.5, "\"x\""]}]]]]"#,
        #"{"command": "echo \"hi\"\n", "env": {"A": "1"}, "timeout": 30.0, "n": 3, "list": [1, "two", {"3": [4]}]}"#,
        "[\"\u{7f}\", \"tab\\there\"]",
    ]

    @Test func compactFormIsWhatTheTreeWrites() throws {
        for text in JSONValueTests.compactCases {
            let tree = try JSONValue.parse(text).jsonBytes
            let bytes = Array(text.utf8)
            let compact = bytes.withUnsafeBytes { JSONText.compactString($0) }
            #expect(Array(compact.utf8) == tree, "\(text)")
            var w = ByteWriter(capacity: 4)
            bytes.withUnsafeBytes { JSONText.writeCompact($0, into: &w) }
            #expect(Array(w.bytes) == tree, "\(text)")
            // The quick check never claims a text is compact when the tree writes it otherwise.
            if bytes.withUnsafeBytes({ JSONText.isCompact($0) }) { #expect(bytes == tree, "\(text)") }
        }
        // Already compact texts are recognised as such (the fast path is taken).
        for text in [#"{"a":1,"b":[true,false,null],"c":"x y é"}"#, "-12", #"{"n":-9}"#, "[]"] {
            #expect(Array(text.utf8).withUnsafeBytes { JSONText.isCompact($0) }, "\(text)")
        }
    }

    @Test func compactFormOfGeneratedTexts() throws {
        // Random values written with random whitespace and escapes: the compact form is the
        // tree's, for every one of them.
        var rng = SystemRandomNumberGenerator()
        let pieces = ["a", "é", "😀", "\"", "\\", "/", "\n", "\u{1}", "\u{7f}", " ", "x\ty"]
        func ws() -> String { ["", " ", "\n", "\t ", "\r\n"][Int.random(in: 0..<5, using: &rng)] }
        func str() -> String {
            var out = "\""
            for _ in 0..<Int.random(in: 0..<4, using: &rng) {
                let p = pieces[Int.random(in: 0..<pieces.count, using: &rng)]
                for u in p.unicodeScalars {
                    switch (u.value, Int.random(in: 0..<3, using: &rng)) {
                    case (0x22, _): out += "\\\""
                    case (0x5C, _): out += "\\\\"
                    case (0..<0x20, _): out += String(format4: u.value)
                    case (0x2F, 0): out += "\\/"
                    case (let v, 0) where v < 0x10000: out += String(format4: v)
                    case (let v, 0):
                        let x = v - 0x10000
                        out += String(format4: 0xD800 + (x >> 10)) + String(format4: 0xDC00 + (x & 0x3FF))
                    default: out += String(u)
                    }
                }
            }
            return out + "\""
        }
        func num() -> String {
            ["0", "-0", "7", "-42", "3.25", "1e3", "-2.5E-2", "12345678901234567890", "0.1", "5e-324"][Int.random(in: 0..<10, using: &rng)]
        }
        func value(_ depth: Int) -> String {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &rng) {
            case 0: return str()
            case 1: return num()
            case 2: return ["true", "false", "null"][Int.random(in: 0..<3, using: &rng)]
            case 3: return str()
            case 4: return "[" + (0..<Int.random(in: 0..<4, using: &rng)).map { _ in ws() + value(depth + 1) + ws() }.joined(separator: ",") + "]"
            default:
                return "{" + (0..<Int.random(in: 0..<4, using: &rng)).map { _ in ws() + str() + ws() + ":" + ws() + value(depth + 1) + ws() }.joined(separator: ",") + "}"
            }
        }
        for _ in 0..<500 {
            let text = ws() + value(0) + ws()
            let tree = try JSONValue.parse(text).jsonBytes
            #expect(Array(Array(text.utf8).withUnsafeBytes { JSONText.compactString($0) }.utf8) == tree, "\(text)")
        }
    }

    @Test func membersOfAnObjectAsRanges() {
        let text = Array(#" { "taskId" : "t1", "k\u0065y":[1, {"x": 2}] ,"task":{"parameters":{"a":"b"}} } "#.utf8)
        var seen: [(String, Bool, String)] = []
        let ok = text.withUnsafeBytes { b in
            JSONText.forEachMember(of: b) { k, escaped, v in
                seen.append((String(decoding: k, as: UTF8.self), escaped, String(decoding: b[v], as: UTF8.self)))
            }
        }
        #expect(ok)
        #expect(seen.map(\.0) == ["taskId", "k\\u0065y", "task"])
        #expect(seen.map(\.1) == [false, true, false])
        #expect(seen.map(\.2) == [#""t1""#, #"[1, {"x": 2}]"#, #"{"parameters":{"a":"b"}}"#])
        // Whatever JSONValue.parse refuses, or a value that is not an object, is refused.
        let deep = "{\"a\":" + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "}"
        for bad in ["", "[]", "1", "{", #"{"a":1,}"#, #"{"a":1} x"#, #"{"a" 1}"#, #"{"a":"\u{1}"}"#, #"{"a":tru}"#, deep,
                    #"{"a":1}"# + "\u{0}"] {
            #expect(!Array(bad.utf8).withUnsafeBytes { JSONText.forEachMember(of: $0) { _, _, _ in } }, "\(bad)")
        }
        #expect(!Array([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]).withUnsafeBytes { JSONText.forEachMember(of: $0) { _, _, _ in } })
        #expect(!Array("{}".utf8).withUnsafeBytes { JSONText.forEachMember(of: $0, limits: DecodeLimits(maxSize: 1)) { _, _, _ in } })
        // One level less than the limit is accepted, as by the tree parser.
        let fits = "{\"a\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        #expect((try? JSONValue.parse(fits)) != nil)
        #expect(Array(fits.utf8).withUnsafeBytes { JSONText.forEachMember(of: $0) { _, _, _ in } })
        #expect(Array("{}".utf8).withUnsafeBytes { JSONText.forEachMember(of: $0) { _, _, _ in Issue.record("no member") } })
    }

    @Test func objectWriterWritesWhatTheTreeWrites() throws {
        let tricky = "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é 😀"
        var p = JSONObjectWriter(capacity: 1)
        p.string("s", tricky)
        p.int("i", Int64.min)
        p.bool("t", true)
        p.bool("f", false)
        p.double("d", 12.5)
        p.double("whole", 50)
        p.double("nan", .nan)
        Array(tricky.utf8).withUnsafeBytes { p.string("raw", validUTF8: $0) }
        Array(#" { "a" : [ 1.0 , "\u00e9" ] } "#.utf8).withUnsafeBytes { p.compactJSON("j", $0) }
        let tree: JSONValue = ["s": .string(tricky), "i": .int(Int64.min), "t": true, "f": false, "d": .double(12.5),
                               "whole": .double(50), "nan": .double(.nan), "raw": .string(tricky), "j": ["a": [.double(1), "é"]]]
        #expect(p.finish() == tree.jsonBytes)
        var empty = JSONObjectWriter(capacity: 0)
        empty.writer.reserve(0)
        #expect(empty.finish() == Array("{}".utf8))
    }
}

private extension String {
    /// `\uXXXX` in lower- or upper-case hex (at random).
    init(format4 v: UInt32) {
        let digits = Array(Bool.random() ? "0123456789abcdef" : "0123456789ABCDEF")
        self = "\\u" + String([digits[Int(v >> 12 & 0xF)], digits[Int(v >> 8 & 0xF)], digits[Int(v >> 4 & 0xF)], digits[Int(v & 0xF)]])
    }
}
