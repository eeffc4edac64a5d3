import Testing
@testable import OrchestraCore

@Suite struct CodecCompressionTests {
    func textMessage(_ s: String) -> Message {
        let m = Message(type: bytes("t"), id: bytes("1"))
        m.setPayload(text: s)
        return m
    }

    @Test func roundTrip() throws {
        let original = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 300)
        let m = textMessage(original)
        #expect(try PayloadCompression.compress(m))
        #expect(m.compressed && m.payload!.count < original.utf8.count / 10)
        #expect(try !PayloadCompression.compress(m))   // already compressed
        // Through the wire in both formats, then back.
        for format in WireFormat.allCases {
            let d = try EnvelopeCodec.decode(try EnvelopeCodec.encode(m, format: format), format: format)
            #expect(d.compressed && d.contentType == .text)
            try PayloadCompression.decompress(d)
            #expect(!d.compressed && text(d.payload) == original)
        }
    }

    @Test func skipsSmallAndIncompressible() throws {
        let small = textMessage("short")
        #expect(try !PayloadCompression.compress(small))
        #expect(!small.compressed && text(small.payload) == "short")
        var g = SystemRandomNumberGenerator()
        let random = Message(type: bytes("t"), id: bytes("1"))
        random.setPayload(binary: (0..<4096).map { _ in UInt8.random(in: 0...255, using: &g) })
        let before = random.payload
        #expect(try !PayloadCompression.compress(random, threshold: 0))
        #expect(random.payload == before && !random.compressed)
        expectFailure(.invalidArgument, "level 12") { () throws(OrchestraError) in _ = try PayloadCompression.compress(small, level: 12) }
        expectFailure(.state, "not compressed") { () throws(OrchestraError) in try PayloadCompression.decompress(small) }
        small.encrypted = true
        expectFailure(.state, "encrypted") { () throws(OrchestraError) in _ = try PayloadCompression.compress(small) }
        small.compressed = true
        expectFailure(.state, "decrypt it before decompressing") { () throws(OrchestraError) in try PayloadCompression.decompress(small) }
    }

    @Test func bombIsStopped() throws {
        let m = Message(type: bytes("t"), id: bytes("1"))
        m.setPayload(binary: [UInt8](repeating: 0, count: 8 << 20))
        #expect(try PayloadCompression.compress(m))
        #expect(m.payload!.count < 64 * 1024)
        let packed = m.payload
        expectFailure(.tooBig, "exceeds the limit of 1048576 bytes") { () throws(OrchestraError) in
            try PayloadCompression.decompress(m, maxSize: 1 << 20)
        }
        #expect(m.compressed && m.payload == packed)   // unchanged after a failure
        try PayloadCompression.decompress(m, maxSize: 8 << 20)
        #expect(m.payload?.count == 8 << 20)
    }

    @Test func corruptTruncatedAndTrailing() throws {
        let original = String(repeating: "abcdefghij", count: 500)
        let m = textMessage(original)
        #expect(try PayloadCompression.compress(m, threshold: 10))
        let good = m.payload!
        func attempt(_ p: [UInt8], _ fragment: String) {
            let c = Message(type: bytes("t"), id: bytes("1"))
            c.payload = p
            c.compressed = true
            expectFailure(.parse, fragment) { () throws(OrchestraError) in try PayloadCompression.decompress(c) }
        }
        attempt(Array(good.dropLast(6)), "truncated")
        attempt(good + [0], "after the end of the zlib stream")
        attempt([0x78, 0x9C, 0xFF, 0xFF, 0xFF], "corrupt")
        attempt([], "truncated")
        var badCheck = good
        badCheck[badCheck.count - 1] ^= 0xFF   // Adler-32 mismatch
        attempt(badCheck, "incorrect data check")
        for i in 0..<good.count {   // any single flipped byte: an error or (rarely) other data, never a trap
            var b = good
            b[i] ^= 0x55
            let c = Message(type: bytes("t"), id: bytes("1"))
            c.payload = b
            c.compressed = true
            if (try? PayloadCompression.decompress(c)) != nil { #expect(text(c.payload) != original) }
        }
    }
}

@Suite struct CodecCipherTests {
    let cipher: PayloadCipher
    init() throws { cipher = try PayloadCipher(secret: bytes("correct horse battery staple"), salt: bytes("salt")) }

    func sealed() throws -> Message {
        let m = Message(type: bytes("task.result"), id: bytes("m-1"))
        try m.setPayload(json: bytes("{\"answer\":42,\"text\":\"" + String(repeating: "x", count: 70) + "\"}"))
        try cipher.encrypt(m)
        return m
    }

    @Test func roundTripThroughBothFormats() throws {
        let m = try sealed()
        #expect(m.encrypted && m.payload!.count == 28 + 93)
        for format in WireFormat.allCases {
            let d = try EnvelopeCodec.decode(try EnvelopeCodec.encode(m, format: format), format: format)
            #expect(d.encrypted && d.payload == m.payload)
            let other = try PayloadCipher(secret: bytes("correct horse battery staple"), salt: bytes("salt"))
            try other.decrypt(d)
            #expect(!d.encrypted && text(d.payload)!.hasPrefix("{\"answer\":42"))
        }
        // Nonces are random: the same plaintext encrypts differently.
        #expect(try sealed().payload != m.payload)
    }

    @Test func everyFlippedByteFails() throws {
        let m = try sealed()
        let good = m.payload!
        for i in 0..<good.count {
            let t = m.copy()
            t.payload![i] ^= 0x01
            expectFailure(.crypto, "payload authentication failed") { () throws(OrchestraError) in try cipher.decrypt(t) }
            #expect(t.encrypted && t.payload![i] == good[i] ^ 0x01)   // untouched on failure
        }
    }

    @Test func changedIdTypeOrKeyFails() throws {
        let m = try sealed()
        let a = m.copy(); a.id = "m-2"
        expectFailure(.crypto, "payload authentication failed") { () throws(OrchestraError) in try cipher.decrypt(a) }
        let b = m.copy(); b.type = "task.resulT"
        expectFailure(.crypto, "payload authentication failed") { () throws(OrchestraError) in try cipher.decrypt(b) }
        // id|0|type framing: moving a byte between id and type changes the AAD.
        let c = m.copy(); c.id = "m-1t"; c.type = "ask.result"
        expectFailure(.crypto, "payload authentication failed") { () throws(OrchestraError) in try cipher.decrypt(c) }
        for other in [try PayloadCipher(secret: bytes("wrong")), try PayloadCipher(secret: bytes("correct horse battery staple")),
                      try PayloadCipher(secret: bytes("correct horse battery staple"), salt: bytes("salt"), info: bytes("other"))] {
            let d = m.copy()
            expectFailure(.crypto, "payload authentication failed") { () throws(OrchestraError) in try other.decrypt(d) }
        }
        let ok = m.copy()
        try cipher.decrypt(ok)
        #expect(!ok.encrypted)
    }

    @Test func stateAndShortInput() throws {
        expectFailure(.invalidArgument, "secret is empty") { () throws(OrchestraError) in _ = try PayloadCipher(secret: []) }
        let m = try sealed()
        expectFailure(.state, "already encrypted") { () throws(OrchestraError) in try cipher.encrypt(m) }
        let plain = Message(type: bytes("t"), id: bytes("1"))
        expectFailure(.state, "no payload") { () throws(OrchestraError) in try cipher.encrypt(plain) }
        plain.setPayload(text: "x")
        expectFailure(.state, "not encrypted") { () throws(OrchestraError) in try cipher.decrypt(plain) }
        let short = m.copy()
        short.payload = Array(short.payload!.prefix(27))
        expectFailure(.parse, "27 bytes; at least 28") { () throws(OrchestraError) in try cipher.decrypt(short) }
        // An empty payload encrypts to exactly nonce + tag and back.
        let empty = Message(type: bytes("t"), id: bytes("1"))
        empty.setPayload(binary: [])
        try cipher.encrypt(empty)
        #expect(empty.payload!.count == 28)
        try cipher.decrypt(empty)
        #expect(empty.payload == [])
    }

    @Test func compressThenEncryptOverTheWire() throws {
        let original = String(repeating: "stream chunk ", count: 400)
        let m = Message(type: bytes("task.stream"), id: bytes("z"))
        m.setPayload(text: original)
        #expect(try PayloadCompression.compress(m))
        try cipher.encrypt(m)
        let wire = try EnvelopeCodec.encode(m, format: .json)
        #expect(text(wire)!.contains("\"metadata\":{\"compressed\":true,\"encrypted\":true}"))
        let d = try EnvelopeCodec.decode(wire, format: .json)
        expectFailure(.state, "decrypt it before decompressing") { () throws(OrchestraError) in try PayloadCompression.decompress(d) }
        try cipher.decrypt(d)
        try PayloadCompression.decompress(d)
        #expect(text(d.payload) == original && d.contentType == .text)
    }
}
