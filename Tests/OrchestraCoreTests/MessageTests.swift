import Glibc
import Testing
@testable import OrchestraCore

@Suite struct MessageTests {
    /// Ids come from a per-thread pool of random bytes: many in a row and on several threads
    /// never repeat, and a child process after fork() does not hand out its parent's next id.
    @Test func newIdsDoNotRepeatAcrossPoolRefillsThreadsAndFork() throws {
        var seen = Set<[UInt8]>()
        for _ in 0..<5000 { seen.insert(Message.newId()) }   // about 20 refills of the pool
        #expect(seen.count == 5000)
        let lock = PthreadMutex()
        var fromThreads: [[UInt8]] = []
        var threads: [pthread_t] = []
        final class Box: @unchecked Sendable { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
        for _ in 0..<4 {
            let box = Box {
                var mine: [[UInt8]] = []
                for _ in 0..<1000 { mine.append(Message.newId()) }
                lock.withLock { fromThreads += mine }
            }
            var t = pthread_t()
            pthread_create(&t, nil, { arg in
                Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, Unmanaged.passRetained(box).toOpaque())
            threads.append(t)
        }
        for t in threads { pthread_join(t, nil) }
        #expect(Set(fromThreads).count == 4000 && seen.isDisjoint(with: fromThreads))

        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = Message.newId()   // this thread's pool is filled
        let pid = fork()
        if pid == 0 {
            var id = Message.newId()
            _ = write(fds[1], &id, 36)
            _exit(0)
        }
        let parentNext = Message.newId()
        var childId = [UInt8](repeating: 0, count: 36)
        #expect(read(fds[0], &childId, 36) == 36)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(fds[0]); close(fds[1])
        #expect(childId != parentNext)
    }

    @Test func newIdIsUUIDv4() {
        let id = String(decoding: Message.newId(), as: UTF8.self)
        #expect(id.count == 36)
        let parts = id.split(separator: "-")
        #expect(parts.map(\.count) == [8, 4, 4, 4, 12])
        #expect(parts[2].first == "4")
        #expect("89ab".contains(parts[3].first!))
        #expect(Message.newId() != Message.newId())
        for _ in 0..<100 {
            let b = Message.newId()
            #expect(b.count == 36 && b.allSatisfy { "0123456789abcdef-".utf8.contains($0) })
        }
    }

    @Test func hexDigitsAreLowerCaseMostSignificantFirst() {
        var values: [UInt32] = [0, 1, 9, 10, 15, 16, 0xABCDEF01, 0x12345678, 0x9ABCDEF0, .max, 0x80000000]
        for _ in 0..<1000 { values.append(UInt32.random(in: 0...UInt32.max)) }
        for v in values {
            let want = String(repeating: "0", count: 8 - String(v, radix: 16).count) + String(v, radix: 16)
            var d = hexDigits8(v)
            #expect(withUnsafeBytes(of: &d) { String(decoding: $0, as: UTF8.self) } == want)
            var d4 = hexDigits4(UInt16(truncatingIfNeeded: v))
            #expect(withUnsafeBytes(of: &d4) { String(decoding: $0, as: UTF8.self) } == String(want.suffix(4)))
        }
    }

    @Test func checkedJSONPayloadIsStoredAndEncodedAsIs() throws {
        let m = Message(type: "t")
        m.setPayload(text: "x")
        let json = Array(#"{"a":[1,"é"]}"#.utf8)
        m.setPayload(checkedJSON: json)
        #expect(m.contentType == .json && m.payload == json)
        let text = String(decoding: try EnvelopeCodec.encode(m, format: .json), as: UTF8.self)
        #expect(text.hasSuffix(#","payload":{"a":[1,"é"]}}"#))
        let back = try EnvelopeCodec.decode(Array(text.utf8), format: .json)
        #expect(back.payload == json)
        // The same message through setPayload(json:) encodes to the same bytes.
        let n = m.copy()
        try n.setPayload(json: json)
        #expect(try EnvelopeCodec.encode(n, format: .json) == EnvelopeCodec.encode(m, format: .json))
        #expect(try EnvelopeCodec.encode(n, format: .msgpack) == EnvelopeCodec.encode(m, format: .msgpack))
    }

    @Test func textFieldsRejectBadUTF8AndEmptyRequired() throws {
        let m = Message(type: "task.stream", source: "agent")
        #expect(m.version == "1.0")
        #expect(m.timestamp != nil)
        #expect(throws: OrchestraError.self) { try m.set(.source, [0xC3, 0x28]) }
        #expect(throws: OrchestraError.self) { try m.set(.type, []) }
        #expect(throws: OrchestraError.self) { try m.set(.id, nil) }
        try m.set(.target, Array("web:42".utf8))
        #expect(m.target == "web:42")
        try m.set(.target, nil)
        #expect(m.target == nil)
    }

    @Test func utf8Validator() {
        func ok(_ b: [UInt8]) -> Bool { UTF8Validator.isValid(b) }
        #expect(ok(Array("héllo wörld ✓ 𝄞".utf8)))
        #expect(!ok([0xC0, 0x80]))            // overlong NUL
        #expect(!ok([0xED, 0xA0, 0x80]))      // surrogate
        #expect(!ok([0xF4, 0x90, 0x80, 0x80])) // > U+10FFFF
        #expect(!ok([0xE2, 0x82]))            // truncated
        #expect(!ok([0xFF]))
        #expect(UTF8Validator.firstInvalidOffset(UnsafeRawBufferPointer(start: nil, count: 0)) == nil)
        let long = Array(repeating: UInt8(ascii: "a"), count: 37) + [0x80]
        #expect(long.withUnsafeBytes { UTF8Validator.firstInvalidOffset($0) } == 37)
    }

    @Test func headersReplaceAndRemove() throws {
        let m = Message(type: "a.b")
        m.setHeader("traceId", "abc")
        m.setHeader("traceId", "def")
        #expect(m.headers.count == 1)
        #expect(m.header("traceId") == "def")
        #expect(m.removeHeader(Array("traceId".utf8)))
        #expect(m.header("traceId") == nil)
    }
}
