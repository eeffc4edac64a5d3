import Glibc
import OrchestraCore
import OrchestraHub

/// Flags of the form `--name value` / `--name=value` / `--flag`, each also read from the
/// environment as ORC_HUB_NAME (flags win).
struct Arguments {
    var positional: [String] = []
    var values: [String: [String]] = [:]

    init(_ argv: ArraySlice<String>, booleans: Set<String>) throws(UsageError) {
        var i = argv.startIndex
        while i < argv.endIndex {
            let a = argv[i]
            i += 1
            guard a.hasPrefix("--"), a.count > 2 else { positional.append(a); continue }
            var name = String(a.dropFirst(2))
            var value: String
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            } else if booleans.contains(name) {
                value = "true"
            } else {
                guard i < argv.endIndex else { throw UsageError("--\(name) needs a value") }
                value = argv[i]
                i += 1
            }
            values[name, default: []].append(value)
        }
    }

    /// The flag's last value, or ORC_HUB_<NAME> from the environment.
    func get(_ name: String) -> String? {
        if let v = values[name]?.last { return v }
        let env = "ORC_HUB_" + name.uppercased().replacingOccurrences("-", "_")
        if let p = getenv(env) { return String(cString: p) }
        return nil
    }

    func all(_ name: String) -> [String] {
        if let v = values[name] { return v }
        if let e = get(name) { return e.split(separator: ",").map { String($0).trimmed } }
        return []
    }

    func int(_ name: String, _ range: ClosedRange<Int64>) throws(UsageError) -> Int64? {
        guard let s = get(name) else { return nil }
        guard let v = Int64(s), range.contains(v) else { throw UsageError("--\(name): '\(s)' is not a number in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func bool(_ name: String) -> Bool {
        guard let s = get(name) else { return false }
        return s == "true" || s == "1" || s == "yes"
    }

    /// Refuses flags nobody asked for (typos should not pass silently).
    func check(known: Set<String>) throws(UsageError) {
        for k in values.keys where !known.contains(k) { throw UsageError("unknown flag --\(k) (see --help)") }
    }
}

struct UsageError: Error {
    let message: String
    init(_ m: String) { message = m }
}

extension String {
    func replacingOccurrences(_ a: Character, _ b: Character) -> String { String(map { $0 == a ? b : $0 }) }
    var trimmed: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

func printErr(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func printOut(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
}
