// The body of a plain HTTP request (a login form, a small JSON document), read by the server
// before its handler sees the request. Sans-I/O: `plan` decides from the head whether there is
// a body to read and whether it is acceptable; `HTTPBodyReader` collects exactly that many bytes
// from the chunks that follow the head, in any split.
//
// Only bodies with a Content-Length are read, up to a small limit: a chunked body is refused
// (400: the server has no use for streamed uploads, and a length up front lets it refuse an
// oversized body before reading it), a longer one gets 413. WebSocket upgrades have no body.

/// Collects a request body of a known length.
public struct HTTPBodyReader: Sendable {
    /// The length announced by Content-Length.
    public let length: Int
    /// What was read so far (all of it once `isComplete`).
    public private(set) var body: [UInt8] = []

    public init(length: Int) {
        self.length = max(0, length)
        body.reserveCapacity(self.length)
    }

    public var isComplete: Bool { body.count >= length }

    /// Takes the bytes of `chunk` that belong to the body; returns how many it took (the rest,
    /// if any, follows the request).
    @discardableResult
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) -> Int {
        let n = min(chunk.count, length - body.count)
        if n > 0 { body.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n])) }
        return n
    }

    /// How many body bytes follow `head`, or the refusal to answer with: 400 for a chunked body,
    /// 413 for a Content-Length over `maxBody`.
    public static func plan(_ head: HTTPRequestHead, maxBody: Int) -> Result<Int, HTTPParseError> {
        if head.isChunked {
            return .failure(HTTPParseError(400, "chunked request bodies are not accepted: send Content-Length"))
        }
        let n = head.contentLength ?? 0
        if n > maxBody {
            return .failure(HTTPParseError(413, "request body of \(n) bytes is larger than \(maxBody) bytes"))
        }
        return .success(n)
    }
}
