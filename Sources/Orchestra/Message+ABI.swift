// C ABI for orc_msg_t (include/orchestra.h, section MESSAGE). Wrappers only: convert handles,
// pointers and errors, then call OrchestraCore. An orc_msg_t* is an Unmanaged<Message>.
import Glibc
import OrchestraCore
import COrchestra

@inline(__always)
func message(_ p: OpaquePointer?) throws(OrchestraError) -> Message {
    try handle(p, Message.self, "msg")
}

/// A pointer to the storage of `bytes`, which the message keeps unchanged (the array is the
/// stored one, shared copy-on-write, so its buffer outlives this call). Never NULL.
@inline(__always)
func storagePointer(_ bytes: [UInt8]) -> UnsafeRawPointer {
    bytes.withUnsafeBytes { $0.baseAddress } ?? UnsafeRawPointer(emptyCString)
}

/// The start of bytes the message keeps (`Message.textStorage`, `headerStorage`). Never NULL.
@inline(__always)
func storagePointer(_ bytes: UnsafeRawBufferPointer) -> UnsafePointer<CChar> {
    (bytes.baseAddress ?? UnsafeRawPointer(emptyCString)).assumingMemoryBound(to: CChar.self)
}

@inline(__always)
func textField(_ f: orc_field_t) throws(OrchestraError) -> TextField {
    guard let t = TextField(rawValue: Int32(truncatingIfNeeded: f.rawValue)), f.rawValue <= 6 else {
        throw OrchestraError(.invalidArgument, "unknown field \(f.rawValue)")
    }
    return t
}

/// (ptr, len) from C as an optional copy: (NULL, 0) is nil.
@inline(__always)
func optionalBytes(_ p: UnsafePointer<CChar>?, _ len: Int, _ what: StaticString) throws(OrchestraError) -> [UInt8]? {
    if p == nil && len == 0 { return nil }
    return Array(try cBytes(UnsafeRawPointer(p), len, what))
}

@_cdecl("orc_msg_new")
public func orc_msg_new(_ type: UnsafePointer<CChar>?, _ typeLen: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let t = Array(try cBytes(UnsafeRawPointer(type), typeLen, "type"))
        let m = Message(type: [0x2E], timestamp: wallClockMillis(), version: Array("1.0".utf8))
        try m.set(.type, t)
        out.pointee = retainedHandle(m)
    }
}

@_cdecl("orc_msg_retain")
public func orc_msg_retain(_ msg: OpaquePointer?) -> OpaquePointer? {
    guard let msg else { return nil }
    _ = (unmanaged(msg) as Unmanaged<Message>).retain()
    return msg
}

@_cdecl("orc_msg_release")
public func orc_msg_release(_ msg: OpaquePointer?) {
    guard let msg else { return }
    (unmanaged(msg) as Unmanaged<Message>).release()
}

@_cdecl("orc_msg_clone")
public func orc_msg_clone(_ msg: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        out.pointee = retainedHandle(try message(msg).copy())
    }
}

@_cdecl("orc_msg_get")
public func orc_msg_get(_ msg: OpaquePointer?, _ field: orc_field_t, _ ptr: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                        _ len: UnsafeMutablePointer<Int>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let ptr = try required(ptr, "ptr"), len = try required(len, "len")
        ptr.pointee = nil
        len.pointee = 0
        let f = try textField(field)
        guard let v = m.textStorage(f) else { throw OrchestraError(.notFound, "\(f.jsonName) is not set") }
        ptr.pointee = storagePointer(v)
        len.pointee = v.count
    }
}

@_cdecl("orc_msg_set")
public func orc_msg_set(_ msg: OpaquePointer?, _ field: orc_field_t, _ ptr: UnsafePointer<CChar>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        try message(msg).set(try textField(field), try optionalBytes(ptr, len, "value"))
    }
}

// MARK: Per-field convenience accessors

@inline(__always)
func getText(_ msg: OpaquePointer?, _ f: TextField, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    len?.pointee = 0
    guard let msg else { return nil }
    let m = (unmanaged(msg) as Unmanaged<Message>).takeUnretainedValue()
    guard let v = m.textStorage(f) else { return nil }
    len?.pointee = v.count
    return storagePointer(v)
}

@inline(__always)
func setText(_ msg: OpaquePointer?, _ f: TextField, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in try message(msg).set(f, try optionalBytes(p, len, "value")) }
}

@_cdecl("orc_msg_id") public func orc_msg_id(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .id, len) }
@_cdecl("orc_msg_set_id") public func orc_msg_set_id(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .id, p, len) }
@_cdecl("orc_msg_type") public func orc_msg_type(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .type, len) }
@_cdecl("orc_msg_set_type") public func orc_msg_set_type(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .type, p, len) }
@_cdecl("orc_msg_version") public func orc_msg_version(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .version, len) }
@_cdecl("orc_msg_set_version") public func orc_msg_set_version(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .version, p, len) }
@_cdecl("orc_msg_source") public func orc_msg_source(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .source, len) }
@_cdecl("orc_msg_set_source") public func orc_msg_set_source(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .source, p, len) }
@_cdecl("orc_msg_target") public func orc_msg_target(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .target, len) }
@_cdecl("orc_msg_set_target") public func orc_msg_set_target(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .target, p, len) }
@_cdecl("orc_msg_correlation_id") public func orc_msg_correlation_id(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .correlationId, len) }
@_cdecl("orc_msg_set_correlation_id") public func orc_msg_set_correlation_id(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .correlationId, p, len) }
@_cdecl("orc_msg_reply_to") public func orc_msg_reply_to(_ msg: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? { getText(msg, .replyTo, len) }
@_cdecl("orc_msg_set_reply_to") public func orc_msg_set_reply_to(_ msg: OpaquePointer?, _ p: UnsafePointer<CChar>?, _ len: Int) -> Int32 { setText(msg, .replyTo, p, len) }

// MARK: Numbers

@_cdecl("orc_msg_timestamp")
public func orc_msg_timestamp(_ msg: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let out = try required(out, "out_ms")
        guard let ts = m.timestamp else { throw OrchestraError(.notFound, "timestamp is not set") }
        out.pointee = ts
    }
}

@_cdecl("orc_msg_set_timestamp")
public func orc_msg_set_timestamp(_ msg: OpaquePointer?, _ ms: Int64) -> Int32 {
    abiCall { () throws(OrchestraError) in try message(msg).timestamp = ms }
}

@_cdecl("orc_msg_ttl")
public func orc_msg_ttl(_ msg: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let out = try required(out, "out_ms")
        guard let ttl = m.ttl else { throw OrchestraError(.notFound, "ttl is not set") }
        out.pointee = ttl
    }
}

@_cdecl("orc_msg_set_ttl")
public func orc_msg_set_ttl(_ msg: OpaquePointer?, _ ms: Int64) -> Int32 {
    abiCall { () throws(OrchestraError) in try message(msg).ttl = ms < 0 ? nil : ms }
}

@_cdecl("orc_msg_priority")
public func orc_msg_priority(_ msg: OpaquePointer?) -> Int32 {
    guard let msg else { return fail(.invalidArgument, "msg is NULL") }
    return Int32((unmanaged(msg) as Unmanaged<Message>).takeUnretainedValue().effectivePriority.rawValue)
}

@_cdecl("orc_msg_set_priority")
public func orc_msg_set_priority(_ msg: OpaquePointer?, _ priority: Int32) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        guard priority >= 0 && priority <= 3, let p = Priority(rawValue: UInt8(priority)) else {
            throw OrchestraError(.invalidArgument, "priority \(priority) is outside 0...3")
        }
        m.priority = p
    }
}

// MARK: Headers

@inline(__always)
func storeHeader(_ m: Message, _ index: Int, _ value: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                 _ valueLen: UnsafeMutablePointer<Int>?, _ isJSON: UnsafeMutablePointer<Int32>?) -> UnsafeRawBufferPointer {
    let h = m.headerStorage(at: index)
    value?.pointee = storagePointer(h.value)
    valueLen?.pointee = h.value.count
    isJSON?.pointee = h.isJSON ? 1 : 0
    return h.key
}

@_cdecl("orc_msg_header_get")
public func orc_msg_header_get(_ msg: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                               _ value: UnsafeMutablePointer<UnsafePointer<CChar>?>?, _ valueLen: UnsafeMutablePointer<Int>?,
                               _ isJSON: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let value = try required(value, "value"), valueLen = try required(valueLen, "value_len")
        value.pointee = nil
        valueLen.pointee = 0
        let k = try cBytes(UnsafeRawPointer(key), keyLen, "key")
        guard let i = m.headerIndex(k) else {
            throw OrchestraError(.notFound, "no header \"\(String(decoding: k.prefix(200), as: UTF8.self))\"")
        }
        _ = storeHeader(m, i, value, valueLen, isJSON)
    }
}

@_cdecl("orc_msg_header_set")
public func orc_msg_header_set(_ msg: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                               _ value: UnsafePointer<CChar>?, _ valueLen: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let k = Array(try cBytes(UnsafeRawPointer(key), keyLen, "key"))
        let v = Array(try cBytes(UnsafeRawPointer(value), valueLen, "value"))
        try m.setHeader(k, .string(v))
    }
}

@_cdecl("orc_msg_header_set_json")
public func orc_msg_header_set_json(_ msg: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLen: Int,
                                    _ json: UnsafePointer<CChar>?, _ jsonLen: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let k = Array(try cBytes(UnsafeRawPointer(key), keyLen, "key"))
        let v = Array(try cBytes(UnsafeRawPointer(json), jsonLen, "json"))
        try m.setHeader(k, .json(v))
    }
}

@_cdecl("orc_msg_header_remove")
public func orc_msg_header_remove(_ msg: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ keyLen: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let k = Array(try cBytes(UnsafeRawPointer(key), keyLen, "key"))
        guard m.removeHeader(k) else {
            throw OrchestraError(.notFound, "no header \"\(String(decoding: k.prefix(200), as: UTF8.self))\"")
        }
    }
}

@_cdecl("orc_msg_header_count")
public func orc_msg_header_count(_ msg: OpaquePointer?) -> Int {
    guard let msg else { return 0 }
    return (unmanaged(msg) as Unmanaged<Message>).takeUnretainedValue().headerCount
}

@_cdecl("orc_msg_header_at")
public func orc_msg_header_at(_ msg: OpaquePointer?, _ index: Int, _ key: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                              _ keyLen: UnsafeMutablePointer<Int>?, _ value: UnsafeMutablePointer<UnsafePointer<CChar>?>?,
                              _ valueLen: UnsafeMutablePointer<Int>?, _ isJSON: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let key = try required(key, "key")
        // size_t index arrives as Int: values above Int.max are negative here.
        guard index >= 0, index < m.headerCount else {
            throw OrchestraError(.notFound, "header index \(UInt(bitPattern: index)) is out of range (count \(m.headerCount))")
        }
        let k = storeHeader(m, index, value, valueLen, isJSON)
        key.pointee = storagePointer(k)
        keyLen?.pointee = k.count
    }
}

// MARK: Payload

@_cdecl("orc_msg_payload")
public func orc_msg_payload(_ msg: OpaquePointer?, _ data: UnsafeMutablePointer<UnsafeRawPointer?>?,
                            _ len: UnsafeMutablePointer<Int>?, _ contentType: UnsafeMutablePointer<orc_content_type_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        let data = try required(data, "data"), len = try required(len, "len")
        data.pointee = nil
        len.pointee = 0
        guard let p = m.payload else { throw OrchestraError(.notFound, "message has no payload") }
        data.pointee = storagePointer(p)
        len.pointee = p.count
        contentType?.pointee = orc_content_type_t(rawValue: UInt32(m.contentType.rawValue))
    }
}

@_cdecl("orc_msg_set_payload")
public func orc_msg_set_payload(_ msg: OpaquePointer?, _ ct: orc_content_type_t, _ data: UnsafeRawPointer?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        guard ct.rawValue <= 2, let type = ContentType(rawValue: UInt8(ct.rawValue)) else {
            throw OrchestraError(.invalidArgument, "unknown content type \(ct.rawValue)")
        }
        let bytes = Array(try cBytes(data, len, "data"))
        switch type {
        case .json:
            try m.setPayload(json: bytes)
        case .text:
            if let bad = bytes.withUnsafeBytes({ UTF8Validator.firstInvalidOffset($0) }) {
                throw OrchestraError(.invalidArgument, "text payload is not valid UTF-8 (byte \(bad))")
            }
            m.payload = bytes
            m.contentType = .text
        case .binary:
            m.setPayload(binary: bytes)
        }
        m.compressed = false
        m.encrypted = false
    }
}

@_cdecl("orc_msg_clear_payload")
public func orc_msg_clear_payload(_ msg: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let m = try message(msg)
        m.payload = nil
        m.contentType = .json
        m.compressed = false
        m.encrypted = false
    }
}

@_cdecl("orc_msg_is_compressed")
public func orc_msg_is_compressed(_ msg: OpaquePointer?) -> Int32 {
    guard let msg else { return 0 }
    return (unmanaged(msg) as Unmanaged<Message>).takeUnretainedValue().compressed ? 1 : 0
}

@_cdecl("orc_msg_is_encrypted")
public func orc_msg_is_encrypted(_ msg: OpaquePointer?) -> Int32 {
    guard let msg else { return 0 }
    return (unmanaged(msg) as Unmanaged<Message>).takeUnretainedValue().encrypted ? 1 : 0
}
