// Popping a batch of messages as their payloads packed back to back into one buffer: one call
// instead of three per message for bindings that read many small messages (ctypes).

extension MessageQueue {
    /// Pops up to `max` messages, waiting (per `timeoutMs`, as `popBatch`) only for the first,
    /// and copies their payloads back to back into `buffer`, in order; `record(i, length,
    /// contentType)` is told about each copied message (length 0 for one without payload),
    /// which is then released. The first message whose payload does not fit in what is left of
    /// `buffer` ends the batch: it is returned as `overflow` (popped, not copied; the caller
    /// owns it), after the copied ones, so `count` may be 0. A queue that turns empty, closed or
    /// failed after some messages ends the batch with those; before any, its error is thrown.
    public func popPayloads(into buffer: UnsafeMutableRawBufferPointer, max: Int, timeoutMs: Int64,
                            _ record: (_ index: Int, _ length: Int, _ contentType: ContentType) -> Void)
        throws(OrchestraError) -> (count: Int, overflow: Message?) {
        guard max > 0 else { throw OrchestraError(.invalidArgument, "pop batch size must be at least 1") }
        var used = 0
        var n = 0
        while n < max {
            let m: Unmanaged<Message>
            do throws(OrchestraError) {
                m = try popUnmanaged(timeoutMs: n == 0 ? timeoutMs : 0)
            } catch {
                if n == 0 { throw error }
                break   // empty (or closed, failed) after some: those are the batch
            }
            let msg = m.takeRetainedValue()
            let payload = msg.payload
            let len = payload?.count ?? 0
            if len > buffer.count - used { return (n, msg) }
            if let payload, len > 0, let base = buffer.baseAddress {
                payload.withUnsafeBytes { (base + used).copyMemory(from: $0.baseAddress!, byteCount: len) }
            }
            record(n, len, msg.contentType)
            used += len
            n += 1
        }
        return (n, nil)
    }
}
