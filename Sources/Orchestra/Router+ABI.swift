// C ABI of the subject router (header section ROUTER): handle and pointer conversion only.
import OrchestraCore
import COrchestra

@inline(__always)
private func msgPointer(_ m: Message) -> OpaquePointer {
    OpaquePointer(Unmanaged.passUnretained(m).toOpaque())
}

/// The release hook for a registration's user_data (nil when there is no free function).
private func releaser(_ free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?, _ userData: UnsafeMutableRawPointer?) -> (() -> Void)? {
    guard let free else { return nil }
    return { free(userData) }
}

@_cdecl("orc_router_new")
public func orc_router_new(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = retainedHandle(Router())
    }
}

@_cdecl("orc_router_free")
public func orc_router_free(_ r: OpaquePointer?) {
    guard let r else { return }
    (unmanaged(r) as Unmanaged<Router>).release()
}

@_cdecl("orc_router_subscribe")
public func orc_router_subscribe(
    _ r: OpaquePointer?, _ pattern: UnsafePointer<CChar>?, _ patternLen: Int,
    _ cb: orc_handler_cb?, _ userData: UnsafeMutableRawPointer?,
    _ userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
    _ subscriptionID: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        let bytes = try cBytes(pattern, patternLen, "pattern")
        let cb = try required(cb, "cb")
        let out = try required(subscriptionID, "subscription_id")
        out.pointee = try router.subscribe(bytes, onRelease: releaser(userDataFree, userData)) { m throws(OrchestraError) in
            let rc = cb(userData, msgPointer(m))
            if rc != 0 { throw OrchestraError(.failed, "handler returned \(rc)") }
        }
    }
}

@_cdecl("orc_router_unsubscribe")
public func orc_router_unsubscribe(_ r: OpaquePointer?, _ id: UInt64) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        if !router.unsubscribe(id) {
            throw OrchestraError(.notFound, "no subscription with id \(id)")
        }
    }
}

@_cdecl("orc_router_use")
public func orc_router_use(
    _ r: OpaquePointer?, _ cb: orc_middleware_cb?, _ userData: UnsafeMutableRawPointer?,
    _ userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        let cb = try required(cb, "cb")
        router.use(onRelease: releaser(userDataFree, userData)) { m throws(OrchestraError) in
            var replacement: OpaquePointer? = nil
            let rc = cb(userData, msgPointer(m), &replacement)
            if let replacement {
                m = (unmanaged(replacement) as Unmanaged<Message>).takeRetainedValue()
            }
            switch rc {
            case Int32(ORC_ROUTE_CONTINUE.rawValue): return .continue
            case Int32(ORC_ROUTE_STOP.rawValue): return .stop
            default: throw OrchestraError(.failed, "middleware returned \(rc)")
            }
        }
    }
}

@_cdecl("orc_router_on_unhandled")
public func orc_router_on_unhandled(
    _ r: OpaquePointer?, _ cb: orc_unhandled_cb?, _ userData: UnsafeMutableRawPointer?,
    _ userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        guard let cb else {
            router.onUnhandled(nil)
            return
        }
        router.onUnhandled(onRelease: releaser(userDataFree, userData)) { m in cb(userData, msgPointer(m)) }
    }
}

@_cdecl("orc_router_publish")
public func orc_router_publish(
    _ r: OpaquePointer?, _ msg: OpaquePointer?, _ result: UnsafeMutablePointer<orc_publish_result_t>?
) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        let message = try handle(msg, Message.self, "msg")
        if let result { _ = try callerSized(result, "result", "orc_publish_result_t") }
        let res = try router.publish(message)
        if let result {
            result.pointee = orc_publish_result_t(
                struct_size: MemoryLayout<orc_publish_result_t>.size,
                matched: UInt32(clamping: res.matched), failed: UInt32(clamping: res.failed),
                stopped: res.stopped ? 1 : 0, middleware_failed: res.middlewareFailed ? 1 : 0,
                unhandled: res.unhandled ? 1 : 0)
        }
    }
}

@_cdecl("orc_router_stats")
public func orc_router_stats(_ r: OpaquePointer?, _ out: UnsafeMutablePointer<orc_router_stats_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let router = try handle(r, Router.self, "router")
        let out = try required(out, "out")
        _ = try callerSized(out, "out", "orc_router_stats_t")
        let s = router.stats
        out.pointee = orc_router_stats_t(
            struct_size: MemoryLayout<orc_router_stats_t>.size, published: s.published, delivered: s.delivered,
            handler_failures: s.handlerFailures, middleware_stops: s.middlewareStops,
            middleware_failures: s.middlewareFailures, unhandled: s.unhandled,
            subscriptions: s.subscriptions)
    }
}

@_cdecl("orc_subject_validate")
public func orc_subject_validate(_ subject: UnsafePointer<CChar>?, _ len: Int, _ isPattern: Int32) -> Int32 {
    abiCall { () throws(OrchestraError) in
        try Subject.validate(try cBytes(subject, len, "subject"), isPattern: isPattern != 0)
    }
}

@_cdecl("orc_subject_matches")
public func orc_subject_matches(
    _ pattern: UnsafePointer<CChar>?, _ patternLen: Int, _ subject: UnsafePointer<CChar>?, _ subjectLen: Int
) -> Int32 {
    var matched = false
    let rc = abiCall { () throws(OrchestraError) in
        let p = try cBytes(pattern, patternLen, "pattern")
        let s = try cBytes(subject, subjectLen, "subject")
        matched = try Subject.matches(pattern: p, subject: s)
    }
    return rc != orcOK ? rc : (matched ? 1 : 0)
}
