// What the Swift test suites share: a bounded wait for a condition another thread makes true.
// Not a timing assertion: the bound only keeps a broken test from hanging.
import Glibc

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Polls `cond` every half millisecond until it holds, for at most `seconds`; returns whether
/// it held.
public func eventually(_ seconds: Double = 10, _ cond: () -> Bool) -> Bool {
    let end = monotonicSeconds() + seconds
    while monotonicSeconds() < end {
        if cond() { return true }
        usleep(500)
    }
    return cond()
}

/// `eventually` for async tests: sleeps without blocking a cooperative-pool thread.
public func eventuallyAsync(_ seconds: Double = 10, _ cond: () -> Bool) async -> Bool {
    let end = monotonicSeconds() + seconds
    while monotonicSeconds() < end {
        if cond() { return true }
        try? await Task.sleep(nanoseconds: 500_000)
    }
    return cond()
}
