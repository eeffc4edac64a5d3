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
}
