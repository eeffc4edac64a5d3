/// The agent ids a key may register: exact ids and prefixes (`build-*`), any of which admits.
/// Written as a comma-separated list (`build-*,deploy-1`); `*` alone admits every id.
public struct AgentIdScope: Sendable, Equatable, CustomStringConvertible {
    public let patterns: [String]

    /// Parses a comma-separated list. Nil when it is empty, a pattern is empty, longer than
    /// 128 bytes, or has a `*` anywhere but at its end.
    public init?(_ text: String) {
        var out: [String] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let p = String(part)
            guard !p.isEmpty, p.utf8.count <= 128 else { return nil }
            if let star = p.firstIndex(of: "*"), star != p.index(before: p.endIndex) { return nil }
            out.append(p)
        }
        guard !out.isEmpty else { return nil }
        patterns = out
    }

    public var text: String { patterns.joined(separator: ",") }
    public var description: String { text }

    public func admits(_ agentId: String) -> Bool {
        patterns.contains { p in
            if p.hasSuffix("*") { return agentId.hasPrefix(p.dropLast()) }
            return agentId == p
        }
    }
}
