// Shared plumbing of the C ABI layer: the per-thread last-error message, error returns, and
// checked conversion of C pointers, lengths, text arguments and struct_size fields. No
// protocol logic lives in this module.
import Glibc
import OrchestraCore
import COrchestra

/// ORC_OK as the Int32 every fallible function returns.
var orcOK: Int32 {
    @inline(__always) get { ORC_OK.rawValue }
}

/// The calling thread's last error message, NUL-terminated, owned by a pthread key.
private let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { p in free(p) }
    return key
}()

/// Records `message` as this thread's detailed error (orc_last_error()).
func setLastError(_ message: String) {
    var bytes = Array(message.utf8)
    if bytes.count > 4095 { bytes.removeSubrange(4095...) }
    let old = pthread_getspecific(lastErrorKey)
    guard let buf = realloc(old, bytes.count + 1) else { return }
    bytes.withUnsafeBytes { src in
        if let base = src.baseAddress { memcpy(buf, base, src.count) }
    }
    buf.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self)
    pthread_setspecific(lastErrorKey, buf)
}

/// Pointer to this thread's last error text ("" when none).
func lastErrorPointer() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(lastErrorKey) {
        return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
    }
    return emptyCString
}

nonisolated(unsafe) let emptyCString: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.pointee = 0
    return UnsafePointer(p)
}()

/// Records the error and returns its negative code.
@inline(never)
func fail(_ error: OrchestraError) -> Int32 {
    setLastError(error.message)
    return error.code.rawValue
}

@inline(never)
func fail(_ code: ErrorCode, _ message: String) -> Int32 {
    setLastError(message)
    return code.rawValue
}

/// Runs `body`, returning ORC_OK or the thrown error's code (recorded as the last error).
@inline(__always)
func abiCall(_ body: () throws(OrchestraError) -> Void) -> Int32 {
    do {
        try body()
        return orcOK
    } catch {
        return fail(error)
    }
}

/// A C `ptr + len` as a buffer. NULL with length 0 is the empty buffer; NULL with a length
/// is an error; lengths above Int.max are rejected.
@inline(__always)
func cBytes(_ ptr: UnsafeRawPointer?, _ len: Int, _ what: StaticString) throws(OrchestraError) -> UnsafeRawBufferPointer {
    if len < 0 {
        throw OrchestraError(.invalidArgument, "\(what): length \(UInt(bitPattern: len)) is too large")
    }
    guard let ptr else {
        if len == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
        throw OrchestraError(.invalidArgument, "\(what) is NULL but its length is \(len)")
    }
    return UnsafeRawBufferPointer(start: ptr, count: len)
}

/// A required pointer argument.
@inline(__always)
func required<T>(_ p: T?, _ what: StaticString) throws(OrchestraError) -> T {
    guard let p else { throw OrchestraError(.invalidArgument, "\(what) is NULL") }
    return p
}

/// A size_t argument or field as an Int: values above Int.max are an error.
@inline(__always)
func cSize(_ v: Int, _ what: StaticString) throws(OrchestraError) -> Int {
    guard v >= 0 else { throw OrchestraError(.invalidArgument, "\(what) \(UInt(bitPattern: v)) is too large") }
    return v
}

/// Bytes that must be UTF-8, as a String.
func utf8String(_ bytes: UnsafeRawBufferPointer, _ what: StaticString) throws(OrchestraError) -> String {
    if let bad = UTF8Validator.firstInvalidOffset(bytes) {
        throw OrchestraError(.invalidArgument, "\(what) is not valid UTF-8 (byte \(bad))")
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A required NUL-terminated UTF-8 argument or option string of at most `max` bytes (1024:
/// names, hosts, paths of options structs).
func text(_ p: UnsafePointer<CChar>?, _ what: StaticString, max: Int = 1024) throws(OrchestraError) -> String {
    guard let p else { throw OrchestraError(.invalidArgument, "\(what) is NULL") }
    let len = strnlen(p, max + 1)
    guard len <= max else { throw OrchestraError(.invalidArgument, "\(what) is longer than \(max) bytes") }
    return try utf8String(UnsafeRawBufferPointer(start: p, count: len), what)
}

/// An optional one: NULL is nil.
func optionalText(_ p: UnsafePointer<CChar>?, _ what: StaticString, max: Int = 1024) throws(OrchestraError) -> String? {
    guard let p else { return nil }
    return try text(p, what, max: max)
}

// MARK: Structs that start with struct_size (options, stats, results, views)

/// The struct_size field every sized struct of the header starts with.
@inline(__always)
private func structSizeField<T>(_ p: UnsafePointer<T>) -> Int {
    UnsafeRawPointer(p).load(as: Int.self)
}

/// orc_<object>_options_init_sized: checks the caller's sizeof, zero-fills the struct and sets
/// its struct_size to this library's size; the caller then sets the non-zero defaults.
func structToInit<T>(_ p: UnsafeMutablePointer<T>?, _ structSize: Int, _ type: StaticString) throws(OrchestraError) -> UnsafeMutablePointer<T> {
    let p = try required(p, "opts")
    let mine = MemoryLayout<T>.size
    guard structSize >= mine else {
        throw OrchestraError(.invalidArgument, "struct_size \(UInt(bitPattern: structSize)) is smaller than this library's \(type) (\(mine) bytes)")
    }
    memset(p, 0, mine)
    UnsafeMutableRawPointer(p).storeBytes(of: mine, as: Int.self)
    return p
}

/// Options given to orc_<object>_new: filled by the header's orc_<object>_options_init first
/// (struct_size at least this library's size; a newer header's larger struct is fine). `type`
/// is the struct's C name, orc_<object>_options_t.
func initialisedOptions<T>(_ p: UnsafePointer<T>, _ type: StaticString) throws(OrchestraError) -> T {
    try initialisedOptions(p, type, oldest: MemoryLayout<T>.size)
}

// Options structs that grew (fields appended after the struct's first release): a caller
// built against an older header passes its smaller struct_size and keeps working. `oldest` is
// the size of the first release, the offset of the first appended field
// (MemoryLayout<T>.offset(of:)); an appended field's zero value means what the older struct
// did without it.

/// orc_<object>_options_init_sized of a grown struct: refuses a struct_size below `oldest`;
/// fills the caller's bytes (at most this library's size) with zeros and the defaults
/// `defaults` sets, and records min(struct_size, this library's size) as struct_size.
func structToInit<T>(_ p: UnsafeMutablePointer<T>?, _ structSize: Int, _ type: StaticString, oldest: Int,
                     _ defaults: (UnsafeMutablePointer<T>) -> Void) throws(OrchestraError) {
    let p = try required(p, "opts")
    let mine = MemoryLayout<T>.size
    guard structSize >= oldest else {
        throw OrchestraError(.invalidArgument, "struct_size \(UInt(bitPattern: structSize)) is smaller than \(type) (\(oldest) bytes at least)")
    }
    let n = Swift.min(structSize, mine)
    withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buf in
        let t = buf.baseAddress!
        memset(t, 0, mine)
        defaults(t)
        UnsafeMutableRawPointer(t).storeBytes(of: n, as: Int.self)
        memcpy(p, t, n)
    }
}

/// Options of a grown struct given to orc_<object>_new: struct_size at least `oldest`; the
/// fields past the caller's struct_size read as zero.
func initialisedOptions<T>(_ p: UnsafePointer<T>, _ type: StaticString, oldest: Int) throws(OrchestraError) -> T {
    let got = structSizeField(p)
    let mine = MemoryLayout<T>.size
    guard got >= oldest else {
        let initName = "\(type)".dropLast(2) + "_init"
        throw OrchestraError(.invalidArgument, "options not initialised with \(initName) (struct_size \(UInt(bitPattern: got)), expected at least \(oldest))")
    }
    if got >= mine { return p.pointee }
    return withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buf in
        let t = buf.baseAddress!
        memset(t, 0, mine)
        memcpy(t, p, got)
        return t.pointee
    }
}

/// A struct the caller sized for the library to fill (stats, a publish result, an event
/// view): struct_size at least this library's size. Returns the caller's struct_size.
func callerSized<T>(_ p: UnsafeMutablePointer<T>, _ arg: StaticString, _ type: StaticString) throws(OrchestraError) -> Int {
    let got = structSizeField(UnsafePointer(p))
    let mine = MemoryLayout<T>.size
    guard got >= mine else {
        throw OrchestraError(.invalidArgument, "\(arg)->struct_size \(UInt(bitPattern: got)) is smaller than \(type) (\(mine) bytes); set it to sizeof *\(arg)")
    }
    return got
}

// MARK: Handles. An orc_x_t* is an unretained Unmanaged<X> reference.

@inline(__always)
func handle<T: AnyObject>(_ p: OpaquePointer?, _ type: T.Type, _ what: StaticString) throws(OrchestraError) -> T {
    guard let p else { throw OrchestraError(.invalidArgument, "\(what) is NULL") }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

@inline(__always)
func unmanaged<T: AnyObject>(_ p: OpaquePointer) -> Unmanaged<T> {
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(p))
}

/// A +1 reference handed to C.
@inline(__always)
func retainedHandle<T: AnyObject>(_ object: T) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// Copies `bytes` into a new buffer allocated with malloc (freed by orc_buf_free).
func mallocCopy(_ bytes: UnsafeRawBufferPointer) -> UnsafeMutableRawPointer? {
    guard let p = malloc(max(bytes.count, 1)) else { return nil }
    if let base = bytes.baseAddress, bytes.count > 0 { memcpy(p, base, bytes.count) }
    return p
}

// MARK: Error table exports

@_cdecl("orc_strerror")
public func orc_strerror(_ code: Int32) -> UnsafePointer<CChar> {
    if code == orcOK { return successCString }
    guard let c = ErrorCode(rawValue: code) else { return unknownCodeCString }
    return errorStrings[Int(-c.rawValue)].summary
}

@_cdecl("orc_err_name")
public func orc_err_name(_ code: Int32) -> UnsafePointer<CChar> {
    if code == orcOK { return okNameCString }
    guard let c = ErrorCode(rawValue: code) else { return unknownNameCString }
    return errorStrings[Int(-c.rawValue)].name
}

@_cdecl("orc_last_error")
public func orc_last_error() -> UnsafePointer<CChar> {
    lastErrorPointer()
}

nonisolated(unsafe) private let successCString = staticCString("success")
nonisolated(unsafe) private let unknownCodeCString = staticCString("unknown error code")
nonisolated(unsafe) private let okNameCString = staticCString("ORC_OK")
nonisolated(unsafe) private let unknownNameCString = staticCString("ORC_EUNKNOWN")

/// Interned C strings for the error table, made once.
nonisolated(unsafe) private let errorStrings: [(name: UnsafePointer<CChar>, summary: UnsafePointer<CChar>)] = {
    let maxCode = ErrorCode.allCases.map { Int(-$0.rawValue) }.max() ?? 0
    var table = Array(repeating: (name: emptyCString, summary: emptyCString), count: maxCode + 1)
    for c in ErrorCode.allCases {
        table[Int(-c.rawValue)] = (staticCString(c.name), staticCString(c.summary))
    }
    return table
}()

/// A C string that lives for the life of the process.
func staticCString(_ s: String) -> UnsafePointer<CChar> {
    let bytes = Array(s.utf8)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
    for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
    p[bytes.count] = 0
    return UnsafePointer(p)
}

// MARK: Version

@_cdecl("orc_version")
public func orc_version() -> Int32 {
    Int32(ORC_VERSION_MAJOR * 10000 + ORC_VERSION_MINOR * 100 + ORC_VERSION_PATCH)
}

@_cdecl("orc_version_string")
public func orc_version_string() -> UnsafePointer<CChar> {
    versionString
}

nonisolated(unsafe) private let versionString = staticCString("\(ORC_VERSION_MAJOR).\(ORC_VERSION_MINOR).\(ORC_VERSION_PATCH)")

@_cdecl("orc_buf_free")
public func orc_buf_free(_ p: UnsafeMutableRawPointer?) {
    free(p)
}
