// C ABI of the metrics registry (include/orchestra.h, section METRICS). Conversions only.
import Glibc
import OrchestraCore
import COrchestra

/// A metric name from C bytes (the registry checks the grammar).
private func metricName(_ p: UnsafePointer<CChar>?, _ len: Int) throws(OrchestraError) -> String {
    let bytes = try cBytes(p, len, "name")
    return String(decoding: bytes, as: UTF8.self)
}

@_cdecl("orc_metrics_new")
public func orc_metrics_new(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = retainedHandle(MetricsRegistry())
    }
}

@_cdecl("orc_metrics_free")
public func orc_metrics_free(_ m: OpaquePointer?) {
    guard let m else { return }
    Unmanaged<MetricsRegistry>.fromOpaque(UnsafeRawPointer(m)).release()
}

@_cdecl("orc_metrics_counter_add")
public func orc_metrics_counter_add(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int, _ delta: UInt64) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let r = try handle(m, MetricsRegistry.self, "m")
        try r.counter(try metricName(name, len)).add(delta)
    }
}

@_cdecl("orc_metrics_gauge_set")
public func orc_metrics_gauge_set(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int, _ value: Double) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let r = try handle(m, MetricsRegistry.self, "m")
        try r.gauge(try metricName(name, len)).set(value)
    }
}

@_cdecl("orc_metrics_histogram_record")
public func orc_metrics_histogram_record(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int, _ value: UInt64) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let r = try handle(m, MetricsRegistry.self, "m")
        try r.histogram(try metricName(name, len)).record(value)
    }
}

@_cdecl("orc_metrics_register_queue")
public func orc_metrics_register_queue(_ m: OpaquePointer?, _ q: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let r = try handle(m, MetricsRegistry.self, "m")
        let queue = try handle(q, MessageQueue.self, "q")
        queue.register(in: r, name: try utf8String(try cBytes(name, len, "name"), "queue name"))
    }
}

@_cdecl("orc_metrics_render")
public func orc_metrics_render(_ m: OpaquePointer?, _ format: orc_metrics_format_t, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                               _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let r = try handle(m, MetricsRegistry.self, "m")
        let out = try required(out, "out")
        let outLen = try required(outLen, "out_len")
        out.pointee = nil
        outLen.pointee = 0
        let bytes: [UInt8]
        switch format {
        case ORC_METRICS_PROMETHEUS: bytes = r.renderPrometheus()
        case ORC_METRICS_JSON: bytes = r.renderJSON()
        default: throw OrchestraError(.invalidArgument, "format \(format.rawValue) is not an orc_metrics_format_t value")
        }
        guard let p = bytes.withUnsafeBytes({ mallocCopy($0) }) else {
            throw OrchestraError(.noMemory, "cannot allocate \(bytes.count) bytes for the metrics snapshot")
        }
        out.pointee = p
        outLen.pointee = bytes.count
    }
}

@_cdecl("orc_metrics_register_router")
public func orc_metrics_register_router(_ m: OpaquePointer?, _ r: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let registry = try handle(m, MetricsRegistry.self, "m")
        let router = try handle(r, Router.self, "r")
        router.register(in: registry, name: try utf8String(try cBytes(name, len, "name"), "router name"))
    }
}

@_cdecl("orc_metrics_unregister_queue")
public func orc_metrics_unregister_queue(_ m: OpaquePointer?, _ q: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let registry = try handle(m, MetricsRegistry.self, "m")
        let queue = try handle(q, MessageQueue.self, "q")
        if queue.unregister(from: registry) == 0 {
            throw OrchestraError(.notFound, "the queue is not registered in this metrics registry")
        }
    }
}

@_cdecl("orc_metrics_unregister_router")
public func orc_metrics_unregister_router(_ m: OpaquePointer?, _ r: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let registry = try handle(m, MetricsRegistry.self, "m")
        let router = try handle(r, Router.self, "r")
        if router.unregister(from: registry) == 0 {
            throw OrchestraError(.notFound, "the router is not registered in this metrics registry")
        }
    }
}

@_cdecl("orc_metrics_set_help")
public func orc_metrics_set_help(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ nameLen: Int,
                                 _ help: UnsafePointer<CChar>?, _ helpLen: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let registry = try handle(m, MetricsRegistry.self, "m")
        let n = try metricName(name, nameLen)
        try registry.setHelp(n, try utf8String(try cBytes(help, helpLen, "help"), "help"))
    }
}
