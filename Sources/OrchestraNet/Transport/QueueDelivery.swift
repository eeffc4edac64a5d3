import OrchestraCore

/// Delivers a server's or client's traffic into an h2A queue (include/orchestra.h, section
/// WEBSOCKET, the second way of receiving):
/// each text or binary message becomes a `Message` of type `ws.message` whose payload holds
/// the bytes (content type text or binary) and whose `connectionId` says where it came from.
/// With `events`, the connection's life goes into the queue too: `ws.open` and `ws.close`
/// (payload `{"code":N,"reason":"...","clean":true|false}`) and `ws.drain`.
///
/// Nothing is lost when the queue is full: the message waits, the connection stops reading
/// (TCP flow control then slows the peer), and the push is retried every millisecond until
/// the consumer makes room. A closed or failed queue closes the connection with 1011.
///
/// Forwarding `next` keeps the user's callbacks: both ways may be used at once.
public final class QueueDelivery: ServerHandler, ClientHandler, @unchecked Sendable {
    public let queue: MessageQueue
    public let events: Bool
    let next: WebSocketHandler?
    // I/O thread only.
    var waiting: [(Connection?, Message)] = []
    var retryArmed = false

    public init(queue: MessageQueue, events: Bool, forwardingTo next: WebSocketHandler? = nil) {
        self.queue = queue
        self.events = events
        self.next = next
    }

    static let messageType = Array("ws.message".utf8)

    func make(_ type: String, _ c: Connection) -> Message {
        let m = Message(type: type)
        m.connectionId = c.id
        return m
    }

    public func didOpen(_ c: Connection) {
        if events { deliver(make("ws.open", c), c) }
        next?.didOpen(c)
    }

    public func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        let m = Message(type: QueueDelivery.messageType, timestamp: wallClockMillis())
        m.connectionId = c.id
        m.payload = Array(bytes)
        m.contentType = opcode == .text ? .text : .binary
        deliver(m, c)
        next?.didReceive(c, opcode: opcode, bytes: bytes)
    }

    public func didDrain(_ c: Connection) {
        if events { deliver(make("ws.drain", c), c) }
        next?.didDrain(c)
    }

    public func didReceivePong(_ c: Connection, rttMicros: UInt64) {
        next?.didReceivePong(c, rttMicros: rttMicros)
    }

    public func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {
        if events {
            let m = make("ws.close", c)
            var json = Array("{\"code\":\(code),\"reason\":".utf8)
            // The reason came through the UTF-8 check of the decoder (or is ours).
            try? JSONWriter.writeString(Array(reason.utf8), into: &json, what: "close reason")
            json += Array(",\"clean\":\(clean)}".utf8)
            m.payload = json
            m.contentType = .json
            // The connection is gone: no reading to hold. Keep it in order behind what waits.
            deliver(m, nil)
        }
        next?.didClose(c, code: code, reason: reason, clean: clean)
    }

    public func stateChanged(_ client: Client, _ state: ClientState, reason: String) {
        (next as? ClientHandler)?.stateChanged(client, state, reason: reason)
    }

    public func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse? {
        (next as? ServerHandler)?.shouldAccept(request)
    }

    public func handleHTTP(_ request: HTTPRequestInfo) -> HTTPResponse? {
        (next as? ServerHandler)?.handleHTTP(request)
    }

    /// Pushes in order behind anything waiting; holds the connection's reading when full.
    private func deliver(_ m: Message, _ c: Connection?) {
        if waiting.isEmpty {
            do {
                try queue.tryPush(m)
                return
            } catch where error.code == .full || error.code == .wouldBlock || error.code == .timedOut {
                // falls through to waiting
            } catch {
                if let c { closeForQueue(c, error) }
                return
            }
        }
        waiting.append((c, m))
        if let c { c.holdReading() }
        armRetry(on: c?.runtime)
    }

    private func closeForQueue(_ c: Connection, _ error: OrchestraError) {
        c.errors.add(1)
        try? c.close(code: 1011, reason: "delivery queue: \(error.code)")
    }

    private var retryRuntime: Runtime? = nil

    private func armRetry(on rt: Runtime?) {
        if let rt { retryRuntime = rt }
        guard !retryArmed, let rt = retryRuntime else { return }
        retryArmed = true
        do {
            _ = try rt.startTimer(delayMs: 1, repeatMs: 0, fire: { [self] in
                retryArmed = false
                retry()
            })
        } catch {
            retryArmed = false   // shutting down: connections are being closed
        }
    }

    private func retry() {
        while let (c, m) = waiting.first {
            do {
                try queue.tryPush(m)
            } catch where error.code == .full || error.code == .wouldBlock || error.code == .timedOut {
                armRetry(on: nil)
                return
            } catch {
                waiting.removeFirst()
                if let c { closeForQueue(c, error) }
                continue
            }
            waiting.removeFirst()
            // Resume a connection once none of its messages wait any more.
            if let c, !waiting.contains(where: { $0.0 === c }) { c.resumeReading() }
        }
    }
}
