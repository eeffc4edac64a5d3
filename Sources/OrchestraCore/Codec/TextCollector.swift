// Where both envelope decoders put the text of the fields and headers they read.
import Glibc

/// Collects the (unescaped) text of an envelope's text fields and headers while a decoder
/// reads it, in scratch memory (stack first, heap past it), then makes the message's one
/// text buffer from it (`makeBlock`): one allocation for all of them, plus the header list.
struct TextCollector: ~Copyable {
    /// The text bytes.
    private var w: ByteWriter
    /// Header records, four Ints each: key start, key end, value start, value end (negative,
    /// as ~end, for a raw JSON value).
    private var records: ByteWriter
    private(set) var headerCount = 0
    /// Offsets of the text fields in `w` (by TextField raw value); start -1: absent.
    private var starts = SIMD8<Int>(repeating: -1), ends = SIMD8<Int>(repeating: 0)

    /// Bytes of stack lent to the collector (text, then header records); more moves to the
    /// heap. Kept at or under the standard library's 1 KiB stack-allocation threshold.
    static let scratchText = 512, scratchRecords = 256

    /// Runs `body` with a collector over stack scratch memory (what a decoder does with it).
    @inline(__always)
    static func collecting<R>(_ body: (inout TextCollector) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        let r: Result<R, OrchestraError> = withUnsafeTemporaryAllocation(
            byteCount: scratchText + scratchRecords, alignment: 16
        ) { scratch in
            var text = TextCollector(scratch)
            do throws(OrchestraError) {
                return .success(try body(&text))
            } catch {
                return .failure(error)
            }
        }
        return try r.get()
    }

    init(_ scratch: UnsafeMutableRawBufferPointer) {
        let t = TextCollector.scratchText
        w = ByteWriter(lending: scratch.baseAddress, capacity: t)
        records = ByteWriter(lending: scratch.baseAddress.map { $0 + t }, capacity: scratch.count - t)
    }

    var count: Int { w.count }

    func has(_ f: TextField) -> Bool { starts[Int(f.rawValue)] >= 0 }

    mutating func setField(_ f: TextField, _ from: Int, _ to: Int) {
        starts[Int(f.rawValue)] = from
        ends[Int(f.rawValue)] = to
    }

    /// Appends bytes; returns where they start.
    @inline(__always)
    mutating func append(_ b: UnsafeRawBufferPointer) -> Int {
        let from = w.count
        w.append(b)
        return from
    }

    /// Scans the string at `s.pos` (checked as `scanStringRaw` checks it) and appends its
    /// unescaped bytes; returns their range.
    @inline(__always)
    mutating func appendString(_ s: inout JSONScanner) throws(OrchestraError) -> (Int, Int) {
        let (start, end, escaped) = try s.scanStringRaw()
        let from = w.count
        if !escaped {
            let len = end - start
            if len <= 16 && start + 16 <= s.bytes.count {
                // Short (most fields): two 8-byte words, no memcpy call. The bytes copied past
                // the string are beyond `count`, so they are overwritten or ignored.
                w.reserve(16)
                let src = s.bytes.baseAddress.unsafelyUnwrapped + start
                let dst = w.base.unsafelyUnwrapped + w.count
                dst.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
                dst.storeBytes(of: src.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                w.advance(len)
            } else {
                w.append(UnsafeRawBufferPointer(rebasing: s.bytes[start..<end]))
            }
        } else {
            let raw = UnsafeRawBufferPointer(rebasing: s.bytes[start..<end])
            w.reserve(raw.count)
            JSONScanner.unescapeChecked(raw, into: &w)
        }
        return (from, w.count)
    }

    mutating func addHeader(_ ks: Int, _ ke: Int, _ vs: Int, _ ve: Int, isJSON: Bool) {
        records.reserve(4 * MemoryLayout<Int>.size)
        put(ks); put(ke); put(vs); put(isJSON ? ~ve : ve)
        headerCount += 1
    }

    private mutating func put(_ v: Int) {
        withUnsafeBytes(of: v) { records.put($0.baseAddress!, $0.count) }
    }

    private func record(_ i: Int) -> (ks: Int, ke: Int, vs: Int, ve: Int, isJSON: Bool) {
        let p = records.bytes
        let o = i * 4 * MemoryLayout<Int>.size
        let s = MemoryLayout<Int>.size
        let ve = p.loadUnaligned(fromByteOffset: o + 3 * s, as: Int.self)
        return (p.loadUnaligned(fromByteOffset: o, as: Int.self),
                p.loadUnaligned(fromByteOffset: o + s, as: Int.self),
                p.loadUnaligned(fromByteOffset: o + 2 * s, as: Int.self),
                ve < 0 ? ~ve : ve, ve < 0)
    }

    private func key(_ i: Int) -> UnsafeRawBufferPointer {
        let r = record(i)
        return UnsafeRawBufferPointer(rebasing: w.bytes[r.ks..<r.ke])
    }

    /// The first header key that repeats an earlier one (pairwise up to 16 headers, a hash
    /// set past that, as `checkDuplicateKeys`).
    func firstDuplicateHeaderKey() -> [UInt8]? {
        let n = headerCount
        if n <= 16 {
            for i in 0..<n {
                for j in (i + 1)..<n where equalBytes(key(i), key(j)) { return makeBytes(key(j)) }
            }
            return nil
        }
        var seen = Set<[UInt8]>(minimumCapacity: n)
        for i in 0..<n {
            let k = makeBytes(key(i))
            if !seen.insert(k).inserted { return k }
        }
        return nil
    }

    /// The message's text: one `TextBlock` holding where every field and header is, and
    /// every collected byte (see `TextBlock` for the layout).
    func makeBlock() -> TextBlock {
        let n = headerCount
        let textOffset = TextBlockLayout.textOffset(headerCount: n)
        let text = w.bytes
        let block = TextBlock.create(minimumCapacity: textOffset + text.count) { _ in
            TextBlockHeader(headerCount: n)
        }
        block.withUnsafeMutablePointerToElements { e in
            let raw = UnsafeMutableRawPointer(e)
            let size = TextBlockLayout.intSize
            for i in 0..<TextBlockLayout.fieldSlots {
                let start = starts[i]
                raw.storeBytes(of: start, toByteOffset: 2 * i * size, as: Int.self)
                raw.storeBytes(of: start < 0 ? 0 : ends[i] - start, toByteOffset: (2 * i + 1) * size, as: Int.self)
            }
            for i in 0..<n {
                let r = record(i)
                let o = (2 * TextBlockLayout.fieldSlots + 4 * i) * size
                raw.storeBytes(of: r.ks, toByteOffset: o, as: Int.self)
                raw.storeBytes(of: r.ke - r.ks, toByteOffset: o + size, as: Int.self)
                raw.storeBytes(of: r.vs, toByteOffset: o + 2 * size, as: Int.self)
                let vc = r.ve - r.vs
                raw.storeBytes(of: r.isJSON ? ~vc : vc, toByteOffset: o + 3 * size, as: Int.self)
            }
            if let src = text.baseAddress, text.count > 0 {
                memcpy(raw + textOffset, src, text.count)
            }
        }
        return block
    }
}
