import Testing
@testable import OrchestraNet

@Suite struct FrameDecoderTests {
    // MARK: RFC 6455 section 5.7

    static let helloMasked: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]

    @Test func rfcExamples() {
        #expect(decode([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], clientConfig) == [.message(.text, compressed: false, bytes("Hello"))])
        #expect(decode(Self.helloMasked, serverConfig) == [.message(.text, compressed: false, bytes("Hello"))])
        #expect(decode([0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f], clientConfig)
                == [.message(.text, compressed: false, bytes("Hello"))])
        #expect(decode([0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], clientConfig) == [.ping(bytes("Hello"))])
        #expect(decode([0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], serverConfig) == [.pong(bytes("Hello"))])
        let b256 = (0..<256).map { UInt8($0 & 0xFF) }
        #expect(decode([0x82, 0x7E, 0x01, 0x00] + b256, clientConfig) == [.message(.binary, compressed: false, b256)])
        let b64k = (0..<65536).map { UInt8(($0 * 7) & 0xFF) }
        #expect(decode([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0] + b64k, clientConfig) == [.message(.binary, compressed: false, b64k)])
    }

    // MARK: splits

    /// A stream with every kind of event: a fragmented text message with control frames between
    /// its fragments, multi-byte UTF-8 split across fragments, an empty message, 16- and 64-bit
    /// lengths, a close frame.
    static func mixedStream(masked: Bool) -> [UInt8] {
        func f(_ b0: UInt8, _ p: [UInt8], form: Int? = nil) -> [UInt8] {
            masked ? rawFrame(b0, p, mask: [0xA1, 0x02, 0xF3, 0x44], lengthForm: form) : rawFrame(b0, p, lengthForm: form)
        }
        let euro: [UInt8] = [0xE2, 0x82, 0xAC]
        var s: [UInt8] = []
        s += f(0x01, bytes("price: ") + euro[0..<1])
        s += f(0x89, bytes("ping!"))
        s += f(0x00, Array(euro[1..<3]) + bytes("5 "))
        s += f(0x8A, [])
        s += f(0x80, [0xF0, 0x9F, 0x8E, 0xBB], form: 64)
        s += f(0x82, [])
        s += f(0x82, (0..<300).map { UInt8($0 % 251) })
        s += f(0x81, bytes("short"), form: 16)
        s += f(0x88, [0x03, 0xE8] + bytes("bye"))
        return s
    }

    static let mixedExpected: [Got] = [
        .ping(bytes("ping!")), .pong([]),
        .message(.text, compressed: false, bytes("price: ") + [0xE2, 0x82, 0xAC] + bytes("5 ") + [0xF0, 0x9F, 0x8E, 0xBB]),
        .message(.binary, compressed: false, []),
        .message(.binary, compressed: false, (0..<300).map { UInt8($0 % 251) }),
        .message(.text, compressed: false, bytes("short")),
        .close(1000, bytes("bye")),
    ]

    @Test(arguments: [false, true])
    func everySplitPoint(masked: Bool) {
        let s = Self.mixedStream(masked: masked)
        let config = masked ? serverConfig : clientConfig
        #expect(decode(s, config) == Self.mixedExpected)
        for k in 0...s.count {
            let got = decode(s, config, chunks: [k])
            if got != Self.mixedExpected { Issue.record("split at \(k): \(got)"); return }
        }
        // Every pair of split points over the first 40 bytes (headers and short payloads).
        for a in 0..<40 {
            for b in a..<40 {
                if decode(s, config, chunks: [a, b - a]) != Self.mixedExpected { Issue.record("splits \(a), \(b)"); return }
            }
        }
        #expect(decode(s, config, chunks: byteByByte(s.count)) == Self.mixedExpected)
        var rng = TestRNG(seed: masked ? 7 : 11)
        for _ in 0..<300 {
            let sizes = randomChunks(s.count, max: 1 + rng.below(40), &rng)
            if decode(s, config, chunks: sizes) != Self.mixedExpected { Issue.record("chunks \(sizes)"); return }
        }
    }

    @Test func unmaskingAtEveryPhaseAndLength() {
        // Payload lengths around the 8- and 32-byte strides, split at every point.
        for n in [0, 1, 3, 4, 7, 8, 9, 31, 32, 33, 40, 127, 1000] {
            let p = (0..<n).map { UInt8(($0 * 31 + 7) & 0xFF) }
            let frame = clientFrame(0x82, p)
            for k in 0...frame.count {
                let got = decode(frame, serverConfig, chunks: [k])
                if got != [.message(.binary, compressed: false, p)] { Issue.record("n=\(n) split \(k): \(got)"); return }
            }
        }
    }

    @Test func nonMinimalLengthsAreAccepted() {
        #expect(decode(rawFrame(0x82, [1, 2, 3], lengthForm: 16), clientConfig) == [.message(.binary, compressed: false, [1, 2, 3])])
        #expect(decode(rawFrame(0x82, [1, 2, 3], lengthForm: 64), clientConfig) == [.message(.binary, compressed: false, [1, 2, 3])])
        #expect(decode(rawFrame(0x89, [], lengthForm: 7), clientConfig) == [.ping([])])
    }

    @Test func emptyMessagesAndEmptyFragments() {
        #expect(decode(clientFrame(0x81, []), serverConfig) == [.message(.text, compressed: false, [])])
        let s = clientFrame(0x01, []) + clientFrame(0x00, []) + clientFrame(0x00, bytes("x")) + clientFrame(0x80, [])
        #expect(decode(s, serverConfig) == [.message(.text, compressed: false, bytes("x"))])
        #expect(decode(s, serverConfig, chunks: byteByByte(s.count)) == [.message(.text, compressed: false, bytes("x"))])
    }

    // MARK: rejections

    @Test func reservedOpcodesAreRejected() {
        for op: UInt8 in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            #expect(decode(clientFrame(0x80 | op, []), serverConfig) == [.error(1002)], "opcode \(op)")
            #expect(decode(rawFrame(0x80 | op, []), clientConfig) == [.error(1002)], "opcode \(op)")
        }
    }

    @Test func reservedBits() {
        #expect(decode(clientFrame(0xC1, bytes("a")), serverConfig) == [.error(1002)])  // RSV1, no deflate
        #expect(decode(clientFrame(0xA1, bytes("a")), serverConfig) == [.error(1002)])  // RSV2
        #expect(decode(clientFrame(0x91, bytes("a")), serverConfig) == [.error(1002)])  // RSV3
        var d = serverConfig
        d.perMessageDeflate = true
        #expect(decode(clientFrame(0xC1, [0xFF, 0xFE]), d) == [.message(.text, compressed: true, [0xFF, 0xFE])],
                "compressed text is not UTF-8 checked before inflating")
        #expect(decode(clientFrame(0xC2, [1]), d) == [.message(.binary, compressed: true, [1])])
        #expect(decode(clientFrame(0xA1, bytes("a")), d) == [.error(1002)])  // RSV2 still refused
        #expect(decode(clientFrame(0xC9, []), d) == [.error(1002)])  // RSV1 on a ping
        #expect(decode(clientFrame(0x41, bytes("a")) + clientFrame(0xC0, bytes("b")), d)
                == [.error(1002)])  // RSV1 on a continuation
        #expect(decode(clientFrame(0x41, bytes("a")) + clientFrame(0x80, bytes("b")), d)
                == [.message(.text, compressed: true, bytes("ab"))])
    }

    @Test func maskingDirection() {
        #expect(decode(rawFrame(0x81, bytes("hi")), serverConfig) == [.error(1002)])
        #expect(decode(clientFrame(0x81, bytes("hi")), clientConfig) == [.error(1002)])
        #expect(decode(rawFrame(0x89, []), serverConfig) == [.error(1002)])
    }

    @Test func controlFrameRules() {
        #expect(decode(clientFrame(0x89, Array(repeating: 1, count: 125)), serverConfig) == [.ping(Array(repeating: 1, count: 125))])
        #expect(decode(clientFrame(0x89, Array(repeating: 1, count: 126)), serverConfig) == [.error(1002)])
        #expect(decode(rawFrame(0x89, [], mask: [1, 2, 3, 4], lengthForm: 16), serverConfig) == [.error(1002)],
                "a control frame with a 16-bit length form")
        #expect(decode(clientFrame(0x09, []), serverConfig) == [.error(1002)])  // fragmented ping
        #expect(decode(clientFrame(0x08, []), serverConfig) == [.error(1002)])  // fragmented close
    }

    @Test func fragmentationStateMachine() {
        #expect(decode(clientFrame(0x80, bytes("x")), serverConfig) == [.error(1002)])  // continuation without start
        #expect(decode(clientFrame(0x00, bytes("x")), serverConfig) == [.error(1002)])
        #expect(decode(clientFrame(0x01, bytes("a")) + clientFrame(0x81, bytes("b")), serverConfig) == [.error(1002)])
        #expect(decode(clientFrame(0x01, bytes("a")) + clientFrame(0x02, bytes("b")), serverConfig) == [.error(1002)])
        #expect(decode(clientFrame(0x81, bytes("a")) + clientFrame(0x80, bytes("b")), serverConfig)
                == [.message(.text, compressed: false, bytes("a")), .error(1002)])
        let s = clientFrame(0x02, [1]) + clientFrame(0x89, [9]) + clientFrame(0x8A, [8]) + clientFrame(0x00, [2]) + clientFrame(0x80, [3])
        #expect(decode(s, serverConfig) == [.ping([9]), .pong([8]), .message(.binary, compressed: false, [1, 2, 3])])
        // A close between fragments ends the stream.
        #expect(decode(clientFrame(0x02, [1]) + clientFrame(0x88, [0x03, 0xE8]), serverConfig) == [.close(1000, [])])
    }

    @Test func errorMessagesSayWhatWasWrong() {
        func message(_ input: [UInt8], _ c: FrameDecoder.Configuration) -> String {
            var d = FrameDecoder(c)
            var b = input
            var off = 0
            while true {
                let e = b.withUnsafeMutableBytes { d.next($0, offset: &off) }
                if case .error(let err) = e { return err.message }
                if case .needMore = e { return "no error" }
            }
        }
        var deflate = serverConfig
        deflate.perMessageDeflate = true
        let cases: [([UInt8], FrameDecoder.Configuration, String)] = [
            (clientFrame(0x83, []), serverConfig, "reserved opcode 0x3"),
            (clientFrame(0x8F, []), serverConfig, "reserved opcode 0xf"),
            (clientFrame(0xA2, []), serverConfig, "RSV2 or RSV3 set without an extension that defines them"),
            (clientFrame(0xC2, []), serverConfig, "RSV1 set without a negotiated extension"),
            (clientFrame(0xC9, []), deflate, "RSV1 set on a control or continuation frame"),
            (rawFrame(0x82, []), serverConfig, "unmasked frame from a client"),
            (clientFrame(0x82, []), clientConfig, "masked frame from a server"),
            (clientFrame(0x0A, []), serverConfig, "fragmented control frame"),
            (clientFrame(0x8A, Array(repeating: 0, count: 126)), serverConfig, "control frame payload longer than 125 bytes"),
            (clientFrame(0x80, []), serverConfig, "continuation frame without a message to continue"),
            (clientFrame(0x02, []) + clientFrame(0x82, []), serverConfig, "new data frame while a fragmented message is unfinished"),
            (clientFrame(0x82, []), serverConfig, "no error"),
        ]
        for (input, c, expected) in cases { #expect(message(input, c) == expected) }
        var small = serverConfig
        small.maxFrameSize = 10
        #expect(message(clientFrame(0x82, Array(repeating: 0, count: 11)), small) == "frame payload of 11 bytes exceeds max_frame_size 10")
    }

    @Test func sixtyFourBitLengthWithTopBit() {
        let f: [UInt8] = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1]
        #expect(decode(f, clientConfig) == [.error(1002)])
        #expect(decode(f, clientConfig, chunks: byteByByte(f.count)) == [.error(1002)])
    }

    @Test func sizeLimits() {
        var c = serverConfig
        c.maxFrameSize = 100
        c.maxMessageSize = 250
        let p100 = Array(repeating: UInt8(7), count: 100)
        #expect(decode(clientFrame(0x82, p100), c) == [.message(.binary, compressed: false, p100)])
        #expect(decode(clientFrame(0x82, p100 + [1]), c) == [.error(1009)])
        let three = clientFrame(0x02, p100) + clientFrame(0x00, p100) + clientFrame(0x80, Array(p100[0..<50]))
        #expect(decode(three, c) == [.message(.binary, compressed: false, p100 + p100 + p100[0..<50])])
        let over = clientFrame(0x02, p100) + clientFrame(0x00, p100) + clientFrame(0x80, Array(p100[0..<51]))
        #expect(decode(over, c) == [.error(1009)])
        // Limits are checked on the header: the huge payload is never needed.
        #expect(decode([0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4], c) == [.error(1009)])
        // Each message starts from zero.
        let two = clientFrame(0x82, p100) + clientFrame(0x02, p100) + clientFrame(0x00, p100) + clientFrame(0x80, [])
        #expect(decode(two, c).count == 2)
    }

    @Test func errorsAreReportedBeforeThePayloadArrives() {
        var d = FrameDecoder(serverConfig)
        var hdr: [UInt8] = [0x01, 0x85, 1, 2, 3, 4, 0x61 ^ 1]   // text frag "a..." (first byte only)
        var off = 0
        let r1 = hdr.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .data(let c) = r1 else { Issue.record("expected data, got \(r1)"); return }
        #expect(c.isFirst && !c.isLast && c.bytes.count == 1)
        var bad: [UInt8] = [0xFF ^ 2]   // invalid UTF-8 byte, second of five
        off = 0
        let r2 = bad.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .error(let e) = r2 else { Issue.record("expected error, got \(r2)"); return }
        #expect(e.closeCode == .invalidPayload)
        // Sticky: every later call reports the same error.
        off = 0
        let r3 = hdr.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .error(let e3) = r3 else { Issue.record("expected sticky error"); return }
        #expect(e3 == e)
    }

    // MARK: UTF-8 in text messages

    @Test func utf8AcrossFragmentsAndReads() {
        let snowman: [UInt8] = [0xE2, 0x98, 0x83]
        for cut in 0...3 {
            let s = clientFrame(0x01, Array(snowman[0..<cut])) + clientFrame(0x80, Array(snowman[cut...]))
            #expect(decode(s, serverConfig) == [.message(.text, compressed: false, snowman)])
            #expect(decode(s, serverConfig, chunks: byteByByte(s.count)) == [.message(.text, compressed: false, snowman)])
        }
        // Truncated at the end of the message.
        #expect(decode(clientFrame(0x01, [0x61]) + clientFrame(0x80, [0xE2, 0x98]), serverConfig) == [.error(1007)])
        #expect(decode(clientFrame(0x81, [0xF0, 0x9F, 0x98]), serverConfig) == [.error(1007)])
        // Binary messages are not checked.
        #expect(decode(clientFrame(0x82, [0xFF, 0xC0]), serverConfig) == [.message(.binary, compressed: false, [0xFF, 0xC0])])
        var noCheck = serverConfig
        noCheck.validateUTF8 = false
        #expect(decode(clientFrame(0x81, [0xFF]), noCheck) == [.message(.text, compressed: false, [0xFF])])
    }

    @Test func utf8FailsFastInsideAFragment() {
        // The first fragment is valid until its 3rd byte: the error comes with the first
        // fragment, before the final fragment is seen.
        let s = clientFrame(0x01, [0x61, 0x62, 0xED, 0xA0, 0x80]) + clientFrame(0x80, bytes("never read"))
        var d = FrameDecoder(serverConfig)
        var buf = Array(s[0..<(6 + 3)])  // header (2 + 4 mask) + 3 payload bytes
        var off = 0
        var events: [String] = []
        buf.withUnsafeMutableBytes { b in
            while true {
                let e = d.next(b, offset: &off)
                if case .needMore = e { events.append("more"); break }
                if case .error(let err) = e { events.append("error \(err.closeCode)"); break }
                if case .data = e { events.append("data") }
            }
        }
        // 0xED is a valid lead byte; the next byte 0xA0 (a surrogate) is what fails.
        #expect(events == ["data", "more"])
        var rest = Array(s[9..<10])
        off = 0
        let r = rest.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .error(let e) = r else { Issue.record("expected error, got \(r)"); return }
        #expect(e.closeCode == .invalidPayload)
    }

    // MARK: close frames

    @Test func closePayloads() {
        #expect(decode(clientFrame(0x88, []), serverConfig) == [.close(nil, [])])
        #expect(decode(clientFrame(0x88, [0x03]), serverConfig) == [.error(1002)])
        let valid: [UInt16] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
        for code in valid {
            #expect(decode(clientFrame(0x88, [UInt8(code >> 8), UInt8(code & 0xFF)]), serverConfig) == [.close(code, [])], "\(code)")
        }
        let invalid: [UInt16] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
        for code in invalid {
            #expect(decode(clientFrame(0x88, [UInt8(code >> 8), UInt8(code & 0xFF)]), serverConfig) == [.error(1002)], "\(code)")
        }
        #expect(decode(clientFrame(0x88, [0x03, 0xE8] + bytes("ça va")), serverConfig) == [.close(1000, bytes("ça va"))])
        #expect(decode(clientFrame(0x88, [0x03, 0xE8, 0xCE, 0xBA, 0xE1]), serverConfig) == [.error(1007)])
        #expect(decode(clientFrame(0x88, [0x03, 0xE8, 0xC0, 0x80]), serverConfig) == [.error(1007)])
    }

    @Test func inputAfterCloseIsAnError() {
        let s = clientFrame(0x88, [0x03, 0xE8]) + clientFrame(0x81, bytes("late"))
        var d = FrameDecoder(serverConfig)
        var buf = s
        var off = 0
        let r = buf.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .close(let code, _) = r else { Issue.record("expected close"); return }
        #expect(code == .normal)
        #expect(off == 8)
        let r2 = buf.withUnsafeMutableBytes { d.next($0, offset: &off) }
        guard case .error(let e) = r2 else { Issue.record("expected error"); return }
        #expect(e.closeCode == .protocolError)
    }

    @Test func controlFrameSplitAcrossReadsIsGathered() {
        let payload = (0..<125).map { UInt8($0) }
        let f = clientFrame(0x89, payload)
        for k in 0...f.count {
            #expect(decode(f, serverConfig, chunks: [k]) == [.ping(payload)], "split \(k)")
        }
    }

    @Test func theControlBufferIsAllocatedOnlyForSplitControlFrames() {
        var d = FrameDecoder(serverConfig)
        var whole = clientFrame(0x89, bytes("ping")) + clientFrame(0x81, bytes("text"))
        var off = 0
        var events = 0
        whole.withUnsafeMutableBytes { b in
            while true { if case .needMore = d.next(b, offset: &off) { break }; events += 1 }
        }
        #expect(events == 2 && d.control == nil)
        let split = clientFrame(0x89, bytes("ping"))
        for part in [Array(split[0..<8]), Array(split[8...])] {
            var p = part
            off = 0
            p.withUnsafeMutableBytes { b in
                while true { if case .needMore = d.next(b, offset: &off) { break }; events += 1 }
            }
        }
        #expect(events == 3 && d.control != nil)
    }

    // MARK: robustness

    @Test func randomInputNeverTrapsAndSplitsAgree() {
        var rng = TestRNG(seed: 0xC0FFEE)
        for round in 0..<400 {
            // Mostly well-formed frames with random bits flipped, plus pure noise.
            var s: [UInt8] = []
            if round % 4 == 0 {
                s = (0..<rng.below(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                s = Self.mixedStream(masked: round % 2 == 0)
                for _ in 0..<(1 + rng.below(3)) { s[rng.below(s.count)] ^= UInt8(1 << rng.below(8)) }
            }
            var c = round % 2 == 0 ? serverConfig : clientConfig
            c.perMessageDeflate = round % 3 == 0
            c.maxMessageSize = 200
            let whole = decode(s, c)
            let pieces = decode(s, c, chunks: randomChunks(s.count, max: 7, &rng))
            if whole != pieces { Issue.record("round \(round): \(whole) vs \(pieces)"); return }
        }
    }
}
