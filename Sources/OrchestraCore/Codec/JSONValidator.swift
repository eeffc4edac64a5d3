// PLACEHOLDER: replaced by the codec work (strict RFC 8259 scanner). Do not ship.
public struct JSONLimits: Sendable {
    public var maxDepth: Int
    public var maxSize: Int
    public init(maxDepth: Int = 64, maxSize: Int = 16 << 20) {
        self.maxDepth = maxDepth
        self.maxSize = maxSize
    }
    public static let `default` = JSONLimits()
}

public enum JSONValidator {
    public static func validate(_ bytes: [UInt8], limits: JSONLimits) throws(OrchestraError) {
        throw OrchestraError(.unsupported, "JSON validation not built yet")
    }
}
