import Synchronization

/// A monotonically increasing counter (Prometheus `counter`). Lock-free.
public final class Counter: Sendable {
    public let name: String
    public let labels: [String: String]
    private let storage = Atomic<UInt64>(0)

    init(name: String, labels: [String: String]) {
        self.name = name
        self.labels = labels
    }

    /// Adds `delta` (wraps at 2^64).
    @inline(__always)
    public func add(_ delta: UInt64 = 1) {
        storage.wrappingAdd(delta, ordering: .relaxed)
    }

    public var value: UInt64 { storage.load(ordering: .relaxed) }
}

/// A value that goes up and down (Prometheus `gauge`), stored as a Double. Lock-free.
public final class Gauge: Sendable {
    public let name: String
    public let labels: [String: String]
    private let bits = Atomic<UInt64>(0)   // Double bit pattern; 0 is +0.0

    init(name: String, labels: [String: String]) {
        self.name = name
        self.labels = labels
    }

    public func set(_ v: Double) { bits.store(v.bitPattern, ordering: .relaxed) }
    public func set(_ v: Int64) { set(Double(v)) }

    public func add(_ d: Double) {
        var old = bits.load(ordering: .relaxed)
        while true {
            let new = (Double(bitPattern: old) + d).bitPattern
            let (ok, cur) = bits.compareExchange(expected: old, desired: new, ordering: .relaxed)
            if ok { return }
            old = cur
        }
    }
    public func add(_ d: Int64) { add(Double(d)) }

    public var value: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }
}

/// A thread-safe `Histogram` (rendered as a Prometheus summary; see `MetricsRegistry`).
public final class HistogramMetric: Sendable {
    public let name: String
    public let labels: [String: String]
    private let h = Mutex(Histogram())

    init(name: String, labels: [String: String]) {
        self.name = name
        self.labels = labels
    }

    public func record(_ v: UInt64) { h.withLock { $0.record(v) } }

    /// A copy of the histogram.
    public func snapshot() -> Histogram { h.withLock { $0 } }
}

/// One sample reported by a collector (an object that exposes its own stats).
public struct MetricSample: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case counter, gauge }
    public var name: String
    public var help: String
    public var kind: Kind
    public var labels: [String: String]
    public var value: Double

    public init(name: String, help: String, kind: Kind, labels: [String: String] = [:], value: Double) {
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self.value = value
    }
}

/// A set of named metrics with Prometheus text (0.0.4) and JSON rendering.
///
/// Counters, gauges and histograms are registered by name, help and optional labels;
/// registering the same name and labels again returns the same object. Names follow the
/// Prometheus grammar `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not
/// starting with `__`). Collectors add samples computed at render time (queues, routers).
///
/// Histograms are rendered as Prometheus *summaries*: `name{quantile="0.5"|"0.95"|"0.99"}`,
/// `name_sum`, `name_count`, plus a separate gauge family `name_max`. A summary is used rather
/// than a Prometheus histogram because our log-linear buckets (1920 of them) are too many to
/// export as `le` buckets, and the quantiles are accurate to 1/64 relative error.
public final class MetricsRegistry: Sendable {
    enum Kind: Sendable { case counter, gauge, histogram }
    enum Metric: Sendable {
        case counter(Counter), gauge(Gauge), histogram(HistogramMetric)
    }
    struct Family: Sendable {
        var help: String
        var kind: Kind
        var keys: [String] = []
        var members: [String: Metric] = [:]
    }
    /// The object a collector reports on, held weakly.
    final class Owner: @unchecked Sendable {   // weak loads are thread-safe in the Swift runtime
        weak var object: AnyObject?
        init(_ object: AnyObject) { self.object = object }
    }
    struct Collector: Sendable {
        /// nil for a free-standing collector (kept until the registry goes).
        let owner: Owner?
        /// nil when the owner is gone.
        let body: @Sendable () -> [MetricSample]?

        var isDead: Bool { owner != nil && owner?.object == nil }
    }
    struct State: Sendable {
        var families: [String: Family] = [:]
        var order: [String] = []
        var collectors: [Collector] = []
        /// Help texts given with `setHelp`; they win over the help a metric was made with.
        var helps: [String: String] = [:]

        /// Drops the collectors whose owner was deallocated.
        mutating func pruneCollectors() {
            if collectors.contains(where: \.isDead) { collectors.removeAll(where: \.isDead) }
        }
    }

    private let state = Mutex(State())

    public init() {}

    // MARK: Registration

    public func counter(_ name: String, help: String = "", labels: [String: String] = [:]) throws(OrchestraError) -> Counter {
        let m = try lookup(name, help, labels, .counter) { .counter(Counter(name: name, labels: labels)) }
        guard case .counter(let c) = m else { throw OrchestraError(.internal, "metric kind mismatch") }
        return c
    }

    public func gauge(_ name: String, help: String = "", labels: [String: String] = [:]) throws(OrchestraError) -> Gauge {
        let m = try lookup(name, help, labels, .gauge) { .gauge(Gauge(name: name, labels: labels)) }
        guard case .gauge(let g) = m else { throw OrchestraError(.internal, "metric kind mismatch") }
        return g
    }

    public func histogram(_ name: String, help: String = "", labels: [String: String] = [:]) throws(OrchestraError) -> HistogramMetric {
        let m = try lookup(name, help, labels, .histogram) { .histogram(HistogramMetric(name: name, labels: labels)) }
        guard case .histogram(let h) = m else { throw OrchestraError(.internal, "metric kind mismatch") }
        return h
    }

    /// Longest help text `setHelp` accepts, in bytes.
    public static let maxHelpLength = 4096

    /// Sets the help text (Prometheus `# HELP`) of metric family `name`, whether it exists yet
    /// or not (a counter, gauge, histogram or collector family made later uses it too). Replaces
    /// the help the metric was made with. Throws `.invalidArgument` for an invalid name or an
    /// empty help (a family without help simply has no `# HELP` line), `.tooBig` past
    /// `maxHelpLength` bytes.
    public func setHelp(_ name: String, _ help: String) throws(OrchestraError) {
        try MetricsRegistry.validate(name: name)
        if help.isEmpty {
            throw OrchestraError(.invalidArgument, "help for metric \"\(name)\" is empty; a metric without help is rendered without a # HELP line")
        }
        if help.utf8.count > MetricsRegistry.maxHelpLength {
            throw OrchestraError(.tooBig, "help for metric \"\(name)\" is \(help.utf8.count) bytes; the limit is \(MetricsRegistry.maxHelpLength)")
        }
        state.withLock { $0.helps[name] = help }
    }

    /// Adds a free-standing collector, called (outside the registry lock) at every render, for
    /// as long as the registry lives.
    public func register(collector: @escaping @Sendable () -> [MetricSample]) {
        state.withLock { $0.collectors.append(Collector(owner: nil, body: collector)) }
    }

    /// Adds a collector that reports on `owner`, which the registry holds weakly: `collector`
    /// is called (outside the registry lock) at every render while `owner` lives, and the
    /// registration is dropped once `owner` is deallocated or `unregister(owner:)` removes it.
    public func register<O: AnyObject & Sendable>(owner: O, collector: @escaping @Sendable (O) -> [MetricSample]) {
        let box = Owner(owner)
        let c = Collector(owner: box, body: { [weak owner] in owner.map(collector) })
        state.withLock { st in
            st.pruneCollectors()
            st.collectors.append(c)
        }
    }

    /// Removes every collector registered for `owner`; returns how many there were. A render
    /// already running may still report it once.
    @discardableResult
    public func unregister(owner: AnyObject) -> Int {
        state.withLock { st in
            st.pruneCollectors()
            let before = st.collectors.count
            st.collectors.removeAll { $0.owner?.object === owner }
            return before - st.collectors.count
        }
    }

    /// Live collector registrations (for tests).
    var collectorCount: Int { state.withLock { st in st.collectors.filter { !$0.isDead }.count } }
    /// Stored collector registrations, dead ones included (for tests).
    var storedCollectorCount: Int { state.withLock { $0.collectors.count } }

    private func lookup(_ name: String, _ help: String, _ labels: [String: String], _ kind: Kind,
                        _ make: () -> Metric) throws(OrchestraError) -> Metric {
        try MetricsRegistry.validate(name: name)
        for k in labels.keys { try MetricsRegistry.validate(labelName: k) }
        let key = MetricsRegistry.labelText(labels)
        let r: Result<Metric, OrchestraError> = state.withLock { st in
            if var fam = st.families[name] {
                guard fam.kind == kind else {
                    return .failure(OrchestraError(.invalidArgument, "metric \"\(name)\" is already registered as a \(fam.kind), not a \(kind)"))
                }
                if fam.help.isEmpty && !help.isEmpty {
                    fam.help = help
                    st.families[name] = fam
                }
                if let m = fam.members[key] { return .success(m) }
                let m = make()
                fam.keys.append(key)
                fam.members[key] = m
                st.families[name] = fam
                return .success(m)
            }
            var fam = Family(help: help, kind: kind)
            let m = make()
            fam.keys.append(key)
            fam.members[key] = m
            st.families[name] = fam
            st.order.append(name)
            return .success(m)
        }
        return try r.get()
    }

    // MARK: Validation

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F
    }
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// Checks the Prometheus metric-name grammar `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    public static func validate(name: String) throws(OrchestraError) {
        let b = Array(name.utf8)
        guard !b.isEmpty else { throw OrchestraError(.invalidArgument, "metric name is empty") }
        for (i, c) in b.enumerated() {
            let ok = isNameStart(c) || c == 0x3A || (i > 0 && isDigit(c))
            if !ok {
                throw OrchestraError(.invalidArgument, "invalid metric name \"\(name)\": byte \(i) (0x\(String(c, radix: 16))) is not allowed; names match [a-zA-Z_:][a-zA-Z0-9_:]*")
            }
        }
    }

    /// Checks the label-name grammar `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
    public static func validate(labelName: String) throws(OrchestraError) {
        let b = Array(labelName.utf8)
        guard !b.isEmpty else { throw OrchestraError(.invalidArgument, "label name is empty") }
        if b.count >= 2 && b[0] == 0x5F && b[1] == 0x5F {
            throw OrchestraError(.invalidArgument, "label name \"\(labelName)\" starts with __ (reserved)")
        }
        for (i, c) in b.enumerated() where !(isNameStart(c) || (i > 0 && isDigit(c))) {
            throw OrchestraError(.invalidArgument, "invalid label name \"\(labelName)\": byte \(i) is not allowed; label names match [a-zA-Z_][a-zA-Z0-9_]*")
        }
    }

    // MARK: Rendering

    /// `{a="x",b="y"}` with keys sorted and values escaped (\\, \", \n); "" without labels.
    static func labelText(_ labels: [String: String], extra: (String, String)? = nil) -> String {
        if labels.isEmpty && extra == nil { return "" }
        var parts: [String] = []
        for k in labels.keys.sorted() { parts.append("\(k)=\"\(escapeLabel(labels[k] ?? ""))\"") }
        if let (k, v) = extra { parts.append("\(k)=\"\(escapeLabel(v))\"") }
        return "{" + parts.joined(separator: ",") + "}"
    }

    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// A Prometheus number: integers without a fraction, +Inf/-Inf/NaN spelled as Prometheus does.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 9_007_199_254_740_992 { return String(Int64(v)) }
        return "\(v)"
    }

    /// One rendered family: header and sample lines, in output order.
    struct RenderedFamily {
        var name: String
        var help: String
        var type: String
        var lines: [String] = []
    }

    /// Snapshot of everything, families in registration order, then collector families.
    private func snapshotFamilies() -> (registered: [(String, Family)], collectors: [Collector], helps: [String: String]) {
        state.withLock { st in
            st.pruneCollectors()
            return (st.order.compactMap { n in st.families[n].map { (n, $0) } }, st.collectors, st.helps)
        }
    }

    enum Value {
        case number(Double)
        case summary(Histogram)
    }

    /// Every sample as (family name, help, type, labels, value), in output order.
    private func collect() -> [(family: String, help: String, type: String, labels: [String: String], value: Value)] {
        let (registered, collectors, helps) = snapshotFamilies()
        var out: [(family: String, help: String, type: String, labels: [String: String], value: Value)] = []
        for (name, fam) in registered {
            let help = helps[name] ?? fam.help
            for key in fam.keys {
                guard let m = fam.members[key] else { continue }
                switch m {
                case .counter(let c): out.append((name, help, "counter", c.labels, .number(Double(c.value))))
                case .gauge(let g): out.append((name, help, "gauge", g.labels, .number(g.value)))
                case .histogram(let h): out.append((name, help, "summary", h.labels, .summary(h.snapshot())))
                }
            }
        }
        for c in collectors {
            for s in c.body() ?? [] {
                // Collector samples with an invalid name cannot be expressed; they are skipped.
                guard (try? MetricsRegistry.validate(name: s.name)) != nil else { continue }
                out.append((s.name, helps[s.name] ?? s.help, s.kind == .counter ? "counter" : "gauge", s.labels, .number(s.value)))
            }
        }
        return out
    }

    /// The Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4`).
    public func renderPrometheus() -> [UInt8] {
        var families: [String: RenderedFamily] = [:]
        var order: [String] = []
        func add(_ name: String, _ help: String, _ type: String, _ line: String) {
            if families[name] == nil {
                families[name] = RenderedFamily(name: name, help: help, type: type)
                order.append(name)
            }
            guard families[name]?.type == type else { return }   // kind clash: keep the first
            families[name]?.lines.append(line)
        }
        for s in collect() {
            switch s.value {
            case .number(let v):
                add(s.family, s.help, s.type, "\(s.family)\(MetricsRegistry.labelText(s.labels)) \(MetricsRegistry.format(v))")
            case .summary(let h):
                for (q, qs) in [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99")] {
                    add(s.family, s.help, "summary", "\(s.family)\(MetricsRegistry.labelText(s.labels, extra: ("quantile", qs))) \(h.quantile(q))")
                }
                let l = MetricsRegistry.labelText(s.labels)
                add(s.family, s.help, "summary", "\(s.family)_sum\(l) \(h.sum)")
                add(s.family, s.help, "summary", "\(s.family)_count\(l) \(h.count)")
                add(s.family + "_max", "Largest value recorded in \(s.family)", "gauge", "\(s.family)_max\(l) \(h.max)")
            }
        }
        var text = ""
        for name in order {
            guard let f = families[name] else { continue }
            // HELP is optional in the format; an empty one ("# HELP name ") says nothing.
            if !f.help.isEmpty { text += "# HELP \(name) \(MetricsRegistry.escapeHelp(f.help))\n" }
            text += "# TYPE \(name) \(f.type)\n"
            for line in f.lines { text += line; text += "\n" }
        }
        return Array(text.utf8)
    }

    /// A JSON object snapshot: `"name"` or `"name{label=\"v\"}"` -> number, histograms ->
    /// `{"count":..,"sum":..,"p50":..,"p95":..,"p99":..,"max":..}`. Non-finite numbers are null.
    public func renderJSON() -> [UInt8] {
        var text = "{"
        var first = true
        var seen = Set<String>()
        for s in collect() {
            let key = s.family + MetricsRegistry.labelText(s.labels)
            guard seen.insert(key).inserted else { continue }
            if !first { text += "," }
            first = false
            text += MetricsRegistry.jsonString(key) + ":"
            switch s.value {
            case .number(let v):
                text += v.isFinite ? MetricsRegistry.format(v) : "null"
            case .summary(let h):
                text += "{\"count\":\(h.count),\"sum\":\(h.sum),\"p50\":\(h.quantile(0.5)),\"p95\":\(h.quantile(0.95)),\"p99\":\(h.quantile(0.99)),\"max\":\(h.max)}"
            }
        }
        text += "}"
        return Array(text.utf8)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if ch.value < 0x20 {
                    let hex = String(ch.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(ch)
                }
            }
        }
        return out + "\""
    }
}
