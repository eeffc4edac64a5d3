// C ABI of the runtime (header section RUNTIME): handle and pointer conversion only.
import COrchestra
import Glibc
import OrchestraCore
import OrchestraNet

@_cdecl("orc_runtime_options_init_sized")
public func orc_runtime_options_init_sized(_ opts: UnsafeMutablePointer<orc_runtime_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        _ = try structToInit(opts, structSize, "orc_runtime_options_t")
    }
}

@_cdecl("orc_runtime_new")
public func orc_runtime_new(_ opts: UnsafePointer<orc_runtime_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        var name = "orchestra-io"
        var embedded = false
        if let p = opts {
            let o = try initialisedOptions(p, "orc_runtime_options_t")
            if let n = try optionalText(o.name, "runtime name") { name = n }
            guard o.embedded == 0 || o.embedded == 1 else {
                throw OrchestraError(.invalidArgument, "embedded must be 0 or 1, not \(o.embedded)")
            }
            embedded = o.embedded == 1
        }
        out.pointee = retainedHandle(try Runtime(name: name, embedded: embedded))
    }
}

@_cdecl("orc_runtime_free")
public func orc_runtime_free(_ rt: OpaquePointer?) {
    guard let rt else { return }
    let r = unmanaged(rt) as Unmanaged<Runtime>
    r._withUnsafeGuaranteedRef { $0.shutdown() }
    r.release()
}

/// A C function pointer and its argument, run on the I/O thread.
private struct CCall: @unchecked Sendable {
    let fn: orc_runtime_fn
    let userData: UnsafeMutableRawPointer?
    func callAsFunction() { fn(userData) }
}

@_cdecl("orc_runtime_post")
public func orc_runtime_post(_ rt: OpaquePointer?, _ fn: orc_runtime_fn?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let runtime = try handle(rt, Runtime.self, "rt")
        let call = CCall(fn: try required(fn, "fn"), userData: userData)
        try runtime.post { call() }
    }
}

@_cdecl("orc_runtime_timer_start")
public func orc_runtime_timer_start(
    _ rt: OpaquePointer?, _ delayMs: UInt64, _ repeatMs: UInt64, _ fn: orc_runtime_fn?,
    _ userData: UnsafeMutableRawPointer?, _ userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
    _ timerID: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let runtime = try handle(rt, Runtime.self, "rt")
        let call = CCall(fn: try required(fn, "fn"), userData: userData)
        let out = try required(timerID, "timer_id")
        let free = userDataFree
        out.pointee = try runtime.startTimer(delayMs: delayMs, repeatMs: repeatMs, fire: { call() },
                                             release: { free?(userData) })
    }
}

@_cdecl("orc_runtime_timer_stop")
public func orc_runtime_timer_stop(_ rt: OpaquePointer?, _ timerID: UInt64) -> Int32 {
    abiCall { () throws(OrchestraError) in
        try handle(rt, Runtime.self, "rt").stopTimer(timerID)
    }
}

@_cdecl("orc_runtime_is_io_thread")
public func orc_runtime_is_io_thread(_ rt: OpaquePointer?) -> Int32 {
    guard let rt else { return 0 }
    return (unmanaged(rt) as Unmanaged<Runtime>)._withUnsafeGuaranteedRef { $0.isIOThread } ? 1 : 0
}

@_cdecl("orc_runtime_fd")
public func orc_runtime_fd(_ rt: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(fd, "fd")
        out.pointee = try handle(rt, Runtime.self, "rt").backendFD()
    }
}

@_cdecl("orc_runtime_run_once")
public func orc_runtime_run_once(_ rt: OpaquePointer?, _ timeoutMs: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let runtime = try handle(rt, Runtime.self, "rt")
        let t = try runtime.runOnce()
        timeoutMs?.pointee = t
    }
}
