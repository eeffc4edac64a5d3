/// The journal's tables on PostgreSQL: the same facts as the SQLite journal (Journal.swift,
/// its schema versions), typed for PostgreSQL (`bigint` times, `boolean` flags, `bytea` blobs), and
/// its version in `orchestra_meta`. Versions number like SQLite's: a PostgreSQL journal starts
/// at version 2 (version 1 never existed there).
enum PostgresSchema {
    /// Each step takes the schema from `from` to the next step's `from` (the last one to
    /// `version`); `from` 0: an empty database gets the whole schema of version 2 first.
    static let steps: [(from: Int64, sql: [String])] = [
        (0, version2),
        (2, version3),
        (3, version4),
    ]

    static var version: Int64 { Journal.schemaVersion }

    /// Serializes migrations of hubs and commands that start together (pg_advisory_xact_lock).
    static let migrationLock: Int64 = 0x6F72_6368_6573_7472   // "orchestr"

    /// Several hubs (Journal.schemaV3 says what each column is for).
    static let version3 = [
        "ALTER TABLE tasks ADD COLUMN hub_id text",
        "ALTER TABLE tasks ADD COLUMN submit_hub text",
        "ALTER TABLE session_events ADD COLUMN hub_id text",
        "CREATE INDEX tasks_queued ON tasks (priority DESC, created_ms) WHERE state = 'queued'",
        "CREATE INDEX tasks_by_hub ON tasks (hub_id) WHERE state = 'assigned'",
        "CREATE INDEX session_events_by_time ON session_events (at_ms)",
        """
        CREATE TABLE hubs (
            id text PRIMARY KEY,
            started_ms bigint NOT NULL,
            heartbeat_ms bigint NOT NULL,
            stopped boolean NOT NULL DEFAULT false,
            inbox_head bigint NOT NULL DEFAULT 0,
            info text NOT NULL DEFAULT '{}'
        )
        """,
        """
        CREATE TABLE hub_inbox (
            hub_id text NOT NULL,
            seq bigint NOT NULL,
            at_ms bigint NOT NULL,
            body bytea NOT NULL,
            PRIMARY KEY (hub_id, seq)
        )
        """,
        """
        CREATE TABLE agent_presence (
            agent_id text PRIMARY KEY,
            hub_id text NOT NULL,
            online boolean NOT NULL,
            info text NOT NULL,
            updated_ms bigint NOT NULL
        )
        """,
    ]

    static let version2 = [
        """
        CREATE TABLE IF NOT EXISTS orchestra_meta (
            key text PRIMARY KEY,
            value text NOT NULL
        )
        """,
        """
        CREATE TABLE tasks (
            id text PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('queued','assigned','running','succeeded','failed')),
            spec text NOT NULL,
            session_id text,
            submitter text,
            trace_id text NOT NULL,
            priority integer NOT NULL CHECK (priority BETWEEN 0 AND 3),
            strategy text,
            pinned_agent text,
            attempt integer NOT NULL CHECK (attempt >= 0),
            max_attempts integer NOT NULL CHECK (max_attempts >= 0),
            agent_id text,
            rejected_by text NOT NULL,
            result text,
            error text,
            error_code text,
            dead boolean NOT NULL,
            created_ms bigint NOT NULL,
            updated_ms bigint NOT NULL
        )
        """,
        "CREATE INDEX tasks_by_state ON tasks (state, updated_ms)",
        "CREATE INDEX tasks_dead ON tasks (updated_ms) WHERE dead",
        "CREATE INDEX tasks_by_session ON tasks (session_id) WHERE session_id IS NOT NULL",
        """
        CREATE TABLE agent_keys (
            id text PRIMARY KEY,
            secret bytea NOT NULL,
            created_ms bigint NOT NULL,
            disabled boolean NOT NULL DEFAULT false,
            agents text
        )
        """,
        """
        CREATE TABLE agent_bindings (
            agent_id text PRIMARY KEY,
            key_id text NOT NULL,
            created_ms bigint NOT NULL
        )
        """,
        """
        CREATE TABLE users (
            name text PRIMARY KEY,
            password_hash text NOT NULL,
            role text NOT NULL,
            created_ms bigint NOT NULL,
            disabled boolean NOT NULL DEFAULT false,
            token_generation bigint NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE nonces (
            key_id text NOT NULL,
            nonce text NOT NULL,
            timestamp_ms bigint NOT NULL,
            expires_ms bigint NOT NULL,
            PRIMARY KEY (key_id, nonce)
        )
        """,
        "CREATE INDEX nonces_by_expiry ON nonces (expires_ms)",
        """
        CREATE TABLE settings (
            key text PRIMARY KEY,
            value text NOT NULL
        )
        """,
        """
        CREATE TABLE sessions (
            id text PRIMARY KEY,
            owner text NOT NULL,
            head bigint NOT NULL CHECK (head >= 0),
            created_ms bigint NOT NULL,
            updated_ms bigint NOT NULL
        )
        """,
        """
        CREATE TABLE session_shares (
            session_id text NOT NULL,
            user_name text NOT NULL,
            PRIMARY KEY (session_id, user_name)
        )
        """,
        """
        CREATE TABLE session_events (
            session_id text NOT NULL,
            event_offset bigint NOT NULL,
            at_ms bigint NOT NULL,
            kind smallint NOT NULL CHECK (kind IN (0, 1)),
            frame bytea NOT NULL,
            PRIMARY KEY (session_id, event_offset)
        )
        """,
    ]
}
