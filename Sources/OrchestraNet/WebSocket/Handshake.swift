// The opening handshake (RFC 6455 section 4): the server's checks of an upgrade request and its
// 101 answer, the client's request and its checks of the server's answer. Runs once per
// connection on a parsed head, so it favours clarity over speed (Strings are fine here).
import OrchestraCore

/// A refused or failed handshake. On the server `status` is what to answer (400, 405, 426) and
/// `headers` go into that answer (`Sec-WebSocket-Version: 13` with 426); on the client `status`
/// is 0 (the client fails the connection).
public struct HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public let headers: [HTTPField]

    public init(_ status: Int, _ message: String, headers: [HTTPField] = []) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    public var description: String { status == 0 ? message : "\(status): \(message)" }

    /// The complete HTTP response refusing the upgrade (the message as a text/plain body,
    /// `Connection: close`).
    public var response: [UInt8] {
        HTTPResponseWriter.simple(status: status, headers: headers, body: Array((message + "\n").utf8))
    }
}

/// A header field to write: name and value (checked for CR, LF and NUL when written).
public struct HTTPField: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) { self.name = name; self.value = value }

    /// A token name and a value without control bytes other than HTAB (no header injection).
    public var isValid: Bool {
        HTTPBytes.isToken(Array(name.utf8)) && value.utf8.allSatisfy { ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }
    }
}

/// Writes HTTP/1.1 response heads.
public enum HTTPResponseWriter {
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 101: return "Switching Protocols"
        case 200: return "OK"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 304: return "Not Modified"
        case 405: return "Method Not Allowed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 429: return "Too Many Requests"
        case 426: return "Upgrade Required"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status"
        }
    }

    /// A response with a body and `Connection: close` (refusals, errors). Invalid extra fields
    /// are left out, and so are Content-Length and Connection (written here); Content-Type is
    /// `text/plain; charset=utf-8` unless `headers` name one.
    public static func simple(status: Int, headers: [HTTPField] = [], body: [UInt8]) -> [UInt8] {
        var s = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        var hasType = false
        for h in headers where h.isValid {
            switch h.name.lowercased() {
            case "content-length", "connection": continue
            case "content-type": hasType = true
            default: break
            }
            s += "\(h.name): \(h.value)\r\n"
        }
        if !hasType { s += "Content-Type: text/plain; charset=utf-8\r\n" }
        s += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(s.utf8) + body
    }
}

/// The server's half of the handshake.
public enum ServerHandshake {
    /// RFC 6455 section 1.3.
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    public struct Configuration: Sendable {
        /// Subprotocols the server speaks, in its order of preference.
        public var subprotocols: [String] = []
        /// permessage-deflate preferences; nil: never negotiated.
        public var perMessageDeflate: PerMessageDeflate.Configuration? = nil
        public init() {}
    }

    /// An accepted upgrade: what was agreed and the 101 response to send.
    public struct Accepted: Sendable {
        public let acceptValue: String
        /// The chosen subprotocol, nil when none was offered or none matched.
        public let subprotocol: String?
        public let perMessageDeflate: PerMessageDeflate.Agreement?

        /// The 101 response, with `extra` fields (e.g. Set-Cookie from an accept hook).
        public func response(extra: [HTTPField] = []) -> [UInt8] {
            var s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            s += "Sec-WebSocket-Accept: \(acceptValue)\r\n"
            if let p = subprotocol { s += "Sec-WebSocket-Protocol: \(p)\r\n" }
            if let d = perMessageDeflate { s += "Sec-WebSocket-Extensions: \(d.responseValue)\r\n" }
            for h in extra where h.isValid { s += "\(h.name): \(h.value)\r\n" }
            s += "\r\n"
            return Array(s.utf8)
        }
    }

    /// Whether the request asks for a WebSocket upgrade (an Upgrade list holding "websocket");
    /// other requests go to the plain HTTP handler.
    public static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.headers.listContains("upgrade", token: "websocket")
    }

    /// Whether the request means to open a WebSocket: an upgrade, or one that carries a
    /// Sec-WebSocket-Key or Sec-WebSocket-Version without Upgrade (refused with 400 by
    /// `accept` rather than served as plain HTTP).
    public static func isWebSocketAttempt(_ head: HTTPRequestHead) -> Bool {
        isUpgradeRequest(head) || head.headers.count(of: "sec-websocket-key") > 0
            || head.headers.count(of: "sec-websocket-version") > 0
    }

    /// Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)).
    public static func acceptValue<C: Collection<UInt8>>(forKey key: C) -> String {
        let digest = Entropy.sha1(Array(key) + Array(guid.utf8))
        return String(decoding: Base64.encode(digest), as: UTF8.self)
    }

    /// Checks an upgrade request per RFC 6455 section 4.2.1 and agrees on subprotocol and
    /// permessage-deflate. Refusals: 405 for a method other than GET (with `Allow: GET`), 400
    /// for HTTP/1.0, a missing or repeated Host, Upgrade, Connection, Sec-WebSocket-Key
    /// or Sec-WebSocket-Version, a key that is not base64 of 16 bytes, malformed subprotocol
    /// or extension lists; 426 with `Sec-WebSocket-Version: 13` for another version.
    public static func accept(_ head: HTTPRequestHead, _ config: Configuration = Configuration()) -> Result<Accepted, HandshakeError> {
        let h = head.headers
        func refuse(_ m: String) -> Result<Accepted, HandshakeError> { .failure(HandshakeError(400, m)) }
        guard head.isGET else {
            return .failure(HandshakeError(405, "a WebSocket upgrade must use GET", headers: [HTTPField("Allow", "GET")]))
        }
        guard head.isAtLeastHTTP11 else { return refuse("a WebSocket upgrade needs HTTP/1.1 or later") }
        switch h.count(of: "host") {
        case 0: return refuse("missing Host")
        case 1: break
        default: return refuse("more than one Host")
        }
        guard h.listContains("upgrade", token: "websocket") else { return refuse("Upgrade does not hold websocket") }
        guard h.listContains("connection", token: "upgrade") else { return refuse("Connection does not hold upgrade") }
        // Version before key, so a client of another version learns which one we speak.
        let versions = h.indices(of: "sec-websocket-version")
        guard !versions.isEmpty else {
            return .failure(HandshakeError(400, "missing Sec-WebSocket-Version",
                                           headers: [HTTPField("Sec-WebSocket-Version", "13")]))
        }
        guard versions.count == 1, h.value(at: versions[0]).elementsEqual("13".utf8) else {
            return .failure(HandshakeError(426, "unsupported Sec-WebSocket-Version (this server speaks 13)",
                                           headers: [HTTPField("Sec-WebSocket-Version", "13")]))
        }
        let keys = h.indices(of: "sec-websocket-key")
        guard keys.count == 1 else { return refuse(keys.isEmpty ? "missing Sec-WebSocket-Key" : "more than one Sec-WebSocket-Key") }
        let key = h.value(at: keys[0])
        let decoded = key.withUnsafeBytes { Base64.decode($0) }
        guard case .success(let raw) = decoded, raw.count == 16 else {
            return refuse("Sec-WebSocket-Key is not the base64 of 16 bytes")
        }
        // Subprotocols: the client's list (tokens, each once); the server's first that is in it.
        var offered: [ArraySlice<UInt8>] = []
        var badList = false
        h.forEachListElement("sec-websocket-protocol") { p in
            if !HTTPBytes.isToken(p) || offered.contains(where: { $0.elementsEqual(p) }) { badList = true; return false }
            offered.append(p)
            return true
        }
        if badList { return refuse("malformed Sec-WebSocket-Protocol (tokens, each at most once)") }
        let chosen = config.subprotocols.first { s in offered.contains { $0.elementsEqual(s.utf8) } }
        var deflate: PerMessageDeflate.Agreement? = nil
        if let pmd = config.perMessageDeflate {
            switch ExtensionElement.parseAll(h) {
            case .failure(let e): return .failure(e)
            case .success(let elements): deflate = PerMessageDeflate.negotiate(offers: elements, pmd)
            }
        }
        return .success(Accepted(acceptValue: acceptValue(forKey: key), subprotocol: chosen, perMessageDeflate: deflate))
    }
}

/// The client's half of the handshake: one request with a fresh random key, and the check of
/// the server's answer.
public struct ClientHandshake: Sendable {
    public struct Configuration: Sendable {
        /// Subprotocols to offer, in order of preference.
        public var subprotocols: [String] = []
        /// permessage-deflate offer; nil: not offered.
        public var perMessageDeflate: PerMessageDeflate.Configuration? = nil
        /// Extra request fields (Origin, Authorization, cookies...).
        public var headers: [HTTPField] = []
        public init() {}
    }

    public struct Accepted: Sendable, Equatable {
        public let subprotocol: String?
        public let perMessageDeflate: PerMessageDeflate.Agreement?
    }

    /// The base64 key sent (24 characters).
    public let key: String
    public let configuration: Configuration
    /// The request head to send.
    public let request: [UInt8]

    /// Builds the request for `target` (path and query, e.g. "/chat?room=1") on `host`
    /// ("example.com" or "example.com:8080"). Fails on a target, host, subprotocol or field
    /// that would break the request (spaces, control bytes, non-tokens).
    public init(host: String, target: String, _ config: Configuration = Configuration()) throws(HandshakeError) {
        func visible(_ s: String) -> Bool { !s.isEmpty && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } }
        guard visible(target), target.utf8.first == UInt8(ascii: "/") else { throw HandshakeError(0, "invalid request target") }
        guard visible(host) else { throw HandshakeError(0, "invalid host") }
        for p in config.subprotocols where !HTTPBytes.isToken(Array(p.utf8)) {
            throw HandshakeError(0, "subprotocol \(p) is not a token")
        }
        if Set(config.subprotocols).count != config.subprotocols.count { throw HandshakeError(0, "repeated subprotocol") }
        for f in config.headers where !f.isValid { throw HandshakeError(0, "invalid header field \(f.name)") }
        key = String(decoding: Base64.encode(Entropy.bytes(16)), as: UTF8.self)
        configuration = config
        var s = "GET \(target) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        s += "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        if !config.subprotocols.isEmpty { s += "Sec-WebSocket-Protocol: \(config.subprotocols.joined(separator: ", "))\r\n" }
        if let d = config.perMessageDeflate { s += "Sec-WebSocket-Extensions: \(PerMessageDeflate.offerValue(d))\r\n" }
        for f in config.headers { s += "\(f.name): \(f.value)\r\n" }
        s += "\r\n"
        request = Array(s.utf8)
    }

    /// Checks the server's answer (RFC 6455 section 4.1, RFC 7692 section 7.1): status 101,
    /// Upgrade websocket, Connection upgrade, the right Sec-WebSocket-Accept (exactly once), a
    /// subprotocol only if one was offered and then one of those, extensions only if offered.
    public func validate(_ response: HTTPResponseHead) -> Result<Accepted, HandshakeError> {
        let h = response.headers
        func fail(_ m: String) -> Result<Accepted, HandshakeError> { .failure(HandshakeError(0, m)) }
        guard response.status == 101 else { return fail("server answered \(response.status) instead of 101") }
        guard h.listContains("upgrade", token: "websocket") else { return fail("Upgrade does not hold websocket") }
        guard h.listContains("connection", token: "upgrade") else { return fail("Connection does not hold upgrade") }
        let accepts = h.indices(of: "sec-websocket-accept")
        guard accepts.count == 1 else { return fail(accepts.isEmpty ? "missing Sec-WebSocket-Accept" : "more than one Sec-WebSocket-Accept") }
        guard h.value(at: accepts[0]).elementsEqual(ServerHandshake.acceptValue(forKey: key.utf8).utf8) else {
            return fail("wrong Sec-WebSocket-Accept")
        }
        var protocols: [ArraySlice<UInt8>] = []
        h.forEachListElement("sec-websocket-protocol") { protocols.append($0); return true }
        var chosen: String? = nil
        if h.count(of: "sec-websocket-protocol") > 0 {
            guard protocols.count == 1 else { return fail("Sec-WebSocket-Protocol must name exactly one subprotocol") }
            let p = String(decoding: protocols[0], as: UTF8.self)
            guard configuration.subprotocols.contains(p) else { return fail("server chose subprotocol \(p), which was not offered") }
            chosen = p
        }
        var deflate: PerMessageDeflate.Agreement? = nil
        switch ExtensionElement.parseAll(h) {
        case .failure: return fail("malformed Sec-WebSocket-Extensions")
        case .success(let elements):
            for e in elements {
                guard e.name == PerMessageDeflate.name, let offered = configuration.perMessageDeflate else {
                    return fail("server accepted extension \(String(decoding: e.name, as: UTF8.self)), which was not offered")
                }
                guard deflate == nil else { return fail("permessage-deflate accepted twice") }
                switch PerMessageDeflate.accept(response: e, offered: offered) {
                case .failure(let err): return .failure(err)
                case .success(let a): deflate = a
                }
            }
        }
        return .success(Accepted(subprotocol: chosen, perMessageDeflate: deflate))
    }
}
