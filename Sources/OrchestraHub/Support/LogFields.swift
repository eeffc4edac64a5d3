import OrchestraCore

/// Log calls with their fields written as a dictionary literal (`["taskId": .string(id)]`);
/// the members keep the literal's order. The fields are built only when the level is enabled
/// (the hub logs debug events per task on its hot path).
extension Logger {
    public func debug(_ event: String, _ fields: @autoclosure () -> JSONValue) { emit(.debug, event, fields) }
    public func info(_ event: String, _ fields: @autoclosure () -> JSONValue) { emit(.info, event, fields) }
    public func warn(_ event: String, _ fields: @autoclosure () -> JSONValue) { emit(.warn, event, fields) }
    public func error(_ event: String, _ fields: @autoclosure () -> JSONValue) { emit(.error, event, fields) }

    private func emit(_ level: LogLevel, _ event: String, _ fields: () -> JSONValue) {
        guard isEnabled(level) else { return }
        log(level, event, fields().object ?? [])
    }
}
