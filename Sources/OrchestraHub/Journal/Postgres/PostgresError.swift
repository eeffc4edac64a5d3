import OrchestraCore

/// Why a statement, a transaction or a connection attempt failed. `error` is the
/// `OrchestraError` for callers that only pass errors on; `kind` and `sqlstate` are for callers
/// that decide what to do (retry a serialization failure 40001, report a unique violation
/// 23505, answer DB_001 while the database is away).
public struct PostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The server refused the statement: `sqlstate` says why.
        case server
        /// Not committed because another statement of its transaction failed (the statements
        /// after it did not run; the ones before it were rolled back).
        case aborted
        /// The connection broke with the statement sent or queued; whether a statement that
        /// was sent committed is unknown.
        case connectionLost
        /// The client is not connected (never connected, lost and not reconnected).
        case notConnected
        /// The client (or its runtime) was closed first.
        case closed
        /// A connection attempt failed (refused, authentication, unknown database...).
        case connectFailed
        /// A connection attempt took longer than `connectTimeoutMs`.
        case timedOut
        /// The call itself was wrong (a NUL in the text, too many parameters, a bad channel).
        case invalidArgument
    }

    public let kind: Kind
    /// The five-character SQLSTATE the server sent (`.server`, and `.connectionLost` when the
    /// server said why it closed, e.g. 57P01 for pg_terminate_backend).
    public let sqlstate: String?
    /// What happened and where, naming the statement.
    public let message: String

    public init(_ kind: Kind, _ message: String, sqlstate: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlstate = sqlstate
    }

    public var code: ErrorCode {
        switch kind {
        case .server, .aborted: return .failed
        case .connectionLost, .connectFailed: return .io
        case .notConnected, .closed: return .closed
        case .timedOut: return .timedOut
        case .invalidArgument: return .invalidArgument
        }
    }

    public var error: OrchestraError { OrchestraError(code, message) }
    public var description: String { error.description }
}
