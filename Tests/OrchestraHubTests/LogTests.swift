import Testing
import Glibc
import OrchestraCore
@testable import OrchestraHub
import OrchestraTestSupport

/// Reads a file descriptor to its end on a thread of its own.
private final class PipeReader: @unchecked Sendable {
    private var data: [UInt8] = []
    private var thread: TestThread?
    init(fd: Int32) {
        thread = TestThread { [unowned self] in
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 { self.data.append(contentsOf: buf[0..<n]); continue }
                if n < 0 && errno == EINTR { continue }
                break
            }
        }
    }
    /// Waits for end of file and gives everything read.
    func finish() -> [UInt8] {
        thread?.join()
        thread = nil
        return data
    }
}

/// A pipe whose write end a logger gets; `lines()` closes it and parses what came out.
private final class LogPipe {
    let readFd: Int32
    let writeFd: Int32
    let reader: PipeReader
    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        readFd = fds[0]
        writeFd = fds[1]
        reader = PipeReader(fd: readFd)
    }
    func text() -> String {
        close(writeFd)
        let bytes = reader.finish()
        close(readFd)
        return String(decoding: bytes, as: UTF8.self)
    }
    /// Every line, parsed; a line that is not a JSON object fails the test.
    func lines() -> [JSONValue] {
        let t = text()
        #expect(t.isEmpty || t.hasSuffix("\n"))
        return t.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
            let v = try? JSONValue.parse(String(line))
            #expect(v?.object != nil, "not a JSON object: \(line.prefix(80))")
            return v ?? .null
        }
    }
}

@Suite struct LogTests {
    @Test func levels() {
        #expect(LogLevel(name: "debug") == .debug)
        #expect(LogLevel(name: "INFO") == .info)
        #expect(LogLevel(name: "warn") == .warn)
        #expect(LogLevel(name: "Warning") == .warn)
        #expect(LogLevel(name: "error") == .error)
        #expect(LogLevel(name: "verbose") == nil)
        #expect(LogLevel(name: "") == nil)
        #expect(LogLevel.allCases.map(\.name) == ["debug", "info", "warn", "error"])
        #expect(LogLevel.debug < .info && .info < .warn && .warn < .error)
    }

    @Test func timestamps() {
        #expect(Logger.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Logger.iso8601(milliseconds: 1_795_455_611_281) == "2026-11-23T17:40:11.281Z")
        #expect(Logger.iso8601(milliseconds: 1_709_251_199_999) == "2024-02-29T23:59:59.999Z")
        #expect(Logger.iso8601(milliseconds: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Logger.iso8601(milliseconds: 1_000) == "1970-01-01T00:00:01.000Z")
    }

    @Test func secretKeys() {
        for k in ["token", "accessToken", "refresh_token", "password", "DB_PASSWORD", "passwd", "signature",
                  "Authorization", "cookie", "set-cookie", "apiKey", "x-api-key", "API_KEY", "APIKey", "apikey",
                  "secret", "clientSecret", "key", "hmacKey", "privateKey", "private_key", "jwt", "tokenId", "password2"] {
            #expect(SecretMask.isSecret(k), "\(k) should be secret")
        }
        for k in ["keyId", "publicKey", "public_key", "traceId", "taskId", "agentId", "nonce", "tokens", "maxTokens",
                  "inputTokens", "name", "monkey", "keyboard", "keys", "event", "", "author"] {
            #expect(!SecretMask.isSecret(k), "\(k) should not be secret")
        }
    }

    @Test func maskingIsRecursive() throws {
        let v: JSONValue = ["user": ["name": "ann", "password": "hunter2",
                                     "sessions": [["token": "t1", "id": 1], ["token": ["nested": "t2"], "id": 2]]],
                            "apiKey": ["a": 1], "keyId": "k1", "list": [1, "two"]]
        let m = SecretMask.mask(v)
        #expect(m == ["user": ["name": "ann", "password": "***",
                               "sessions": [["token": "***", "id": 1], ["token": "***", "id": 2]]],
                      "apiKey": "***", "keyId": "k1", "list": [1, "two"]])
        #expect(!m.jsonText.contains("hunter2") && !m.jsonText.contains("t1") && !m.jsonText.contains("t2"))
    }

    @Test func linesAreJSONWithMaskedFields() {
        let pipe = LogPipe()
        let log = Logger(level: .info, fd: pipe.writeFd, clock: { 1_795_455_611_281 })
        log.debug("not.written", [("x", 1)])
        log.info("agent.registered", [("agentId", "a1"), ("keyId", "k1"), ("signature", "abcd"),
                                      ("headers", ["Authorization": "Bearer xyz", "traceId": "t-1"]),
                                      ("ts", "mine"), ("text", "line\nbreak \"quoted\"")])
        log.level = .debug
        #expect(log.level == .debug && log.isEnabled(.debug))
        log.debug("now.written")
        log.level = .error
        log.warn("not.written.either")
        log.error("task.failed", [("taskId", "t1"), ("error", ["code": "TASK_001"])])

        let lines = pipe.lines()
        #expect(lines.count == 3)
        guard lines.count == 3 else { return }
        let first = lines[0]
        #expect(first.object?.map(\.0) == ["ts", "level", "event", "agentId", "keyId", "signature", "headers", "_ts", "text"])
        #expect(first["ts"] == "2026-11-23T17:40:11.281Z")
        #expect(first["level"] == "info")
        #expect(first["event"] == "agent.registered")
        #expect(first["agentId"] == "a1")
        #expect(first["keyId"] == "k1")
        #expect(first["signature"] == "***")
        #expect(first["headers"] == ["Authorization": "***", "traceId": "t-1"])
        #expect(first["_ts"] == "mine")
        #expect(first["text"] == "line\nbreak \"quoted\"")
        #expect(lines[1]["level"] == "debug" && lines[1]["event"] == "now.written")
        #expect(lines[2]["level"] == "error" && lines[2]["error"] == ["code": "TASK_001"])
    }

    @Test func threadsNeverInterleaveLines() {
        let pipe = LogPipe()
        let log = Logger(level: .info, fd: pipe.writeFd)
        // Lines longer than PIPE_BUF (4096), which the kernel may split and interleave unless the
        // logger serialises its writes; the pipe (64 KiB) fills and writers block mid-run.
        let filler = String(repeating: "x", count: 5000)
        let writers = (0..<4).map { t in
            TestThread {
                for i in 0..<500 {
                    log.info("load.line", [("thread", .int(Int64(t))), ("i", .int(Int64(i))), ("filler", .string(filler)),
                                           ("password", .string("p-\(t)-\(i)"))])
                }
            }
        }
        for w in writers { w.join() }
        let lines = pipe.lines()
        #expect(lines.count == 2000)
        var seen = Set<Int64>()
        for l in lines {
            #expect(l["event"] == "load.line" && l["filler"]?.string == filler && l["password"] == "***")
            if let t = l["thread"]?.int, let i = l["i"]?.int { seen.insert(t * 1000 + i) }
        }
        #expect(seen.count == 2000)
        #expect(seen == Set((0..<4).flatMap { t in (0..<500).map { Int64(t * 1000 + $0) } }))
    }

    @Test func writeErrorsAreIgnored() {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        close(fds[1])
        close(fds[0])
        let log = Logger(level: .debug, fd: fds[1])  // closed: EBADF
        log.error("lost", [("x", 1)])
        let bad = Logger(level: .debug, fd: -1)
        bad.info("lost too")
    }
}
