// The request and response types the server's hooks see (`ServerHandler.shouldAccept`,
// `ServerHandler.handleHTTP`).

/// What an upgrade request or a plain HTTP request looked like, for the hooks.
public struct HTTPRequestInfo: Sendable {
    public let method: String
    public let path: String
    public let query: String?
    /// Header fields in arrival order, names as sent.
    public let headers: [HTTPField]
    public let remoteAddress: String
    /// The subprotocol the server would choose (upgrades only).
    public let subprotocol: String?
    /// The request body (plain requests with a Content-Length, at most
    /// `ServerOptions.maxRequestBody` bytes; empty for upgrades).
    public var body: [UInt8] = []

    /// The first field with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }
}

/// An answer to a request: a refusal of an upgrade, or a plain HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [HTTPField]
    public var body: [UInt8]
    public init(status: Int, headers: [HTTPField] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
