import CPQ
import Glibc
import OrchestraCore

/// The rows (or the command tag) of one statement: a libpq `PGresult`, freed with the object.
/// Immutable; any thread may read it.
///
/// Columns arrive in PostgreSQL's binary format (see `PostgresValue` for why). The accessors
/// decode by the column's type and refuse a type they cannot read as asked, naming the column
/// and the cast that would do (`count(*)` is int8, `1` is int4: both read as `int64`). NULL
/// reads as nil from every accessor. A row or column out of range throws `.invalidArgument`.
public final class PostgresResult: @unchecked Sendable {
    private let handle: OpaquePointer
    public let rowCount: Int
    public let columnCount: Int

    init(_ handle: OpaquePointer) {
        self.handle = handle
        rowCount = Int(PQntuples(handle))
        columnCount = Int(PQnfields(handle))
    }

    deinit { PQclear(handle) }

    /// The command tag: "INSERT 0 3", "SELECT 1", "UPDATE 0".
    public var commandTag: String { String(cString: PQcmdStatus(handle)) }

    /// Rows an INSERT, UPDATE, DELETE, MERGE, SELECT, MOVE, FETCH or COPY touched (0 for others).
    public var affectedRows: Int { Int(String(cString: PQcmdTuples(handle))) ?? 0 }

    public func columnName(_ column: Int) throws(OrchestraError) -> String {
        try check(0, column, rows: false)
        return String(cString: PQfname(handle, Int32(column)))
    }

    /// The index of the column called `name` (exact match), or nil.
    public func columnIndex(_ name: String) -> Int? {
        for c in 0..<columnCount where String(cString: PQfname(handle, Int32(c))) == name { return c }
        return nil
    }

    /// The column's type OID (pg_type).
    public func columnType(_ column: Int) throws(OrchestraError) -> UInt32 {
        try check(0, column, rows: false)
        return PQftype(handle, Int32(column))
    }

    public func isNull(_ row: Int, _ column: Int) throws(OrchestraError) -> Bool {
        try check(row, column)
        return PQgetisnull(handle, Int32(row), Int32(column)) != 0
    }

    /// text, varchar, char(n), name, json, xml; jsonb (its text after the version byte).
    public func text(_ row: Int, _ column: Int) throws(OrchestraError) -> String? {
        guard let b = try raw(row, column) else { return nil }
        let type = PQftype(handle, Int32(column))
        if PostgresType.isTextual(type) { return String(decoding: b, as: UTF8.self) }
        if type == PostgresType.jsonb, b.count >= 1, b[0] == 1 {
            return String(decoding: UnsafeRawBufferPointer(rebasing: b[1...]), as: UTF8.self)
        }
        throw mismatch(row, column, wanted: "text", cast: "::text")
    }

    /// int2, int4, int8, oid.
    public func int64(_ row: Int, _ column: Int) throws(OrchestraError) -> Int64? {
        guard let b = try raw(row, column) else { return nil }
        switch (PQftype(handle, Int32(column)), b.count) {
        case (PostgresType.int8, 8): return Int64(bitPattern: bigEndian(b))
        case (PostgresType.int4, 4): return Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: bigEndian(b))))
        case (PostgresType.int2, 2): return Int64(Int16(bitPattern: UInt16(truncatingIfNeeded: bigEndian(b))))
        case (PostgresType.oid, 4): return Int64(UInt32(truncatingIfNeeded: bigEndian(b)))
        default: throw mismatch(row, column, wanted: "int64", cast: "::int8")
        }
    }

    /// float8, float4, and the integer types.
    public func double(_ row: Int, _ column: Int) throws(OrchestraError) -> Double? {
        guard let b = try raw(row, column) else { return nil }
        switch (PQftype(handle, Int32(column)), b.count) {
        case (PostgresType.float8, 8): return Double(bitPattern: bigEndian(b))
        case (PostgresType.float4, 4): return Double(Float(bitPattern: UInt32(truncatingIfNeeded: bigEndian(b))))
        case (PostgresType.int8, _), (PostgresType.int4, _), (PostgresType.int2, _):
            return try int64(row, column).map { Double($0) }
        default: throw mismatch(row, column, wanted: "double", cast: "::float8")
        }
    }

    public func bool(_ row: Int, _ column: Int) throws(OrchestraError) -> Bool? {
        guard let b = try raw(row, column) else { return nil }
        guard PQftype(handle, Int32(column)) == PostgresType.bool, b.count == 1 else {
            throw mismatch(row, column, wanted: "bool", cast: "::bool")
        }
        return b[0] != 0
    }

    /// bytea as its bytes; the textual types as their UTF-8.
    public func bytes(_ row: Int, _ column: Int) throws(OrchestraError) -> [UInt8]? {
        try withBytes(row, column) { Array($0) }
    }

    /// The value's bytes without a copy (bytea, or a textual type's UTF-8), valid inside `body`
    /// only; nil for NULL.
    public func withBytes<R>(_ row: Int, _ column: Int, _ body: (UnsafeRawBufferPointer) -> R) throws(OrchestraError) -> R? {
        guard let b = try raw(row, column) else { return nil }
        let type = PQftype(handle, Int32(column))
        guard type == PostgresType.bytea || PostgresType.isTextual(type) else {
            throw mismatch(row, column, wanted: "bytes", cast: "::bytea")
        }
        return body(b)
    }

    /// The value as a `PostgresValue` by its column type (bool, int2/4/8, oid, float4/8,
    /// bytea, the textual types); other types throw with the cast to add.
    public func value(_ row: Int, _ column: Int) throws(OrchestraError) -> PostgresValue {
        if try isNull(row, column) { return .null }
        let type = PQftype(handle, Int32(column))
        switch type {
        case PostgresType.bool: return .bool(try bool(row, column)!)
        case PostgresType.int2, PostgresType.int4, PostgresType.int8, PostgresType.oid:
            return .int64(try int64(row, column)!)
        case PostgresType.float4, PostgresType.float8: return .double(try double(row, column)!)
        case PostgresType.bytea: return .bytea(try bytes(row, column)!)
        default: return .text(try text(row, column)!)
        }
    }

    // MARK: Internals

    private func raw(_ row: Int, _ column: Int) throws(OrchestraError) -> UnsafeRawBufferPointer? {
        try check(row, column)
        let r = Int32(row), c = Int32(column)
        if PQgetisnull(handle, r, c) != 0 { return nil }
        let n = Int(PQgetlength(handle, r, c))
        guard let p = PQgetvalue(handle, r, c) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: n)
    }

    private func check(_ row: Int, _ column: Int, rows: Bool = true) throws(OrchestraError) {
        guard column >= 0 && column < columnCount else {
            throw OrchestraError(.invalidArgument, "column \(column) is out of range (the result has \(columnCount))")
        }
        guard !rows || (row >= 0 && row < rowCount) else {
            throw OrchestraError(.invalidArgument, "row \(row) is out of range (the result has \(rowCount))")
        }
    }

    private func mismatch(_ row: Int, _ column: Int, wanted: String, cast: String) -> OrchestraError {
        let name = String(cString: PQfname(handle, Int32(column)))
        let type = PQftype(handle, Int32(column))
        return OrchestraError(.invalidArgument,
                              "column \(column) \"\(name)\" (type OID \(type), \(PQgetlength(handle, Int32(row), Int32(column))) bytes) cannot be read as \(wanted): cast it in the statement (\(cast))")
    }

    private func bigEndian(_ b: UnsafeRawBufferPointer) -> UInt64 {
        var v: UInt64 = 0
        for byte in b { v = v << 8 | UInt64(byte) }
        return v
    }
}

/// A NOTIFY received on a channel this connection listens on.
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    /// The server process that sent it.
    public let senderPID: Int32
}
