import Testing
@testable import OrchestraNet

@Suite struct UTF8StreamTests {
    /// The offset of the first failing byte, feeding `b` in chunks cut at `cuts`; -1 when the
    /// bytes are valid but end inside a sequence; nil when valid and complete.
    func firstFailure(_ b: [UInt8], cuts: [Int] = []) -> Int? {
        var v = UTF8StreamValidator()
        var start = 0
        for end in cuts + [b.count] where end >= start {
            let r = b[start..<end].withUnsafeBytes { v.feed($0) }
            if let r { return start + r }
            start = end
        }
        return v.isAtBoundary ? nil : -1
    }

    @Test func boundaries() {
        let valid: [[UInt8]] = [
            [0x7F], [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], Array("κόσμε".utf8), [],
        ]
        for v in valid { #expect(firstFailure(v) == nil, "\(v)") }
        // (bytes, offset of the first byte that cannot continue valid text)
        let invalid: [([UInt8], Int)] = [
            ([0xC0, 0x80], 0), ([0xC1, 0xBF], 0),                 // overlong 2-byte
            ([0xE0, 0x80, 0x80], 1), ([0xE0, 0x9F, 0xBF], 1),     // overlong 3-byte
            ([0xF0, 0x80, 0x80, 0x80], 1), ([0xF0, 0x8F, 0xBF, 0xBF], 1),  // overlong 4-byte
            ([0xED, 0xA0, 0x80], 1), ([0xED, 0xBF, 0xBF], 1),     // surrogates
            ([0xF4, 0x90, 0x80, 0x80], 1), ([0xF5, 0x80, 0x80, 0x80], 0), ([0xFF], 0), ([0xFE], 0),  // > U+10FFFF
            ([0x80], 0), ([0xBF], 0),                              // lone continuation
            ([0xC2, 0x41], 1), ([0xE2, 0x82, 0x41], 2), ([0xF0, 0x9F, 0x98, 0x41], 3),  // interrupted
            (Array("abcdefghijklmnop".utf8) + [0xC0], 16),         // after the 8-byte fast path
        ]
        for (b, at) in invalid {
            #expect(firstFailure(b) == at, "\(b)")
            for k in 0...b.count { #expect(firstFailure(b, cuts: [k]) == at, "\(b) cut at \(k)") }
        }
        // Truncated at the end: valid so far, but not at a boundary.
        for b: [UInt8] in [[0xC2], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0x61, 0xF4]] {
            #expect(firstFailure(b) == -1, "\(b)")
            #expect(firstFailure(b, cuts: Array(1..<b.count)) == -1)
        }
    }

    @Test func agreesWithTheStandardLibrary() {
        var rng = TestRNG(seed: 42)
        let pieces: [[UInt8]] = [[0x61], [0xC2, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0xED, 0x9F, 0xBF]]
        for _ in 0..<3000 {
            var b: [UInt8] = []
            for _ in 0..<rng.below(12) { b += pieces[rng.below(pieces.count)] }
            if !b.isEmpty && rng.below(2) == 0 { b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            let reference = String(validating: b, as: UTF8.self) != nil
            let cuts = randomChunks(b.count, max: 4, &rng).reduce(into: [Int]()) { $0.append(($0.last ?? 0) + $1) }
            let ours = firstFailure(b, cuts: cuts)
            if (ours == nil) != reference { Issue.record("\(b): ours \(String(describing: ours)), stdlib \(reference)"); return }
            // Fail-fast: the failing offset is where byte-by-byte feeding fails too.
            if let at = ours, at >= 0 {
                #expect(firstFailure(b, cuts: Array(1..<max(b.count, 1))) == at)
                var v = UTF8StreamValidator()
                #expect(b[0..<at].withUnsafeBytes { v.feed($0) } == nil, "the prefix before the failing byte is valid")
            }
        }
    }
}
