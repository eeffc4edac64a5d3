// C ABI of the message queue (include/orchestra.h, section QUEUE). Conversions only.
import Glibc
import OrchestraCore
import COrchestra

/// Runs `body` with the queue behind `q` without retaining it (the caller's handle keeps it
/// alive for the call; avoids refcount traffic shared by producer and consumer threads).
@inline(__always)
private func withQueue(_ q: OpaquePointer?, _ body: (MessageQueue) throws(OrchestraError) -> Void) -> Int32 {
    guard let q else { return fail(.invalidArgument, "q is NULL") }
    let err: OrchestraError? = Unmanaged<MessageQueue>.fromOpaque(UnsafeRawPointer(q))._withUnsafeGuaranteedRef { (queue) -> OrchestraError? in
        do throws(OrchestraError) {
            try body(queue)
            return nil
        } catch {
            return error
        }
    }
    if let err { return fail(err) }
    return orcOK
}

@inline(__always)
private func msgRef(_ p: OpaquePointer) -> Unmanaged<Message> {
    Unmanaged<Message>.fromOpaque(UnsafeRawPointer(p))
}

@_cdecl("orc_queue_options_init_sized")
public func orc_queue_options_init_sized(_ opts: UnsafeMutablePointer<orc_queue_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let o = try structToInit(opts, structSize, "orc_queue_options_t")
        let d = QueueOptions()
        o.pointee.capacity = d.capacity
        o.pointee.policy = orc_queue_policy_t(rawValue: numericCast(d.policy.rawValue))
        o.pointee.push_timeout_ms = d.pushTimeoutMs
        o.pointee.spin_us = Int32(d.spinMicroseconds)
    }
}

@_cdecl("orc_queue_new")
public func orc_queue_new(_ opts: UnsafePointer<orc_queue_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        var options = QueueOptions()
        if let p = opts {
            let o = try initialisedOptions(p, "orc_queue_options_t")
            let capacity = try cSize(o.capacity, "capacity")
            guard let policy = QueuePolicy(rawValue: Int32(truncatingIfNeeded: o.policy.rawValue)), o.policy.rawValue <= 3 else {
                throw OrchestraError(.invalidArgument, "policy \(o.policy.rawValue) is not an orc_queue_policy_t value (0...3)")
            }
            options.capacity = capacity
            options.policy = policy
            options.pushTimeoutMs = o.push_timeout_ms
            options.spinMicroseconds = Int(o.spin_us)
            if let name = try optionalText(o.name, "queue name") { options.name = name }
        }
        out.pointee = retainedHandle(try MessageQueue(options))
    }
}

@_cdecl("orc_queue_free")
public func orc_queue_free(_ q: OpaquePointer?) {
    guard let q else { return }
    Unmanaged<MessageQueue>.fromOpaque(UnsafeRawPointer(q)).release()
}

@_cdecl("orc_queue_push")
public func orc_queue_push(_ q: OpaquePointer?, _ msg: OpaquePointer?) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        let m = try required(msg, "msg")
        try queue.push(unmanaged: msgRef(m))
    }
}

@_cdecl("orc_queue_push_batch")
public func orc_queue_push_batch(_ q: OpaquePointer?, _ msgs: UnsafePointer<OpaquePointer?>?, _ n: Int,
                                 _ accepted: UnsafeMutablePointer<Int>?) -> Int32 {
    accepted?.pointee = 0
    return withQueue(q) { (queue) throws(OrchestraError) in
        if try cSize(n, "n") == 0 { return }
        let base = try required(msgs, "msgs")
        let r = queue.pushBatch(count: n) { i in base[i].map(msgRef) }
        accepted?.pointee = r.accepted
        if let e = r.error { throw e }
    }
}

@_cdecl("orc_queue_pop")
public func orc_queue_pop(_ q: OpaquePointer?, _ timeoutMs: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        out.pointee = OpaquePointer(try queue.popUnmanaged(timeoutMs: timeoutMs).toOpaque())
    }
}

@_cdecl("orc_queue_pop_batch")
public func orc_queue_pop_batch(_ q: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?, _ max: Int,
                                _ timeoutMs: Int64, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    count?.pointee = 0
    return withQueue(q) { (queue) throws(OrchestraError) in
        let count = try required(count, "count")
        let out = try required(out, "out")
        guard max > 0 else {
            throw OrchestraError(.invalidArgument, max == 0 ? "max is 0" : "max \(UInt(bitPattern: max)) is too large")
        }
        count.pointee = try queue.popBatch(max: max, timeoutMs: timeoutMs) { i, m in
            out[i] = OpaquePointer(m.toOpaque())
        }
    }
}

@_cdecl("orc_queue_pop_payloads")
public func orc_queue_pop_payloads(_ q: OpaquePointer?, _ timeoutMs: Int64, _ buf: UnsafeMutableRawPointer?, _ cap: Int,
                                   _ lens: UnsafeMutablePointer<Int>?, _ types: UnsafeMutablePointer<orc_content_type_t>?,
                                   _ max: Int, _ count: UnsafeMutablePointer<Int>?,
                                   _ overflow: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    count?.pointee = 0
    overflow?.pointee = nil
    return withQueue(q) { (queue) throws(OrchestraError) in
        let count = try required(count, "count"), overflow = try required(overflow, "overflow")
        let lens = try required(lens, "lens"), types = try required(types, "types")
        guard max > 0 else {
            throw OrchestraError(.invalidArgument, max == 0 ? "max is 0" : "max \(UInt(bitPattern: max)) is too large")
        }
        let cap = try cSize(cap, "cap")
        guard buf != nil || cap == 0 else { throw OrchestraError(.invalidArgument, "buf is NULL and cap is \(cap)") }
        let dst = UnsafeMutableRawBufferPointer(start: buf, count: cap)
        let (n, over) = try queue.popPayloads(into: dst, max: max, timeoutMs: timeoutMs) { i, len, ct in
            lens[i] = len
            types[i] = orc_content_type_t(rawValue: UInt32(ct.rawValue))
        }
        if let over { overflow.pointee = retainedHandle(over) }
        count.pointee = n
    }
}

@_cdecl("orc_queue_close")
public func orc_queue_close(_ q: OpaquePointer?) -> Int32 {
    withQueue(q) { queue in queue.close() }
}

@_cdecl("orc_queue_fail")
public func orc_queue_fail(_ q: OpaquePointer?, _ code: Int32, _ message: UnsafePointer<CChar>?, _ len: Int) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        queue.fail(code: code, message: try utf8String(try cBytes(message, len, "message"), "message"))
    }
}

@_cdecl("orc_queue_fd")
public func orc_queue_fd(_ q: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        let fd = try required(fd, "fd")
        fd.pointee = try queue.readinessFD()
    }
}

@_cdecl("orc_queue_depth")
public func orc_queue_depth(_ q: OpaquePointer?) -> Int {
    guard let q else { return 0 }
    return Unmanaged<MessageQueue>.fromOpaque(UnsafeRawPointer(q))._withUnsafeGuaranteedRef { $0.depth }
}

@_cdecl("orc_queue_waiting_readers")
public func orc_queue_waiting_readers(_ q: OpaquePointer?) -> Int {
    guard let q else { return 0 }
    return Unmanaged<MessageQueue>.fromOpaque(UnsafeRawPointer(q))._withUnsafeGuaranteedRef { $0.waitingReaders }
}

/// Holds a C drop callback and its user_data; user_data_free runs when the last reference
/// (the queue's handler, or a call in progress) goes away.
private final class DropCallback: @unchecked Sendable {
    let cb: orc_drop_cb
    let userData: UnsafeMutableRawPointer?
    let userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?

    init(_ cb: orc_drop_cb, _ userData: UnsafeMutableRawPointer?, _ free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) {
        self.cb = cb
        self.userData = userData
        self.userDataFree = free
    }

    deinit { userDataFree?(userData) }
}

@_cdecl("orc_queue_set_drop_callback")
public func orc_queue_set_drop_callback(_ q: OpaquePointer?, _ cb: orc_drop_cb?, _ userData: UnsafeMutableRawPointer?,
                                        _ userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        guard let cb else {
            if userDataFree != nil {
                throw OrchestraError(.invalidArgument, "cb is NULL but user_data_free is set")
            }
            queue.setDropHandler(nil)
            return
        }
        let box = DropCallback(cb, userData, userDataFree)
        queue.setDropHandler { m, reason in
            box.cb(box.userData, OpaquePointer(Unmanaged.passUnretained(m).toOpaque()),
                   orc_drop_reason_t(rawValue: numericCast(reason.rawValue)))
        }
    }
}

@_cdecl("orc_queue_stats")
public func orc_queue_stats(_ q: OpaquePointer?, _ out: UnsafeMutablePointer<orc_queue_stats_t>?) -> Int32 {
    withQueue(q) { (queue) throws(OrchestraError) in
        let out = try required(out, "out")
        let size = try callerSized(out, "out", "orc_queue_stats_t")
        let s = queue.stats
        out.pointee = orc_queue_stats_t(
            struct_size: size, pushed: s.pushed, popped: s.popped, handed_off: s.handedOff,
            dropped_overflow: s.droppedOverflow, expired: s.expired, rejected: s.rejected,
            blocked_pushes: s.blockedPushes, depth: s.depth, depth_high_water: s.depthHighWater,
            wait_p50_ns: s.waitP50Ns, wait_p95_ns: s.waitP95Ns, wait_p99_ns: s.waitP99Ns,
            wait_max_ns: s.waitMaxNs, wait_count: s.waitCount)
    }
}
