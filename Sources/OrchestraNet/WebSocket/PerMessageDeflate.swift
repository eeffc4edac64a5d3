// permessage-deflate negotiation (RFC 7692 section 5 and 7.1): parsing Sec-WebSocket-Extensions,
// the server's choice among the client's offers, and the client's check of the server's answer.
// Compression itself (zlib) is the connection's business; this file only agrees on parameters.
//
// zlib cannot compress raw deflate with an 8-bit window (deflateInit2 refuses -8), so a side
// whose agreed window is 8 sends its messages uncompressed (RSV1 clear), which RFC 7692 allows
// for any message; `Agreement.canCompress` says so. Inflating always uses a 15-bit window,
// which reads any window size.

/// One element of a Sec-WebSocket-Extensions list: a name and its parameters, in order.
public struct ExtensionElement: Sendable, Equatable {
    public var name: [UInt8]
    public var params: [(name: [UInt8], value: [UInt8]?)]

    public static func == (a: ExtensionElement, b: ExtensionElement) -> Bool {
        a.name == b.name && a.params.count == b.params.count
            && zip(a.params, b.params).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// Parses every Sec-WebSocket-Extensions field of `headers` (RFC 6455 section 9.1:
    /// `token *(";" token ["=" (token / quoted-string)])`, comma-separated). Names and
    /// parameter names are lowercased; a quoted value must unescape to a token.
    public static func parseAll(_ headers: HTTPHeaders) -> Result<[ExtensionElement], HandshakeError> {
        var out: [ExtensionElement] = []
        for i in headers.indices(of: "sec-websocket-extensions") {
            if let e = parse(headers.value(at: i), into: &out) { return .failure(e) }
        }
        return .success(out)
    }

    static func parse(_ v: ArraySlice<UInt8>, into out: inout [ExtensionElement]) -> HandshakeError? {
        let bad = HandshakeError(400, "malformed Sec-WebSocket-Extensions")
        var i = v.startIndex
        let end = v.endIndex
        func skipOWS() { while i < end && (v[i] == 0x20 || v[i] == 0x09) { i += 1 } }
        func token() -> [UInt8]? {
            let s = i
            while i < end && HTTPBytes.isToken(v[i]) { i += 1 }
            return i > s ? v[s..<i].map { HTTPBytes.lower($0) } : nil
        }
        while true {
            while i < end && (v[i] == 0x20 || v[i] == 0x09 || v[i] == UInt8(ascii: ",")) { i += 1 }
            if i == end { return nil }
            guard let name = token() else { return bad }
            var e = ExtensionElement(name: name, params: [])
            skipOWS()
            while i < end && v[i] == UInt8(ascii: ";") {
                i += 1
                skipOWS()
                guard let p = token() else { return bad }
                skipOWS()
                var value: [UInt8]? = nil
                if i < end && v[i] == UInt8(ascii: "=") {
                    i += 1
                    skipOWS()
                    if i < end && v[i] == UInt8(ascii: "\"") {
                        i += 1
                        var q: [UInt8] = []
                        var closed = false
                        while i < end {
                            let c = v[i]
                            i += 1
                            if c == UInt8(ascii: "\"") { closed = true; break }
                            if c == UInt8(ascii: "\\") {
                                guard i < end else { return bad }
                                q.append(v[i]); i += 1
                            } else {
                                q.append(c)
                            }
                        }
                        guard closed, HTTPBytes.isToken(q) else { return bad }
                        value = q
                    } else {
                        guard let t = token() else { return bad }
                        value = t
                    }
                    skipOWS()
                }
                e.params.append((p, value))
            }
            out.append(e)
            if i < end && v[i] != UInt8(ascii: ",") { return bad }
        }
    }
}

public enum PerMessageDeflate {
    public static let name: [UInt8] = Array("permessage-deflate".utf8)

    /// What one side asks for. On a server: what it prefers when accepting an offer. On a
    /// client: what it offers.
    public struct Configuration: Sendable, Equatable {
        /// Ask that the server not keep its LZ77 window between messages.
        public var serverNoContextTakeover = false
        /// Ask that the client not keep its LZ77 window between messages.
        public var clientNoContextTakeover = false
        /// Server: the largest window it compresses with (8...15). Client: the limit it asks of
        /// the server (nil: none asked).
        public var serverMaxWindowBits: Int? = nil
        /// Server: the limit it asks of clients that support it (8...15). Client: the limit it
        /// announces in its offer; `clientMaxWindowBitsOffered` without a value says it accepts
        /// one from the server.
        public var clientMaxWindowBits: Int? = nil
        /// Client only: send `client_max_window_bits` (valueless when `clientMaxWindowBits` is nil).
        public var clientMaxWindowBitsOffered = true

        public init() {}
    }

    /// The parameters both sides use once the handshake is done.
    public struct Agreement: Sendable, Equatable {
        public var serverNoContextTakeover = false
        public var clientNoContextTakeover = false
        /// Window of the server's compressor (8...15).
        public var serverMaxWindowBits = 15
        /// Window of the client's compressor (8...15).
        public var clientMaxWindowBits = 15

        public init() {}

        /// Whether `role` may compress: zlib has no raw deflate with an 8-bit window, so a side
        /// held to 8 bits sends uncompressed messages.
        public func canCompress(_ role: WebSocketRole) -> Bool {
            (role == .server ? serverMaxWindowBits : clientMaxWindowBits) >= 9
        }

        /// The response element: `permessage-deflate[; param]...`.
        public var responseValue: String {
            var s = "permessage-deflate"
            if serverNoContextTakeover { s += "; server_no_context_takeover" }
            if clientNoContextTakeover { s += "; client_no_context_takeover" }
            if serverMaxWindowBits < 15 { s += "; server_max_window_bits=\(serverMaxWindowBits)" }
            if clientMaxWindowBits < 15 { s += "; client_max_window_bits=\(clientMaxWindowBits)" }
            return s
        }
    }

    /// The parameters of one offer or response, checked: known names only, each at most once,
    /// window bits 8...15 written without leading zeros, no value on the takeover flags.
    struct Params {
        var serverNoContextTakeover = false
        var clientNoContextTakeover = false
        var serverMaxWindowBits: Int? = nil
        var clientMaxWindowBitsPresent = false
        var clientMaxWindowBits: Int? = nil

        static func bits(_ v: [UInt8]?) -> Int? {
            guard let v, !v.isEmpty, v.count <= 2, v[0] != UInt8(ascii: "0"), v.allSatisfy({ $0 &- 0x30 < 10 }) else { return nil }
            let n = v.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            return (8...15).contains(n) ? n : nil
        }

        /// The parameters, or why they are invalid.
        static func parse(_ e: ExtensionElement) -> Result<Params, HandshakeError> {
            var p = Params()
            var seen = Set<[UInt8]>()
            for (name, value) in e.params {
                guard seen.insert(name).inserted else {
                    return .failure(HandshakeError(0, "duplicate parameter \(String(decoding: name, as: UTF8.self))"))
                }
                switch String(decoding: name, as: UTF8.self) {
                case "server_no_context_takeover":
                    guard value == nil else { return .failure(HandshakeError(0, "server_no_context_takeover takes no value")) }
                    p.serverNoContextTakeover = true
                case "client_no_context_takeover":
                    guard value == nil else { return .failure(HandshakeError(0, "client_no_context_takeover takes no value")) }
                    p.clientNoContextTakeover = true
                case "server_max_window_bits":
                    guard let b = bits(value) else { return .failure(HandshakeError(0, "server_max_window_bits must be 8 to 15")) }
                    p.serverMaxWindowBits = b
                case "client_max_window_bits":
                    p.clientMaxWindowBitsPresent = true
                    if value != nil {
                        guard let b = bits(value) else { return .failure(HandshakeError(0, "client_max_window_bits must be 8 to 15")) }
                        p.clientMaxWindowBits = b
                    }
                default:
                    return .failure(HandshakeError(0, "unknown parameter \(String(decoding: name, as: UTF8.self))"))
                }
            }
            return .success(p)
        }
    }

    /// Server side: the first acceptable permessage-deflate offer among `elements`, in the
    /// client's order (RFC 7692 section 5.1), and the agreement for it; nil when there is none
    /// (offers with unknown, repeated or invalid parameters are declined, not fatal).
    public static func negotiate(offers elements: [ExtensionElement], _ config: Configuration) -> Agreement? {
        let ourServerBits = min(max(config.serverMaxWindowBits ?? 15, 8), 15)
        let ourClientBits = min(max(config.clientMaxWindowBits ?? 15, 8), 15)
        for e in elements where e.name == name {
            guard case .success(let o) = Params.parse(e) else { continue }
            var a = Agreement()
            a.serverNoContextTakeover = o.serverNoContextTakeover || config.serverNoContextTakeover
            a.clientNoContextTakeover = o.clientNoContextTakeover || config.clientNoContextTakeover
            a.serverMaxWindowBits = min(o.serverMaxWindowBits ?? 15, ourServerBits)
            if o.clientMaxWindowBitsPresent {
                a.clientMaxWindowBits = min(o.clientMaxWindowBits ?? 15, ourClientBits)
            } else {
                a.clientMaxWindowBits = 15  // the client cannot be limited: it did not offer to be
            }
            return a
        }
        return nil
    }

    /// Client side: the offer element for `config`.
    public static func offerValue(_ config: Configuration) -> String {
        var s = "permessage-deflate"
        if config.serverNoContextTakeover { s += "; server_no_context_takeover" }
        if config.clientNoContextTakeover { s += "; client_no_context_takeover" }
        if let b = config.serverMaxWindowBits { s += "; server_max_window_bits=\(b)" }
        if config.clientMaxWindowBitsOffered {
            s += config.clientMaxWindowBits.map { "; client_max_window_bits=\($0)" } ?? "; client_max_window_bits"
        }
        return s
    }

    /// Client side: checks the server's response element against what `config` offered
    /// (RFC 7692 section 7.1); a response the client cannot accept fails the connection.
    public static func accept(response e: ExtensionElement, offered config: Configuration) -> Result<Agreement, HandshakeError> {
        let r: Params
        switch Params.parse(e) {
        case .failure(let why): return .failure(HandshakeError(0, "permessage-deflate response: \(why.message)"))
        case .success(let p): r = p
        }
        func fail(_ m: String) -> Result<Agreement, HandshakeError> { .failure(HandshakeError(0, "permessage-deflate response: \(m)")) }
        var a = Agreement()
        if config.serverNoContextTakeover && !r.serverNoContextTakeover {
            return fail("server_no_context_takeover was requested but not accepted")
        }
        a.serverNoContextTakeover = r.serverNoContextTakeover
        a.clientNoContextTakeover = r.clientNoContextTakeover
        if let asked = config.serverMaxWindowBits {
            guard let b = r.serverMaxWindowBits else { return fail("server_max_window_bits was requested but not accepted") }
            guard b <= asked else { return fail("server_max_window_bits=\(b) exceeds the requested \(asked)") }
        }
        a.serverMaxWindowBits = r.serverMaxWindowBits ?? 15
        if r.clientMaxWindowBitsPresent {
            guard config.clientMaxWindowBitsOffered else { return fail("client_max_window_bits was not offered") }
            guard let b = r.clientMaxWindowBits else { return fail("client_max_window_bits needs a value in a response") }
            if let limit = config.clientMaxWindowBits, b > limit {
                return fail("client_max_window_bits=\(b) exceeds the offered \(limit)")
            }
            a.clientMaxWindowBits = b
        } else {
            a.clientMaxWindowBits = config.clientMaxWindowBits ?? 15
        }
        return .success(a)
    }
}
