import Foundation
@testable import Micro
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let start = ContinuousClock.now
    private let offset = Mutex(Duration.zero)
    func advance(_ by: Duration) { offset.withLock { $0 += by } }
    var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
    /// The clock as the selector reads it: nanoseconds.
    var nanoseconds: Int64 { Monotonic.nanoseconds(offset.withLock { $0 }) }
}

@Suite struct SelectorTests {
    static let service = ServiceRecord(name: "svc", version: "1", nodes: [
        Node(id: "a", address: "10.0.0.1:1"), Node(id: "b", address: "10.0.0.2:1"), Node(id: "c", address: "10.0.0.3:1"),
    ])

    func counts(_ selector: Selector, _ n: Int, services: [ServiceRecord] = [service], filters: [NodeFilter] = []) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for _ in 0..<n {
            let s = try selector.select(services, filters: filters)
            counts[s.node.id, default: 0] += 1
            selector.finish(s, outcome: .success)
        }
        return counts
    }

    @Test func roundRobinKeepsItsCursorAcrossCalls() throws {
        let selector = Selector(strategy: .roundRobin)
        var order: [String] = []
        for _ in 0..<6 {
            let s = try selector.select([Self.service])
            order.append(s.node.id)
            selector.finish(s, outcome: .success)
        }
        #expect(order == ["a", "b", "c", "a", "b", "c"])
        #expect(try counts(selector, 300) == ["a": 100, "b": 100, "c": 100])
    }

    @Test func randomSpreadsOverEveryNode() throws {
        let counts = try counts(Selector(strategy: .random), 3000)
        #expect(counts.count == 3)
        // each expected 1000 (σ ≈ 26): 800 is nearly eight σ away
        #expect(counts.values.allSatisfy { $0 > 800 })
    }

    @Test func leastOutstandingAvoidsTheBusyNode() throws {
        let selector = Selector(strategy: .leastOutstanding)
        var held: [Selection] = []
        // four calls in flight: one on each node, then one more somewhere
        for _ in 0..<4 { held.append(try selector.select([Self.service])) }
        let busy = held.last!.node.id
        #expect(selector.outstanding(busy) == 2)
        for _ in 0..<50 {
            let s = try selector.select([Self.service])
            #expect(s.node.id != busy)
            selector.finish(s, outcome: .success)
        }
        for s in held { selector.finish(s, outcome: .success) }
        #expect(["a", "b", "c"].allSatisfy { selector.outstanding($0) == 0 })
    }

    @Test func powerOfTwoChoicesSendsLessToTheSlowNode() throws {
        let clock = ManualClock()
        let selector = Selector(strategy: .powerOfTwoChoices, ejection: .init(), now: { clock.nanoseconds })
        var counts: [String: Int] = [:]
        for _ in 0..<3000 {
            let s = try selector.select([Self.service])
            counts[s.node.id, default: 0] += 1
            clock.advance(s.node.id == "c" ? .milliseconds(50) : .milliseconds(1))
            selector.finish(s, outcome: .success)
        }
        // c answers 50 times slower: it is chosen only when drawn against... nobody faster
        #expect(counts["c", default: 0] < 300)
        #expect(counts["a", default: 0] > 1000 && counts["b", default: 0] > 1000)
    }

    /// The latency estimate's decay: its short-interval series is `exp` to a double's precision,
    /// and `exp` itself beyond; an interval that runs back (two finishes racing) weighs 1.
    @Test func theCostsDecayAsAnExponential() {
        for since in [0.0, 1, 850, 12_345, 999_999, 1_000_000, 1_000_001, 5e7, 1e9, 1e10, 7.5e10] {
            let exact = Foundation.exp(-since / Selector.decay)
            #expect(abs(Selector.weight(since: since) - exact) <= 2 * exact.ulp, "at \(since) ns")
        }
        #expect(Selector.weight(since: -5e9) == 1)
    }

    /// The client picks from the registry cache's lists, which it holds: the selector keeps a
    /// memo per list (records by index, and each node as one shared object that knows whether it
    /// requires TLS and which HTTP it speaks). Picks from one held list and from a copy of it
    /// (another buffer) must share each node's record: what one learns, the other sees.

    @Test func picksFromAHeldListShareTheNodesRecordsWithAnyOther() throws {
        let clock = ManualClock()
        let selector = Selector(strategy: .powerOfTwoChoices, ejection: .init(consecutiveFailures: 1), now: { clock.nanoseconds })
        var nodes = Self.service.nodes
        nodes[2].metadata["tls"] = "required"
        nodes[1].metadata["protocols"] = "http/1.1"  // (go-micro's HTTP transport, say)
        let held = [ServiceRecord(name: "svc", version: "1", nodes: nodes)]
        var counts: [String: Int] = [:], fromMemo = 0
        var handedOut: [PickedNode] = []  // (held: an object freed could give its address to another)
        for round in 0..<3000 {
            // the same list object, or a fresh copy of it (a registry change), in turn
            let services = round % 2 == 0 ? held : [ServiceRecord(name: "svc", version: "1", nodes: nodes.map { $0 })]
            let pick = try selector.pick(services, filters: [], tried: nil, now: clock.nanoseconds, held: true)
            counts[pick.node.id, default: 0] += 1
            // what a call reads of the node's metadata comes with the pick
            #expect(pick.picked.requiresTLS == (pick.node.id == "c"))
            #expect(pick.picked.httpVersion == (pick.node.id == "b" ? .http1_1 : .http2))
            // a list's memo hands out the same node object again (no copy per call)
            if case .shared(let picked) = pick.chosen {
                if handedOut.contains(where: { $0 === picked }) { fromMemo += 1 } else { handedOut.append(picked) }
            }
            clock.advance(pick.node.id == "c" ? .milliseconds(50) : .milliseconds(1))
            selector.finish(pick.stats, started: pick.started, outcome: .success)
        }
        #expect(counts["c", default: 0] < 300)
        #expect(counts["a", default: 0] > 1000 && counts["b", default: 0] > 1000)
        #expect(fromMemo > 0)
        #expect(["a", "b", "c"].allSatisfy { selector.outstanding($0) == 0 })
        // a failure learnt through the held list ejects the node for picks from any list
        let pick = try selector.pick(held, filters: [], tried: nil, now: clock.nanoseconds, held: true)
        selector.finish(pick.stats, started: pick.started, outcome: .connectFailure)
        #expect(selector.isEjected(pick.node.id))
        for _ in 0..<50 {
            #expect(try selector.select([ServiceRecord(name: "svc", version: "1", nodes: nodes.map { $0 })]).node.id != pick.node.id)
        }
    }

    @Test func filtersByVersionAndLabel() throws {
        let v1 = ServiceRecord(name: "svc", version: "1", nodes: [Node(id: "a", address: "x:1", metadata: ["zone": "east"])])
        let v2 = ServiceRecord(name: "svc", version: "2", nodes: [
            Node(id: "b", address: "x:2", metadata: ["zone": "east"]), Node(id: "c", address: "x:3", metadata: ["zone": "west"]),
        ])
        let selector = Selector(strategy: .roundRobin)
        #expect(try counts(selector, 10, services: [v1, v2], filters: [.version("2")]).keys.sorted() == ["b", "c"])
        #expect(try counts(selector, 10, services: [v1, v2], filters: [.label("zone", "east")]).keys.sorted() == ["a", "b"])
        #expect(try counts(selector, 10, services: [v1, v2], filters: [.version("2"), .label("zone", "east")]) == ["b": 10])
        #expect(throws: MicroError.self) { try selector.select([v1, v2], filters: [.version("3")]) }
    }

    @Test func unknownServiceIsAClearError() {
        do {
            _ = try Selector().select([ServiceRecord(name: "ghost")])
            Issue.record("selected a node of a service with none")
        } catch let error as MicroError {
            #expect(error.code == 500)
            #expect(error.detail.contains("ghost"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func excludedNodesAreSkippedUntilNoneIsLeft() throws {
        let selector = Selector(strategy: .random)
        for _ in 0..<50 {
            let s = try selector.select([Self.service], exclude: ["a", "b"])
            #expect(s.node.id == "c")
            selector.finish(s, outcome: .success)
        }
        // every node excluded: any will do rather than none
        _ = try selector.select([Self.service], exclude: ["a", "b", "c"])
    }

    @Test func connectFailureEjectsWithDoublingBackoffAndSuccessRestores() throws {
        let clock = ManualClock()
        let policy = EjectionPolicy(consecutiveFailures: 3, baseEjection: .seconds(1), maxEjection: .seconds(4))
        let selector = Selector(strategy: .roundRobin, ejection: policy, now: { clock.nanoseconds })
        func fail(_ id: String, _ outcome: Selector.Outcome) throws {
            let s = try selector.select([Self.service], exclude: Set(["a", "b", "c"]).subtracting([id]))
            #expect(s.node.id == id)
            selector.finish(s, outcome: outcome)
        }
        try fail("c", .connectFailure)
        #expect(selector.isEjected("c"))
        #expect(try counts(selector, 20).keys.sorted() == ["a", "b"])
        clock.advance(.milliseconds(1001))
        #expect(!selector.isEjected("c"))
        // ejected again at once: twice as long
        try fail("c", .connectFailure)
        clock.advance(.milliseconds(1500))
        #expect(selector.isEjected("c"))
        clock.advance(.milliseconds(600))
        #expect(!selector.isEjected("c"))
        try fail("c", .connectFailure)
        try fail("c", .connectFailure)  // third: 4 s, the cap
        clock.advance(.seconds(4) + .milliseconds(1))
        #expect(!selector.isEjected("c"))
        // a success clears the record: the next ejection is back to 1 s
        try fail("c", .success)
        try fail("c", .connectFailure)
        clock.advance(.milliseconds(1001))
        #expect(!selector.isEjected("c"))
    }

    @Test func consecutiveErrorsEject() throws {
        let clock = ManualClock()
        let selector = Selector(strategy: .roundRobin, ejection: .init(consecutiveFailures: 3), now: { clock.nanoseconds })
        let others: Set<String> = ["a", "b"]
        for i in 0..<3 {
            #expect(!selector.isEjected("c"), "ejected after \(i) failures")
            let s = try selector.select([Self.service], exclude: others)
            selector.finish(s, outcome: .failure)
        }
        #expect(selector.isEjected("c"))
    }

    @Test func allEjectedFailsOpen() throws {
        let selector = Selector(strategy: .roundRobin)
        for id in ["a", "b", "c"] {
            let s = try selector.select([Self.service], exclude: Set(["a", "b", "c"]).subtracting([id]))
            selector.finish(s, outcome: .connectFailure)
        }
        // every node out of rotation: calls still go somewhere, to each in turn
        let chosen = try (0..<3).map { _ in try selector.select([Self.service]).node.id }
        #expect(Set(chosen) == ["a", "b", "c"])
    }
}
