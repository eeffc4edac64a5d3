import OrchestraCore

/// A statement parameter. Values travel as parameters, never inside the statement text.
///
/// Every parameter is sent in PostgreSQL's binary format with its type named (`text`, `int8`,
/// `float8`, `bool`, `bytea`; a NULL names none and the server infers it): bytea goes as its
/// raw bytes (the text format would double it as hex and make the server decode it), numbers
/// need no formatting or parsing and doubles arrive exact. Results come back binary too (see
/// `PostgresResult`).
public enum PostgresValue: Sendable, Equatable {
    case null
    case text(String)
    case int64(Int64)
    case double(Double)
    case bool(Bool)
    case bytea([UInt8])

    /// The type OID sent with the value (pg_type.h); 0 lets the server infer it.
    var typeOID: UInt32 {
        switch self {
        case .null: return 0
        case .text: return PostgresType.text
        case .int64: return PostgresType.int8
        case .double: return PostgresType.float8
        case .bool: return PostgresType.bool
        case .bytea: return PostgresType.bytea
        }
    }

    /// Appends the value's binary form to `out`; returns its length (-1: NULL).
    func encode(into out: inout [UInt8]) -> Int32 {
        switch self {
        case .null:
            return -1
        case .text(let s):
            let n = out.count
            out.append(contentsOf: s.utf8)
            return Int32(out.count - n)
        case .int64(let v):
            appendBigEndian(UInt64(bitPattern: v), &out)
            return 8
        case .double(let v):
            appendBigEndian(v.bitPattern, &out)
            return 8
        case .bool(let v):
            out.append(v ? 1 : 0)
            return 1
        case .bytea(let b):
            out.append(contentsOf: b)
            return Int32(b.count)
        }
    }

    /// The size of the value's binary form (0 for NULL).
    var encodedSize: Int {
        switch self {
        case .null: return 0
        case .text(let s): return s.utf8.count
        case .int64, .double: return 8
        case .bool: return 1
        case .bytea(let b): return b.count
        }
    }
}

extension PostgresValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
                         ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
}

/// One statement with its parameters (`$1`, `$2`, ... in the text).
public struct PostgresStatement: Sendable {
    public var sql: String
    public var parameters: [PostgresValue]

    public init(_ sql: String, _ parameters: [PostgresValue] = []) {
        self.sql = sql
        self.parameters = parameters
    }

    /// The statement text shortened for error messages.
    var excerpt: String {
        let oneLine = String(sql.map { $0 == "\n" || $0 == "\t" ? " " : $0 })
        return oneLine.count <= 120 ? oneLine : String(oneLine.prefix(117)) + "..."
    }

    /// The checks libpq would otherwise fail on after part of a pipeline was sent.
    func validate() throws(PostgresError) {
        if sql.utf8.contains(0) {
            throw PostgresError(.invalidArgument, "statement \"\(excerpt)\" contains a NUL byte")
        }
        if parameters.count > Int(UInt16.max) {
            throw PostgresError(.invalidArgument,
                                "statement \"\(excerpt)\" has \(parameters.count) parameters (at most 65535)")
        }
        for (i, p) in parameters.enumerated() where p.encodedSize > Int(Int32.max) {
            throw PostgresError(.invalidArgument, "parameter $\(i + 1) of statement \"\(excerpt)\" is over 2 GiB")
        }
    }
}

/// Type OIDs of the built-in types this client encodes and decodes (PostgreSQL's pg_type.dat).
enum PostgresType {
    static let bool: UInt32 = 16
    static let bytea: UInt32 = 17
    static let char: UInt32 = 18
    static let name: UInt32 = 19
    static let int8: UInt32 = 20
    static let int2: UInt32 = 21
    static let int4: UInt32 = 23
    static let text: UInt32 = 25
    static let oid: UInt32 = 26
    static let json: UInt32 = 114
    static let xml: UInt32 = 142
    static let float4: UInt32 = 700
    static let float8: UInt32 = 701
    static let unknown: UInt32 = 705
    static let bpchar: UInt32 = 1042
    static let varchar: UInt32 = 1043
    static let jsonb: UInt32 = 3802

    /// Types whose binary form is their text (UTF-8).
    static func isTextual(_ oid: UInt32) -> Bool {
        oid == text || oid == varchar || oid == bpchar || oid == name || oid == json || oid == xml
            || oid == unknown || oid == char
    }
}

private func appendBigEndian(_ v: UInt64, _ out: inout [UInt8]) {
    var be = v.bigEndian
    withUnsafeBytes(of: &be) { out.append(contentsOf: $0) }
}
