/// A log-linear histogram of `UInt64` values (HDR style), for latencies in nanoseconds and
/// similar quantities.
///
/// Values below 32 get one exact bucket each. Above that, every power of two `[2^e, 2^(e+1))`
/// is split into 32 equal sub-buckets of width `2^(e-5)`. A quantile is reported as the middle
/// of the bucket that holds it (clamped to the recorded min and max), so
///
///     |reported - exact| <= exact / 64      (relative error at most 1.5625 %)
///
/// where `exact` is the nearest-rank quantile of the recorded values (the value at rank
/// `ceil(p * count)` of the sorted values). `record` is O(1) (one `leadingZeroBitCount`), the
/// histogram has a fixed size (1920 buckets, 15 KiB) and never allocates after `init`.
///
/// A `Histogram` is a value type and is not synchronised; `HistogramMetric` wraps one in a lock.
public struct Histogram: Sendable, Equatable {
    /// log2 of the number of sub-buckets per power of two.
    @usableFromInline static let subBits = 5
    @usableFromInline static let subCount = 1 << subBits            // 32
    /// 32 exact buckets for 0..<32, then 32 per exponent 5...63.
    public static let bucketCount = subCount + (64 - subBits) * subCount   // 1920
    /// The documented bound on the relative error of `quantile(_:)`.
    public static let maxRelativeError = 1.0 / 64.0

    @usableFromInline var counts: [UInt64]
    public private(set) var count: UInt64 = 0
    /// Sum of the recorded values; saturates at UInt64.max instead of wrapping.
    public private(set) var sum: UInt64 = 0
    /// Smallest recorded value (0 when empty).
    public var min: UInt64 { count == 0 ? 0 : minValue }
    /// Largest recorded value (0 when empty).
    public private(set) var max: UInt64 = 0
    @usableFromInline var minValue: UInt64 = .max

    public init() {
        counts = Array(repeating: 0, count: Histogram.bucketCount)
    }

    /// The bucket that holds `v`.
    @inline(__always)
    static func bucketIndex(_ v: UInt64) -> Int {
        if v < UInt64(subCount) { return Int(v) }
        let e = 63 - v.leadingZeroBitCount                 // 5...63
        let sub = Int(truncatingIfNeeded: v >> UInt64(e - subBits)) & (subCount - 1)
        return (e - subBits + 1) * subCount + sub
    }

    /// The smallest value and the width of bucket `i`.
    static func bucketRange(_ i: Int) -> (lower: UInt64, width: UInt64) {
        if i < subCount { return (UInt64(i), 1) }
        let e = i / subCount + subBits - 1
        let sub = UInt64(i % subCount)
        let shift = UInt64(e - subBits)
        return ((UInt64(subCount) + sub) << shift, 1 << shift)
    }

    /// Records one value. O(1).
    @inline(__always)
    public mutating func record(_ v: UInt64) {
        counts[Histogram.bucketIndex(v)] &+= 1
        count &+= 1
        let (s, o) = sum.addingReportingOverflow(v)
        sum = o ? .max : s
        if v > max { max = v }
        if v < minValue { minValue = v }
    }

    /// Records values one by one without a copy-on-write check per value (for hot loops);
    /// see `withRecorder`.
    struct Recorder {
        let counts: UnsafeMutablePointer<UInt64>
        var count: UInt64
        var sum: UInt64
        var max: UInt64
        var minValue: UInt64

        @inline(__always)
        mutating func record(_ v: UInt64) {
            counts[Histogram.bucketIndex(v)] &+= 1
            count &+= 1
            let (s, o) = sum.addingReportingOverflow(v)
            sum = o ? .max : s
            if v > max { max = v }
            if v < minValue { minValue = v }
        }

        /// Records `v` `n` (> 0) times.
        @inline(__always)
        mutating func record(_ v: UInt64, count n: UInt64) {
            counts[Histogram.bucketIndex(v)] &+= n
            count &+= n
            let (p, o1) = v.multipliedReportingOverflow(by: n)
            let (s, o2) = sum.addingReportingOverflow(p)
            sum = (o1 || o2) ? .max : s
            if v > max { max = v }
            if v < minValue { minValue = v }
        }
    }

    /// Runs `body` with a `Recorder` on this histogram's buckets; the totals are written back
    /// when it returns.
    @inline(__always)
    mutating func withRecorder<R>(_ body: (inout Recorder) -> R) -> R {
        let (c, sm, mx, mn) = (count, sum, max, minValue)
        let (r, rec) = counts.withUnsafeMutableBufferPointer { buf -> (R, Recorder) in
            var rec = Recorder(counts: buf.baseAddress!, count: c, sum: sm, max: mx, minValue: mn)
            let r = body(&rec)
            return (r, rec)
        }
        count = rec.count
        sum = rec.sum
        max = rec.max
        minValue = rec.minValue
        return r
    }

    /// Records `v` `n` times.
    public mutating func record(_ v: UInt64, count n: UInt64) {
        guard n > 0 else { return }
        counts[Histogram.bucketIndex(v)] &+= n
        count &+= n
        let (p, o1) = v.multipliedReportingOverflow(by: n)
        let (s, o2) = sum.addingReportingOverflow(p)
        sum = (o1 || o2) ? .max : s
        if v > max { max = v }
        if v < minValue { minValue = v }
    }

    /// What was recorded since `earlier`, an earlier copy of this histogram (the recent part
    /// of a cumulative metric): each non-empty bucket's middle and how many values it gained,
    /// smallest first. Buckets that gained nothing (or, in a copy that is not an earlier state
    /// of this one, lost) are left out.
    public func recordedSince(_ earlier: Histogram) -> [(value: UInt64, count: UInt64)] {
        var out: [(value: UInt64, count: UInt64)] = []
        for i in 0..<Histogram.bucketCount where counts[i] > earlier.counts[i] {
            let (lower, width) = Histogram.bucketRange(i)
            out.append((lower + width / 2, counts[i] - earlier.counts[i]))
        }
        return out
    }

    /// The nearest-rank quantile `p` (0...1) within `maxRelativeError`; 0 when empty.
    /// `p` outside 0...1 (or NaN) is clamped.
    public func quantile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let q = p.isNaN ? 0 : Swift.min(Swift.max(p, 0), 1)
        // rank in 1...count
        let exactRank = (q * Double(count)).rounded(.up)
        var rank: UInt64 = exactRank >= Double(count) ? count : UInt64(exactRank)
        if rank < 1 { rank = 1 }
        if rank == count { return max }
        var seen: UInt64 = 0
        for i in 0..<counts.count {
            seen &+= counts[i]
            if seen >= rank {
                let (lower, width) = Histogram.bucketRange(i)
                let mid = lower + width / 2   // inside the bucket; |mid - v| <= width/2 <= v/64
                return Swift.min(Swift.max(mid, min), max)
            }
        }
        return max
    }

    /// Adds every value recorded in `other`.
    public mutating func merge(_ other: Histogram) {
        guard other.count > 0 else { return }
        for i in 0..<counts.count { counts[i] &+= other.counts[i] }
        count &+= other.count
        let (s, o) = sum.addingReportingOverflow(other.sum)
        sum = o ? .max : s
        if other.max > max { max = other.max }
        if other.minValue < minValue { minValue = other.minValue }
    }

    /// Forgets every value.
    public mutating func reset() {
        for i in 0..<counts.count { counts[i] = 0 }
        count = 0
        sum = 0
        max = 0
        minValue = .max
    }
}
