import Testing
@testable import OrchestraNet

@Suite struct FrameEncoderTests {
    @Test func rfcExamples() {
        var e = FrameEncoder(role: .server)
        #expect(e.frame(.text, bytes("Hello")) == [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])
        #expect(e.frame(.text, bytes("Hel"), fin: false) + e.frame(.continuation, bytes("lo"))
                == [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f])
        #expect(e.frame(.ping, bytes("Hello")) == [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f])
        #expect(Array(e.frame(.binary, Array(repeating: 0, count: 256))[0..<4]) == [0x82, 0x7E, 0x01, 0x00])
        #expect(Array(e.frame(.binary, Array(repeating: 0, count: 65536))[0..<10]) == [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        // The masked example, with the RFC's key.
        let key = UInt32(0x37) | UInt32(0xfa) << 8 | UInt32(0x21) << 16 | UInt32(0x3d) << 24
        var out = [UInt8](repeating: 0, count: 11)
        out.withUnsafeMutableBytes { b in
            let n = FrameEncoder.writeHeader(into: b.baseAddress!, opcode: .text, fin: true, rsv1: false, payloadLength: 5, maskKey: key)
            #expect(n == 6)
            bytes("Hello").withUnsafeBytes { Masking.copy(from: $0, to: b.baseAddress! + n, key: key, phase: 0) }
        }
        #expect(out == FrameDecoderTests.helloMasked)
        var inPlace = bytes("Hello")
        inPlace.withUnsafeMutableBytes { Masking.apply($0.baseAddress!, count: 5, key: key, phase: 0) }
        #expect(inPlace == Array(FrameDecoderTests.helloMasked[6...]))
    }

    @Test func headerLengths() {
        var buf = [UInt8](repeating: 0, count: FrameEncoder.maxHeaderSize)
        for (len, server, client) in [(0, 2, 6), (125, 2, 6), (126, 4, 8), (65535, 4, 8), (65536, 10, 14), (Int(Int32.max) + 10, 10, 14)] {
            var s = FrameEncoder(role: .server), c = FrameEncoder(role: .client)
            buf.withUnsafeMutableBytes { b in
                let hs = s.writeHeader(into: b.baseAddress!, opcode: .binary, payloadLength: len)
                #expect(hs.length == server && hs.maskKey == nil)
                let hc = c.writeHeader(into: b.baseAddress!, opcode: .binary, payloadLength: len)
                #expect(hc.length == client && hc.maskKey != nil)
            }
        }
    }

    @Test func clientFramesRoundTripThroughTheServerDecoder() {
        var c = FrameEncoder(role: .client)
        var rng = TestRNG(seed: 3)
        for n in [0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000] {
            let p = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let f = c.frame(.binary, p)
            #expect(f.count == n + (n < 126 ? 6 : n <= 65535 ? 8 : 14))
            #expect(decode(f, serverConfig) == [.message(.binary, compressed: false, p)], "n=\(n)")
            #expect(decode(f, serverConfig, chunks: randomChunks(f.count, max: 3000, &rng)) == [.message(.binary, compressed: false, p)])
        }
        var s = FrameEncoder(role: .server)
        let text = bytes("κόσμε")
        #expect(decode(s.frame(.text, text, fin: false) + s.frame(.ping, []) + s.frame(.continuation, text), clientConfig)
                == [.ping([]), .message(.text, compressed: false, text + text)])
        var d = clientConfig
        d.perMessageDeflate = true
        #expect(decode(s.frame(.binary, [1, 2], rsv1: true), d) == [.message(.binary, compressed: true, [1, 2])])
    }

    @Test func maskKeysAreRandomPerFrame() {
        var c = FrameEncoder(role: .client)
        var keys = Set<UInt32>()
        var buf = [UInt8](repeating: 0, count: 14)
        for _ in 0..<200 {
            buf.withUnsafeMutableBytes { keys.insert(c.writeHeader(into: $0.baseAddress!, opcode: .text, payloadLength: 1).maskKey!) }
        }
        #expect(keys.count > 190)  // 200 draws of 32 random bits: a collision is very unlikely
    }

    @Test func maskingMatchesTheDefinitionAtEveryPhase() {
        let key: UInt32 = 0xA1B2C3D4
        let kb: [UInt8] = [0xD4, 0xC3, 0xB2, 0xA1]
        for phase in 0..<4 {
            for n in 0..<70 {
                let src = (0..<n).map { UInt8(($0 * 13 + 1) & 0xFF) }
                let expected = src.enumerated().map { $0.element ^ kb[($0.offset + phase) % 4] }
                var a = src
                let next = a.withUnsafeMutableBytes { Masking.apply($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 8)!, count: n, key: key, phase: phase) }
                #expect(a == expected && next == (phase + n) % 4, "phase \(phase) n \(n)")
                var b = [UInt8](repeating: 0, count: n)
                b.withUnsafeMutableBytes { d in
                    src.withUnsafeBytes { s in if n > 0 { Masking.copy(from: s, to: d.baseAddress!, key: key, phase: phase) } }
                }
                #expect(b == expected)
            }
        }
    }

    @Test func closeFrames() throws {
        var s = FrameEncoder(role: .server)
        #expect(try s.closeFrame(code: .normal, reason: bytes("bye")).get() == [0x88, 0x05, 0x03, 0xE8] + bytes("bye"))
        #expect(try s.closeFrame(code: nil).get() == [0x88, 0x00])
        #expect(try s.closeFrame(code: CloseCode(4000)).get() == [0x88, 0x02, 0x0F, 0xA0])
        for code: UInt16 in [1005, 1006, 1015, 999, 2000, 5000] {
            #expect(throws: WebSocketError.self) { try s.closeFrame(code: CloseCode(code)).get() }
        }
        #expect(try s.closeFrame(code: .normal, reason: Array(repeating: 0x61, count: 123)).get().count == 127)
        #expect(throws: WebSocketError.self) { try s.closeFrame(code: .normal, reason: Array(repeating: 0x61, count: 124)).get() }
        #expect(throws: WebSocketError.self) { try s.closeFrame(code: nil, reason: bytes("x")).get() }
        #expect(throws: WebSocketError(.invalidPayload, "close reason is not valid UTF-8")) {
            try s.closeFrame(code: .normal, reason: [0xC0, 0x80]).get()
        }
        var c = FrameEncoder(role: .client)
        #expect(decode(try c.closeFrame(code: .goingAway, reason: bytes("restart")).get(), serverConfig) == [.close(1001, bytes("restart"))])
    }
}
