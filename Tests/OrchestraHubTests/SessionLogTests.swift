import Testing
@testable import OrchestraHub

/// The replay log's index: offsets, the byte budget (chunks only, oldest first), the window.
@Suite struct SessionLogTests {
    func log(_ kinds: String, bytes: Int = 100) -> SessionLog {
        let s = SessionLog(id: "s", owner: "alice", sharedWith: [], head: 0)
        for (i, k) in kinds.enumerated() {
            s.kept(offset: Int64(i + 1), atMs: Int64(i * 10), bytes: bytes, kind: k == "s" ? .state : .chunk)
        }
        s.head = Int64(kinds.count)
        return s
    }

    @Test func anEmptyLogStartsAfterTheHead() {
        let s = SessionLog(id: "s", owner: "a", sharedWith: [], head: 41)
        #expect(s.oldestOffset == 42 && s.delivered == 41)
    }

    @Test func theBudgetDropsTheOldestChunksAndKeepsStates() {
        let s = log("sccsccs")
        let cost = SessionLog.cost(bytes: 100)
        #expect(s.keptCost == 7 * cost)
        let dropped = s.dropOldestChunks(downTo: 5 * cost)
        #expect(dropped?.offsets == [2, 3] && dropped?.cost == 2 * cost)
        #expect(s.oldestOffset == 1 && s.keptEvents == 5)
        // Only states left once every chunk is gone: the budget cannot go lower.
        #expect(s.dropOldestChunks(downTo: 0)?.offsets == [5, 6])
        #expect(s.keptEvents == 3 && s.keptCost == 3 * cost)
        #expect(s.dropOldestChunks(downTo: 0) == nil)
    }

    @Test func theWindowDropsEverythingOlder() {
        let s = log("csccs")   // at 0, 10, 20, 30, 40 ms
        let (ranges, freed) = s.dropOlder(thanMs: 25)
        #expect(ranges.map { "\($0.0)" } == ["2...2", "1...3"] && freed == 3 * SessionLog.cost(bytes: 100))
        #expect(s.oldestOffset == 4)
        #expect(s.dropOlder(thanMs: 25).ranges.isEmpty)
        _ = s.dropOlder(thanMs: 1000)
        #expect(s.oldestOffset == 6 && s.keptCost == 0)
    }
}
