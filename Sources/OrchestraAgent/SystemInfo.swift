import Glibc

/// The `systemInfo` of `agent.heartbeat`: cpu, memory and disk use of this machine in percent,
/// from /proc/stat, /proc/meminfo and statvfs("/"). The parsers are pure (tests feed them
/// sample text); `SystemInfoSampler` reads the files.
public enum SystemInfo {
    /// Cumulative CPU times of the first line of /proc/stat, in clock ticks.
    public struct CPUTimes: Equatable, Sendable {
        /// idle + iowait.
        public var idle: UInt64
        /// user + nice + system + idle + iowait + irq + softirq + steal (guest time is already
        /// counted in user and nice).
        public var total: UInt64
        public init(idle: UInt64, total: UInt64) { self.idle = idle; self.total = total }
    }

    /// Parses the aggregate "cpu  user nice system idle iowait irq softirq steal ..." line.
    /// nil when there is none or it has fewer than four numbers.
    public static func parseCPU(_ stat: String) -> CPUTimes? {
        for line in stat.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.first == "cpu" else { continue }
            var v: [UInt64] = []
            for f in fields.dropFirst().prefix(8) {
                guard let n = UInt64(f) else { return nil }
                v.append(n)
            }
            guard v.count >= 4 else { return nil }
            let idle = v[3] + (v.count > 4 ? v[4] : 0)
            let (total, overflow) = v.reduce((UInt64(0), false)) { acc, x in
                let (s, o) = acc.0.addingReportingOverflow(x)
                return (s, acc.1 || o)
            }
            guard !overflow else { return nil }
            return CPUTimes(idle: idle, total: total)
        }
        return nil
    }

    /// Busy share between two samples (or since boot when `previous` is nil), 0...100.
    public static func cpuPercent(previous: CPUTimes?, current: CPUTimes) -> Double {
        var idle = current.idle, total = current.total
        if let p = previous, current.total > p.total, current.idle >= p.idle {
            idle = current.idle - p.idle
            total = current.total - p.total
        }
        guard total > 0, idle <= total else { return 0 }
        return round1(100 * Double(total - idle) / Double(total))
    }

    /// Used memory from /proc/meminfo: 100 * (1 - MemAvailable / MemTotal), or, without
    /// MemAvailable (kernels before 3.14), with MemFree + Buffers + Cached. nil without MemTotal.
    public static func memoryPercent(_ meminfo: String) -> Double? {
        var fields: [Substring: UInt64] = [:]
        for line in meminfo.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let rest = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true)
            if let first = rest.first, let n = UInt64(first) { fields[key] = n }
        }
        guard let total = fields["MemTotal"], total > 0 else { return nil }
        let available = fields["MemAvailable"] ?? ((fields["MemFree"] ?? 0) + (fields["Buffers"] ?? 0) + (fields["Cached"] ?? 0))
        guard available <= total else { return 0 }
        return round1(100 * Double(total - available) / Double(total))
    }

    /// Used disk space as df counts it: used / (used + available to unprivileged users), where
    /// used = blocks - free. Block counts of one statvfs.
    public static func diskPercent(blocks: UInt64, free: UInt64, available: UInt64) -> Double {
        guard blocks >= free else { return 0 }
        let used = blocks - free
        guard used + available > 0 else { return 0 }
        return round1(100 * Double(used) / Double(used + available))
    }

    static func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }

    /// Reads a small file (under /proc: its size is unknown in advance) whole, at most 1 MiB.
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while out.count < 1 << 20 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Samples this machine for heartbeats; keeps the previous CPU sample so each heartbeat
/// reports the CPU use since the one before. Not thread-safe: one owner (the I/O thread).
struct SystemInfoSampler {
    private var previous: SystemInfo.CPUTimes? = nil

    /// {cpu, memory, disk} in percent; a value that cannot be read is 0.
    mutating func sample() -> (cpu: Double, memory: Double, disk: Double) {
        var cpu = 0.0
        if let t = SystemInfo.readFile("/proc/stat").flatMap(SystemInfo.parseCPU) {
            cpu = SystemInfo.cpuPercent(previous: previous, current: t)
            previous = t
        }
        let memory = SystemInfo.readFile("/proc/meminfo").flatMap(SystemInfo.memoryPercent) ?? 0
        var disk = 0.0
        var st = statvfs()
        if statvfs("/", &st) == 0 {
            disk = SystemInfo.diskPercent(blocks: UInt64(st.f_blocks), free: UInt64(st.f_bfree), available: UInt64(st.f_bavail))
        }
        return (cpu, memory, disk)
    }
}
