import Testing
@testable import OrchestraCore

/// The offset of the first invalid sequence by the standard library's strict UTF-8 parser
/// (an independent reference for `UTF8Validator`).
private func referenceFirstInvalid(_ b: [UInt8]) -> Int? {
    var parser = Unicode.UTF8.ForwardParser()
    var it = b.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &it) {
        case .valid(let s): offset += s.count
        case .error: return offset
        case .emptyInput: return nil
        }
    }
}

@Suite struct UTF8ValidatorTests {
    /// Every placement of a multi-byte character and of an invalid byte, around the 8- and
    /// 32-byte steps of the ASCII fast path, agrees with the reference.
    @Test func agreesWithTheStandardLibraryAroundTheFastPathSteps() {
        let inserts: [[UInt8]] = [
            Array("é".utf8), Array("✓".utf8), Array("𝄞".utf8),
            [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xFF],
        ]
        var checked = 0
        for length in [0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 100] {
            for at in 0...length {
                for ins in inserts {
                    var b = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    b.insert(contentsOf: ins, at: at)
                    let got = b.withUnsafeBytes { UTF8Validator.firstInvalidOffset($0) }
                    #expect(got == referenceFirstInvalid(b), "length \(length), \(ins) at \(at)")
                    checked += 1
                }
            }
        }
        #expect(checked > 3000)
        // Two characters far apart: the fast path resumes after the first.
        var b = [UInt8](repeating: 0x20, count: 200)
        b.replaceSubrange(50..<52, with: Array("é".utf8))
        b[170] = 0xFE
        #expect(b.withUnsafeBytes { UTF8Validator.firstInvalidOffset($0) } == 170)
    }
}
