import Testing
@testable import OrchestraNet

@Suite struct HTTPBodyTests {
    func head(_ s: String) -> HTTPRequestHead {
        var p = HTTPRequestParser()
        guard case .done = p.feed(Array(s.utf8)) else { Issue.record("head did not parse: \(s)"); return p.head }
        return p.head
    }

    @Test func planReadsTheAnnouncedLengthWithinTheLimit() throws {
        #expect(try HTTPBodyReader.plan(head("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"), maxBody: 16).get() == 12)
        #expect(try HTTPBodyReader.plan(head("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n"), maxBody: 16).get() == 16)
        #expect(try HTTPBodyReader.plan(head("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), maxBody: 16).get() == 0)
        #expect(try HTTPBodyReader.plan(head("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), maxBody: 16).get() == 0)
    }

    @Test func planRefusesOversizedAndChunkedBodies() {
        guard case .failure(let big) = HTTPBodyReader.plan(head("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n"), maxBody: 16) else {
            Issue.record("17 bytes over a limit of 16 accepted"); return
        }
        #expect(big.status == 413 && big.message.contains("larger than 16"))
        let chunked = head("POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(chunked.isChunked)
        guard case .failure(let e) = HTTPBodyReader.plan(chunked, maxBody: 16) else { Issue.record("chunked accepted"); return }
        #expect(e.status == 400 && e.message.contains("Content-Length"))
    }

    @Test func malformedLengthsAreRefusedByTheParser() {
        for bad in ["Content-Length: 1x", "Content-Length: 5\r\nContent-Length: 6", "Content-Length: -1",
                    "Content-Length: 3\r\nTransfer-Encoding: chunked"] {
            var p = HTTPRequestParser()
            guard case .error(let e) = p.feed(Array("POST /a HTTP/1.1\r\nHost: x\r\n\(bad)\r\n\r\n".utf8)) else {
                Issue.record("accepted: \(bad)"); continue
            }
            #expect(e.status == 400, "\(bad)")
        }
    }

    @Test func everySplitGivesTheSameBody() {
        let body = Array("{\"user\":\"alice\",\"password\":\"pw\"}".utf8)
        let input = body + Array("NEXT".utf8)
        for k in 0...input.count {
            var r = HTTPBodyReader(length: body.count)
            var taken = Array(input[0..<k]).withUnsafeBytes { r.feed($0) }
            taken += Array(input[k...]).withUnsafeBytes { r.feed($0) }
            #expect(r.isComplete && r.body == body && taken == body.count, "split at \(k)")
        }
        var one = HTTPBodyReader(length: body.count)
        for b in body { #expect(!one.isComplete); [b].withUnsafeBytes { _ = one.feed($0) } }
        #expect(one.isComplete && one.body == body)
        #expect(HTTPBodyReader(length: 0).isComplete)
    }
}
