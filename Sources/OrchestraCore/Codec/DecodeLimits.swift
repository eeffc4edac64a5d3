/// Limits applied to every decoded input (JSON text, MessagePack, envelopes).
public struct DecodeLimits: Sendable, Equatable {
    /// The deepest nesting any decoder accepts, whatever `maxDepth` says. Decoders and
    /// transcoders recurse once per level, so this keeps stack use bounded on any thread.
    public static let depthCeiling = 256

    /// Largest input in bytes (default 16 MiB).
    public var maxSize: Int
    /// Deepest nesting of objects/arrays (maps/arrays); the envelope itself is level 1.
    /// Values above `depthCeiling` act as `depthCeiling`.
    public var maxDepth: Int

    public init(maxSize: Int = 16 << 20, maxDepth: Int = 64) {
        self.maxSize = maxSize
        self.maxDepth = maxDepth
    }

    public static let `default` = DecodeLimits()

    /// The depth limit decoders enforce: `maxDepth` clamped to 0...depthCeiling.
    @inlinable public var effectiveDepth: Int { min(max(maxDepth, 0), DecodeLimits.depthCeiling) }
}
