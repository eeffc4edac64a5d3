// The error codes, HubError, the protocol version and the registration signature are the
// wire vocabulary the agent SDK shares: they live in OrchestraWire, which this module
// re-exports (its public API throws HubError).
@_exported import OrchestraWire
import OrchestraCore

/// Building and reading the hub's envelopes.
public enum HubEnvelope {
    /// A new envelope of `type` with a JSON payload, stamped now, version "1.0", source "hub".
    public static func make(_ type: String, _ payload: JSONValue, correlationId: String? = nil,
                            source: String = "hub", headers: [(String, JSONValue)] = []) -> Message {
        let m = Message(type: type, source: source)
        if let correlationId { try? m.set(.correlationId, Array(correlationId.utf8)) }
        m.payload = payload.jsonBytes
        for (k, v) in headers { try? m.setHeader(Array(k.utf8), .json(v.jsonBytes)) }
        return m
    }

    /// An `error` envelope answering `correlationId`.
    public static func error(_ e: HubError, correlationId: String?) -> Message {
        make("error", e.info(), correlationId: correlationId)
    }

    /// The payload as a JSON object (PARAM_001 when absent, not JSON, or not an object).
    public static func payload(of m: Message) throws(HubError) -> JSONValue {
        guard let bytes = m.payload, !bytes.isEmpty else { return .object([]) }
        guard m.contentType == .json, !m.compressed, !m.encrypted else {
            throw HubError(.invalidParameters, "\(m.type): the payload must be a plain JSON object")
        }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch {
            throw HubError(.invalidParameters, "\(m.type): payload: \(error.message)")
        }
        guard case .object = v else {
            throw HubError(.invalidParameters, "\(m.type): the payload must be a JSON object")
        }
        return v
    }

    /// PARAM_001 unless `headers.protocol` is absent or a JSON integer from 1 to the hub's
    /// version (written plainly: no sign, fraction, exponent or leading zero; not a string).
    public static func checkProtocol(_ m: Message) throws(HubError) {
        guard let v = m.header(HubEnvelope.protocolKey) else { return }
        let bad = HubError(.invalidParameters, "headers.protocol must be an integer from 1 to \(hubProtocolVersion) (this hub's version)",
                           details: ["field": "headers.protocol", "protocol": .int(hubProtocolVersion)])
        guard case .json(let bytes) = v, let first = bytes.first, first >= 0x31, first <= 0x39, bytes.count <= 18,
              bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw bad }
        var n: Int64 = 0
        for b in bytes { n = n * 10 + Int64(b - 0x30) }
        guard n <= hubProtocolVersion else { throw bad }
    }

    static let protocolKey = Array("protocol".utf8)

    /// A header holding a JSON value.
    public static func setHeader(_ m: Message, _ key: String, _ v: JSONValue) {
        try? m.setHeader(Array(key.utf8), .json(v.jsonBytes))
    }
}

/// Typed access to payload fields, failing with PARAM_001 naming the event and the field.
public struct Fields {
    public let event: String
    public let v: JSONValue

    public init(_ event: String, _ v: JSONValue) {
        self.event = event
        self.v = v
    }

    func bad(_ key: String, _ what: String) -> HubError {
        HubError(.invalidParameters, "\(event): field '\(key)' \(what)", details: ["field": .string(key)])
    }

    public func string(_ key: String, maxLength: Int = 256) throws(HubError) -> String {
        guard let x = v[key] else { throw bad(key, "is required") }
        guard let s = x.string, !s.isEmpty else { throw bad(key, "must be a non-empty string") }
        guard s.utf8.count <= maxLength else { throw bad(key, "is longer than \(maxLength) bytes") }
        return s
    }

    public func optionalString(_ key: String, maxLength: Int = 4096) throws(HubError) -> String? {
        guard let x = v[key], !x.isNull else { return nil }
        guard let s = x.string else { throw bad(key, "must be a string") }
        guard s.utf8.count <= maxLength else { throw bad(key, "is longer than \(maxLength) bytes") }
        return s
    }

    /// Longest id (`taskId`, `sessionId`, `agentId`, `keyId`), in UTF-8 bytes.
    public static let maxIdBytes = 128

    /// A required id: a non-empty string of at most `maxIdBytes` bytes.
    public func id(_ key: String) throws(HubError) -> String {
        try string(key, maxLength: Fields.maxIdBytes)
    }

    /// An optional id: absent (or null), else as `id`.
    public func optionalId(_ key: String) throws(HubError) -> String? {
        guard let x = v[key], !x.isNull else { return nil }
        return try id(key)
    }

    public func int(_ key: String) throws(HubError) -> Int64 {
        guard let x = v[key] else { throw bad(key, "is required") }
        guard let i = x.int else { throw bad(key, "must be an integer") }
        return i
    }

    public func optionalInt(_ key: String, in range: ClosedRange<Int64>) throws(HubError) -> Int64? {
        guard let x = v[key], !x.isNull else { return nil }
        guard let i = x.int else { throw bad(key, "must be an integer") }
        guard range.contains(i) else { throw bad(key, "must be in \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    public func optionalDouble(_ key: String) throws(HubError) -> Double? {
        guard let x = v[key], !x.isNull else { return nil }
        guard let d = x.double, d.isFinite else { throw bad(key, "must be a number") }
        return d
    }

    public func bool(_ key: String) throws(HubError) -> Bool {
        guard let x = v[key] else { throw bad(key, "is required") }
        guard let b = x.bool else { throw bad(key, "must be true or false") }
        return b
    }

    public func strings(_ key: String, maxCount: Int = 64) throws(HubError) -> [String] {
        guard let x = v[key], !x.isNull else { return [] }
        guard let a = x.array else { throw bad(key, "must be an array of strings") }
        guard a.count <= maxCount else { throw bad(key, "has more than \(maxCount) items") }
        var out: [String] = []
        for item in a {
            guard let s = item.string, !s.isEmpty, s.utf8.count <= 256 else { throw bad(key, "must be an array of non-empty strings") }
            out.append(s)
        }
        return out
    }

    public func object(_ key: String) throws(HubError) -> JSONValue? {
        guard let x = v[key], !x.isNull else { return nil }
        guard case .object = x else { throw bad(key, "must be an object") }
        return x
    }
}

/// Task priorities as the design names them ("low" | "normal" | "high" | "critical"), or 0...3.
public func parsePriority(_ v: JSONValue?) -> Int? {
    guard let v else { return 1 }
    if let i = v.int, (0...3).contains(i) { return Int(i) }
    switch v.string {
    case "low": return 0
    case "normal": return 1
    case "high": return 2
    case "critical": return 3
    default: return nil
    }
}
