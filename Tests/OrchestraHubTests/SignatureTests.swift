import Testing
@testable import OrchestraHub

@Suite struct SignatureTests {
    /// RFC 4231 test case 2.
    @Test func hmacMatchesRFC4231() {
        let mac = HMACSHA256.mac(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8))
        #expect(HMACSHA256.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func agentSignatureCoversEveryField() {
        let secret = Array("s3cret".utf8)
        let sig = AgentSignature.sign(secret: secret, agentId: "a1", timestamp: 1700000000000, nonce: "n1")
        #expect(AgentSignature.verify(secret: secret, agentId: "a1", timestamp: 1700000000000, nonce: "n1", signature: sig))
        #expect(AgentSignature.verify(secret: secret, agentId: "a1", timestamp: 1700000000000, nonce: "n1", signature: sig.uppercased()))
        #expect(!AgentSignature.verify(secret: secret, agentId: "a2", timestamp: 1700000000000, nonce: "n1", signature: sig))
        #expect(!AgentSignature.verify(secret: secret, agentId: "a1", timestamp: 1700000000001, nonce: "n1", signature: sig))
        #expect(!AgentSignature.verify(secret: secret, agentId: "a1", timestamp: 1700000000000, nonce: "n2", signature: sig))
        #expect(!AgentSignature.verify(secret: Array("other".utf8), agentId: "a1", timestamp: 1700000000000, nonce: "n1", signature: sig))
        #expect(!AgentSignature.verify(secret: secret, agentId: "a1", timestamp: 1700000000000, nonce: "n1", signature: ""))
    }
}
