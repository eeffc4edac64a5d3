// The encoders' output: bytes written through a raw pointer, into a buffer the caller lends
// (orc_msg_encode writes straight into the C caller's buffer) or into memory this writer
// allocates with malloc (orc_msg_encode_alloc hands that memory over without a copy). When a
// lent buffer is too small the writer moves to its own memory and carries on, so one pass
// always yields the complete encoding and its size.
import Glibc

public struct ByteWriter: ~Copyable {
    @usableFromInline var base: UnsafeMutableRawPointer?
    /// Bytes available at `base`.
    public private(set) var capacity: Int
    /// Bytes written so far.
    public private(set) var count: Int = 0
    /// Whether `base` is malloc'ed memory this writer owns (false: the lent buffer).
    @usableFromInline var owned: Bool

    /// Writes into `buffer` (`capacity` bytes, not owned) until it is full, then into memory of
    /// its own.
    public init(lending buffer: UnsafeMutableRawPointer?, capacity: Int) {
        self.base = buffer
        self.capacity = buffer == nil ? 0 : max(capacity, 0)
        self.owned = false
    }

    /// Writes into memory of its own, starting with `capacity` bytes.
    public init(capacity: Int) {
        let c = max(capacity, 16)
        guard let p = malloc(c) else { fatalError("out of memory allocating \(c) bytes") }
        self.base = p
        self.capacity = c
        self.owned = true
    }

    deinit {
        if owned { free(base) }
    }

    /// True while every byte is in the lent buffer.
    public var isInLentBuffer: Bool { !owned }

    /// The bytes written (valid until the next write or the end of the writer).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Hands over the malloc'ed memory holding the bytes (free it with free()); nil when the
    /// bytes are in the lent buffer.
    public consuming func takeAllocation() -> UnsafeMutableRawPointer? {
        let p = owned ? base : nil
        owned = false
        return p
    }

    /// Makes room for `n` more bytes.
    @inline(__always)
    public mutating func reserve(_ n: Int) {
        if capacity &- count < n { grow(n) }
    }

    @inline(never)
    mutating func grow(_ n: Int) {
        let need = count + n
        var c = max(capacity * 2, 256)
        while c < need { c *= 2 }
        if owned {
            guard let p = realloc(base, c) else { fatalError("out of memory allocating \(c) bytes") }
            base = p
        } else {
            guard let p = malloc(c) else { fatalError("out of memory allocating \(c) bytes") }
            if count > 0, let b = base { memcpy(p, b, count) }
            base = p
            owned = true
        }
        capacity = c
    }

    /// Writes one byte; room must have been reserved.
    @inline(__always)
    mutating func put(_ b: UInt8) {
        base.unsafelyUnwrapped.storeBytes(of: b, toByteOffset: count, as: UInt8.self)
        count &+= 1
    }

    /// Writes `n` bytes from `p`; room must have been reserved.
    @inline(__always)
    mutating func put(_ p: UnsafeRawPointer, _ n: Int) {
        if n > 0 { memcpy(base.unsafelyUnwrapped + count, p, n) }
        count &+= n
    }

    @inline(__always)
    public mutating func append(_ b: UInt8) {
        reserve(1)
        put(b)
    }

    @inline(__always)
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0, let p = bytes.baseAddress else { return }
        reserve(n)
        put(p, n)
    }

    @inline(__always)
    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Writes the bytes of a string's UTF-8 view.
    mutating func append(_ s: String.UTF8View) {
        var s = String(s)
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Writes the bytes of a static string (ASCII keys and literals).
    @inline(__always)
    mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Overwrites the byte at `offset` (< count).
    @inline(__always)
    mutating func set(_ b: UInt8, at offset: Int) {
        base.unsafelyUnwrapped.storeBytes(of: b, toByteOffset: offset, as: UInt8.self)
    }

    /// Writes into reserved room past `count` (then `advance` over it).
    @inline(__always)
    mutating func set(_ b: UInt8, atReserved offset: Int) {
        base.unsafelyUnwrapped.storeBytes(of: b, toByteOffset: offset, as: UInt8.self)
    }

    /// Counts `n` reserved bytes written with `set(_:atReserved:)`.
    @inline(__always)
    mutating func advance(_ n: Int) { count &+= n }

    /// Forgets the bytes written (keeps the memory, for reuse as scratch).
    mutating func removeAll() { count = 0 }

    /// Removes `n` bytes at `offset`, moving the rest down.
    mutating func remove(_ n: Int, at offset: Int) {
        let b = base.unsafelyUnwrapped
        memmove(b + offset, b + offset + n, count - offset - n)
        count -= n
    }
}
