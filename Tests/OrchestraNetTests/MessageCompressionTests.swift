import OrchestraCore
@testable import OrchestraNet
import Testing

private func deflated(_ d: MessageDeflater, _ msg: [UInt8]) throws -> [UInt8] {
    var out: [UInt8] = []
    try msg.withUnsafeBytes { try d.compress($0, into: &out) }
    return out
}

/// Inflates `wire` fed in chunks of `chunk` bytes (the last one `final`).
private func inflated(_ i: MessageInflater, _ wire: [UInt8], chunk: Int = .max) throws -> [UInt8] {
    var out: [UInt8] = []
    var at = 0
    repeat {
        let n = Swift.min(chunk, wire.count - at)
        let isLast = at + n == wire.count
        try wire.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
            try i.inflate(UnsafeRawBufferPointer(rebasing: b[at..<(at + n)]), final: isLast, into: &out)
        }
        at += n
    } while at < wire.count
    return out
}

@Suite struct MessageCompressionTests {
    /// RFC 7692 section 7.2.3.1: "Hello" compressed, without the sync tail.
    @Test func rfc7692HelloExample() throws {
        let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 1 << 20)
        #expect(try inflated(i, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]) == Array("Hello".utf8))
        // The same bytes as a second message with context takeover decode again (no back-references).
        #expect(try inflated(i, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]) == Array("Hello".utf8))
    }

    /// Two messages compressed by Python's zlib (wbits -15, sync flush, tails removed); the
    /// second refers back into the first: it inflates only with the context kept.
    @Test func interoperatesWithZlibContextTakeover() throws {
        let msg = Array(String(repeating: "Hello, permessage-deflate! ", count: 20).utf8)
        let first: [UInt8] = [242, 72, 205, 201, 201, 215, 81, 40, 72, 45, 202, 77, 45, 46, 78, 76, 79, 213, 77, 73, 77, 203, 73, 44, 73, 85, 84, 240, 24, 149, 26, 217, 82, 0, 0]
        let second: [UInt8] = [26, 149, 26, 149, 194, 37, 5, 0]
        let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 1 << 20)
        #expect(try inflated(i, first) == msg)
        #expect(try inflated(i, second) == msg)
        // Without the context, the second message cannot be inflated.
        let fresh = try MessageInflater(windowBits: 15, noContextTakeover: true, maxMessageSize: 1 << 20)
        #expect(throws: WebSocketError.self) { try inflated(fresh, second) }
    }

    @Test func roundTripsEverySizeWithAndWithoutContext() throws {
        for noContext in [false, true] {
            let d = try MessageDeflater(windowBits: 15, noContextTakeover: noContext)
            let i = try MessageInflater(windowBits: 15, noContextTakeover: noContext, maxMessageSize: 1 << 22)
            var sizes = [0, 1, 2, 5, 100, 4096, 65_536, 1 << 20]
            sizes += sizes.reversed()
            for (k, n) in sizes.enumerated() {
                let msg = (0..<n).map { UInt8(truncatingIfNeeded: ($0 &* 7919 &+ k) % 251 % (k % 3 == 0 ? 251 : 17)) }
                let wire = try deflated(d, msg)
                #expect(try inflated(i, wire) == msg)
            }
            // With no context takeover, neither side keeps a zlib stream between messages.
            #expect(d.holdsStream == !noContext)
            #expect(i.holdsStream == !noContext)
        }
    }

    /// An empty message right after another one: zlib flushes nothing, so the wire form is a
    /// single 0x00 (RFC 7692 7.2.3.6), never an empty payload, and the messages after it still
    /// inflate (an empty compressed payload would leave the receiver inside a stored block).
    @Test func emptyMessageAfterAnotherIsOneZeroByte() throws {
        let d = try MessageDeflater(windowBits: 15, noContextTakeover: false)
        let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 1 << 20)
        let hello = Array("hello hello hello".utf8)
        #expect(try inflated(i, try deflated(d, hello)) == hello)
        let empty = try deflated(d, [])
        #expect(empty == [0x00])
        #expect(try inflated(i, empty) == [])
        #expect(try inflated(i, try deflated(d, hello)) == hello)
    }

    /// RFC 7692 7.2.3.4: a sender may end a message with a BFINAL block; the tail the receiver
    /// appends is then past the end of the stream, and the next message is a new stream.
    @Test func messagesEndingWithAFinalBlockInflate() throws {
        // zlib.compressobj(wbits=-15); c.compress(m) + c.flush(Z_FINISH), for "first final block"
        // and "second final block".
        let first: [UInt8] = [75, 203, 44, 42, 46, 81, 72, 203, 204, 75, 204, 81, 72, 202, 201, 79, 206, 6, 0]
        let second: [UInt8] = [43, 78, 77, 206, 207, 75, 81, 72, 203, 204, 75, 204, 81, 72, 202, 201, 79, 206, 6, 0]
        for chunk in [1, 3, Int.max] {
            let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 1 << 20)
            #expect(try inflated(i, first, chunk: chunk) == Array("first final block".utf8))
            #expect(try inflated(i, second, chunk: chunk) == Array("second final block".utf8))
        }
    }

    @Test func contextTakeoverShrinksRepeatedMessages() throws {
        let msg = Array((0..<40).map { "agent.\($0) task.stream line \($0 &* 7919 % 1000) of \($0 &* 31)\n" }.joined().utf8)
        let keep = try MessageDeflater(windowBits: 15, noContextTakeover: false)
        let first = try deflated(keep, msg).count
        let again = try deflated(keep, msg).count
        #expect(again < first / 4)
        let reset = try MessageDeflater(windowBits: 15, noContextTakeover: true)
        #expect(try deflated(reset, msg).count == first)
        #expect(try deflated(reset, msg).count == first)
    }

    @Test func chunkedInflateEqualsWhole() throws {
        let d = try MessageDeflater(windowBits: 12, noContextTakeover: true, level: 9, memLevel: 4)
        let msg = (0..<50_000).map { UInt8(($0 * $0) % 97) }
        let wire = try deflated(d, msg)
        for chunk in [1, 2, 7, 1000, wire.count] {
            let i = try MessageInflater(windowBits: 12, noContextTakeover: true, maxMessageSize: 1 << 20)
            #expect(try inflated(i, wire, chunk: chunk) == msg)
        }
    }

    @Test func decompressionBombStopsAtTheLimit() throws {
        // 4 MiB of zeros compress to about 4 KiB; the inflater gives up past 256 KiB.
        let d = try MessageDeflater(windowBits: 15, noContextTakeover: true, level: 9)
        let wire = try deflated(d, [UInt8](repeating: 0, count: 4 << 20))
        #expect(wire.count < 10_000)
        let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 256 << 10)
        do {
            _ = try inflated(i, wire, chunk: 4096)
            Issue.record("expected 1009")
        } catch {
            #expect((error as? WebSocketError)?.closeCode == .messageTooBig)
        }
        // The inflater is usable again for the next connection's message (state reset).
        #expect(!i.holdsStream)
        // A message exactly at the limit passes.
        let exact = try deflated(d, [UInt8](repeating: 7, count: 256 << 10))
        #expect(try inflated(i, exact).count == 256 << 10)
    }

    @Test func corruptDataIs1007() throws {
        let i = try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 1 << 20)
        do {
            _ = try inflated(i, [0xff, 0xff, 0xff, 0xff, 0x00])
            Issue.record("expected 1007")
        } catch {
            #expect((error as? WebSocketError)?.closeCode == .invalidPayload)
        }
    }

    @Test func rejectsBadParameters() {
        #expect(throws: OrchestraError.self) { try MessageDeflater(windowBits: 8, noContextTakeover: false) }
        #expect(throws: OrchestraError.self) { try MessageDeflater(windowBits: 15, noContextTakeover: false, level: 10) }
        #expect(throws: OrchestraError.self) { try MessageDeflater(windowBits: 15, noContextTakeover: false, memLevel: 0) }
        #expect(throws: OrchestraError.self) { try MessageInflater(windowBits: 16, noContextTakeover: false, maxMessageSize: 1) }
        #expect(throws: OrchestraError.self) { try MessageInflater(windowBits: 15, noContextTakeover: false, maxMessageSize: 0) }
    }
}
