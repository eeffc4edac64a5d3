import OrchestraCore

/// Log calls with their fields written as a dictionary literal (`["taskId": .string(id)]`);
/// the members keep the literal's order.
extension Logger {
    public func debug(_ event: String, _ fields: JSONValue) { log(.debug, event, fields.object ?? []) }
    public func info(_ event: String, _ fields: JSONValue) { log(.info, event, fields.object ?? []) }
    public func warn(_ event: String, _ fields: JSONValue) { log(.warn, event, fields.object ?? []) }
    public func error(_ event: String, _ fields: JSONValue) { log(.error, event, fields.object ?? []) }
}
