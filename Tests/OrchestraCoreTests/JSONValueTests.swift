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
}
