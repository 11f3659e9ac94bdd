import Foundation
import MicroCore
import Synchronization

/// How a ``Selector`` picks a node among those that may serve a call.
public enum SelectionStrategy: String, Sendable, Hashable, CaseIterable {
    /// Uniformly at random.
    case random
    /// In turn, with one cursor per service that lives as long as the selector (go-micro resets
    /// its cursor on every call, which makes it random in disguise).
    case roundRobin
    /// The node with the fewest calls in flight from this client; ties broken at random.
    case leastOutstanding
    /// Two nodes at random, then the one with the lower peak-EWMA latency × (calls in flight + 1).
    /// Adapts to slow nodes within a few calls and costs two lookups: the default.
    case powerOfTwoChoices
}

/// Restricts which nodes may be chosen.
public struct NodeFilter: Sendable {
    public let matches: @Sendable (_ service: ServiceRecord, _ node: Node) -> Bool

    public init(_ matches: @escaping @Sendable (_ service: ServiceRecord, _ node: Node) -> Bool) {
        self.matches = matches
    }

    /// Only nodes of this service version.
    public static func version(_ version: String) -> NodeFilter {
        NodeFilter { service, _ in service.version == version }
    }

    /// Only nodes labelled `key=value` (node metadata first, then the service's).
    public static func label(_ key: String, _ value: String) -> NodeFilter {
        NodeFilter { service, node in (node.metadata[key] ?? service.metadata[key]) == value }
    }
}

/// When a node is taken out of rotation: at once after a connect failure, or after
/// `consecutiveFailures` failed calls in a row. It stays out for `baseEjection`, doubled on each
/// ejection in a row up to `maxEjection`; one success resets both counts.
public struct EjectionPolicy: Sendable {
    public var consecutiveFailures: Int
    public var baseEjection: Duration
    public var maxEjection: Duration

    public init(consecutiveFailures: Int = 5, baseEjection: Duration = .seconds(1), maxEjection: Duration = .seconds(30)) {
        self.consecutiveFailures = max(1, consecutiveFailures)
        self.baseEjection = baseEjection
        self.maxEjection = maxEjection
    }
}

/// A node chosen for one call; hand it back to ``Selector/finish(_:outcome:)`` when the call ends.
public struct Selection: Sendable {
    public let service: ServiceRecord
    public let node: Node
    /// When it was chosen (``Monotonic`` nanoseconds of the selector's clock).
    let started: Int64
    /// What the selector knows of the node: `finish` updates it without looking the node up.
    let stats: Selector.NodeStats
}

/// Chooses a node for each call and learns from how calls end: latency (peak EWMA), calls in
/// flight, failures (ejection). One selector serves many services; its state is per node id.
///
/// Threading: any thread; one short lock per `select` and per `finish`.
public final class Selector: Sendable {
    public enum Outcome: Sendable {
        /// The node answered (even with an application error).
        case success
        /// The call failed at the node (reset, 503, timeout).
        case failure
        /// No connection could be made.
        case connectFailure
    }

    public let strategy: SelectionStrategy
    public let ejection: EjectionPolicy
    /// The clock, in nanoseconds (``Monotonic``; tests pass a manual one).
    private let now: @Sendable () -> Int64
    private let baseEjection: Int64
    private let maxEjection: Int64

    /// The decay time of the latency estimate: samples older than this weigh less than 1/e.
    static let decay: Double = 10e9  // ns
    /// The cost of a node that has calls in flight but no latency sample yet, so that a node
    /// that never answers is not flooded.
    static let unknownPenalty: Double = 1e9  // ns

    /// One node's record. An object, so that a selection carries it to `finish` (one lookup by
    /// node id per call instead of three).
    ///
    /// @unchecked Sendable: every field is read and written under the selector's lock only.
    final class NodeStats: @unchecked Sendable {
        var outstanding = 0
        var cost: Double = 0  // peak EWMA of latency, ns
        var sampled: Int64?
        var consecutiveFailures = 0
        var ejections = 0
        var ejectedUntil: Int64?
        var lastUsed: Int64

        init(lastUsed: Int64) { self.lastUsed = lastUsed }

        func isEjected(at now: Int64) -> Bool { ejectedUntil.map { $0 > now } ?? false }
    }

    struct State {
        var nodes: [String: NodeStats] = [:]
        var cursors: [String: Int] = [:]
        var selections = 0
        /// The records of the nodes of the lists picked from lately, by list: the registry cache
        /// hands out the same array until the service changes, so a pick finds its node's record
        /// by index instead of hashing the node's id. Emptied when records are pruned.
        var memos: [Memo] = []
        var nextMemo = 0

        final class Memo {
            /// Held, so that its buffer's address names this list for as long as the memo lives.
            let nodes: [Node]
            var stats: [NodeStats?]
            /// Each node as picks hand it out, with what a client needs of it read once per list.
            let picked: [PickedNode]

            init(_ nodes: [Node]) {
                self.nodes = nodes
                stats = Array(repeating: nil, count: nodes.count)
                picked = nodes.map(PickedNode.init)
            }

            func holds(_ other: [Node]) -> Bool {
                nodes.count == other.count
                    && nodes.withUnsafeBufferPointer { mine in other.withUnsafeBufferPointer { $0.baseAddress == mine.baseAddress } }
            }
        }

        /// The node's record, made on first use.
        mutating func stats(_ id: String, _ now: Int64) -> NodeStats {
            if let known = nodes[id] { return known }
            let made = NodeStats(lastUsed: now)
            nodes[id] = made
            return made
        }

        /// The memo of a node list, made on first use.
        mutating func memo(of nodes: [Node]) -> Memo {
            if let known = memos.first(where: { $0.holds(nodes) }) { return known }
            let made = Memo(nodes)
            if memos.count < 4 {
                memos.append(made)
            } else {
                memos[nextMemo] = made
                nextMemo = (nextMemo + 1) % 4
            }
            return made
        }

        /// The record of `nodes[index]`, from the list's memo when it has one.
        mutating func stats(_ memo: Memo?, _ nodes: [Node], _ index: Int, _ now: Int64) -> NodeStats {
            guard let memo else { return stats(nodes[index].id, now) }
            if let known = memo.stats[index] { return known }
            let found = stats(nodes[index].id, now)
            memo.stats[index] = found
            return found
        }
    }

    private let state = Mutex(State())

    public convenience init(strategy: SelectionStrategy = .powerOfTwoChoices, ejection: EjectionPolicy = .init()) {
        self.init(strategy: strategy, ejection: ejection, now: Monotonic.now)
    }

    /// - Parameter now: the clock in nanoseconds; tests pass a manual one.
    init(strategy: SelectionStrategy, ejection: EjectionPolicy, now: @escaping @Sendable () -> Int64) {
        self.strategy = strategy
        self.ejection = ejection
        self.now = now
        baseEjection = Monotonic.nanoseconds(ejection.baseEjection)
        maxEjection = Monotonic.nanoseconds(ejection.maxEjection)
    }

    /// Chooses a node of `services` (all versions of one service) that passes every filter and is
    /// not in `exclude` (node ids already tried by this call). Ejected nodes are skipped unless
    /// every candidate is ejected: then all are candidates again (fail open, never fail closed).
    public func select(_ services: [ServiceRecord], filters: [NodeFilter] = [], exclude: Set<String> = []) throws -> Selection {
        try select(services, filters: filters, tried: exclude.isEmpty ? nil : { exclude.contains($0) })
    }

    /// `tried`: whether a node id was tried by this call already (nil: none was).
    func select(_ services: [ServiceRecord], filters: [NodeFilter], tried: ((String) -> Bool)?) throws -> Selection {
        let pick = try self.pick(services, filters: filters, tried: tried, now: now())
        return Selection(service: services[pick.service], node: pick.node, started: pick.started, stats: pick.stats)
    }

    /// What the client keeps of a selection: the node, shared, not its service record or a
    /// copy of the node (each costs a reference count per field, per copy).
    struct Pick {
        /// The index of the node's version in the services selected from.
        let service: Int
        let chosen: Chosen
        let started: Int64
        let stats: NodeStats

        /// The node: the shared object of the list's memo (picks from the registry cache's lists,
        /// nearly every call by name), or the node itself (no object is made for a pick that may
        /// need none, such as a public ``Selector/select(_:filters:exclude:)``).
        enum Chosen {
            case shared(PickedNode)
            case node(Node)
        }

        var node: Node {
            switch chosen {
            case .shared(let picked): picked.node
            case .node(let node): node
            }
        }

        /// The node as one shared object: the memo's, or one made now.
        var picked: PickedNode {
            switch chosen {
            case .shared(let picked): picked
            case .node(let node): PickedNode(node)
            }
        }
    }

    /// ``select(_:filters:tried:)`` at `now`, a time of this selector's clock the caller read
    /// already. `held`: the caller keeps `services` and passes the same lists again (the registry
    /// cache's answer), so a memo of its node lists pays (a list made for one call would only
    /// cost the memo's allocations).
    func pick(_ services: [ServiceRecord], filters: [NodeFilter], tried: ((String) -> Bool)?, now: Int64, held: Bool = false) throws -> Pick {
        // the usual call: one version, no filters, first attempt; random picks need no list
        if services.count == 1, filters.isEmpty, tried == nil, strategy == .powerOfTwoChoices || strategy == .random,
           let pick = state.withLock({ state in Self.pickDirectly(services[0].nodes, strategy, &state, now, held: held) }) {
            return pick
        }
        return try selectAmongCandidates(services, filters: filters, tried: tried, now: now)
    }

    /// p2c or random straight from a node list, when the nodes drawn are not ejected (else nil:
    /// the general path filters the list).
    private static func pickDirectly(_ nodes: [Node], _ strategy: SelectionStrategy, _ state: inout State,
                                     _ now: Int64, held: Bool) -> Pick? {
        guard !nodes.isEmpty else { return nil }
        let a = nodes.count == 1 ? 0 : Int.random(in: 0..<nodes.count)
        let memo = held ? state.memo(of: nodes) : nil
        let statsA = state.stats(memo, nodes, a, now)
        guard !statsA.isEjected(at: now) else { return nil }
        var index = a, chosen = statsA
        if strategy == .powerOfTwoChoices && nodes.count > 1 {
            var b = Int.random(in: 0..<(nodes.count - 1))
            if b >= a { b += 1 }
            let statsB = state.stats(memo, nodes, b, now)
            guard !statsB.isEjected(at: now) else { return nil }
            if load(statsB, now) < load(statsA, now) { (index, chosen) = (b, statsB) }
        }
        take(chosen, &state, now)
        return Pick(service: 0, chosen: memo.map { .shared($0.picked[index]) } ?? .node(nodes[index]), started: now, stats: chosen)
    }

    private static func take(_ stats: NodeStats, _ state: inout State, _ now: Int64) {
        stats.outstanding += 1
        stats.lastUsed = now
        state.selections &+= 1
        if state.selections % 4096 == 0 { prune(&state, now) }
    }

    private func selectAmongCandidates(_ services: [ServiceRecord], filters: [NodeFilter], tried: ((String) -> Bool)?,
                                       now: Int64) throws -> Pick {
        var candidates: [(service: Int, node: Node)] = []
        for (index, service) in services.enumerated() {
            for node in service.nodes where filters.allSatisfy({ $0.matches(service, node) }) {
                candidates.append((index, node))
            }
        }
        let name = services.first?.name ?? "?"
        guard !candidates.isEmpty else {
            let detail = services.allSatisfy({ $0.nodes.isEmpty })
                ? "service \(name) not found"
                : "no node of service \(name) matches the call's filters"
            throw MicroError(id: "micro.client", code: 500, detail: detail)
        }
        if let tried {
            let untried = candidates.filter { !tried($0.node.id) }
            if !untried.isEmpty { candidates = untried }
        }
        return state.withLock { state in
            var healthy = candidates.filter { !(state.nodes[$0.node.id]?.isEjected(at: now) ?? false) }
            if healthy.isEmpty { healthy = candidates }
            let index: Int
            switch strategy {
            case .random:
                index = Int.random(in: 0..<healthy.count)
            case .roundRobin:
                healthy.sort { $0.node.id < $1.node.id }
                let cursor = state.cursors[name, default: 0]
                index = cursor % healthy.count
                state.cursors[name] = cursor &+ 1
            case .leastOutstanding:
                let loads = healthy.map { state.nodes[$0.node.id]?.outstanding ?? 0 }
                let least = loads.min()!
                let ties = loads.indices.filter { loads[$0] == least }
                index = ties.randomElement()!
            case .powerOfTwoChoices:
                if healthy.count == 1 {
                    index = 0
                } else {
                    let a = Int.random(in: 0..<healthy.count)
                    var b = Int.random(in: 0..<(healthy.count - 1))
                    if b >= a { b += 1 }
                    index = Self.load(state.nodes[healthy[a].node.id], now) <= Self.load(state.nodes[healthy[b].node.id], now) ? a : b
                }
            }
            let chosen = healthy[index]
            let stats = state.stats(chosen.node.id, now)
            Self.take(stats, &state, now)
            return Pick(service: chosen.service, chosen: .node(chosen.node), started: now, stats: stats)
        }
    }

    /// Records how a call on `selection` ended.
    public func finish(_ selection: Selection, outcome: Outcome) {
        finish(selection.stats, started: selection.started, outcome: outcome)
    }

    /// Records how a call on a node (its record, chosen at `started`) ended.
    func finish(_ stats: NodeStats, started: Int64, outcome: Outcome) {
        let now = self.now()
        let latency = Double(now - started)
        state.withLock { _ in
            stats.outstanding = max(0, stats.outstanding - 1)
            stats.lastUsed = now
            // peak EWMA: a slower sample is taken whole, a faster one blends in with a weight
            // that grows with the time since the last sample
            if let sampled = stats.sampled, latency < stats.cost {
                let w = Self.weight(since: Double(now - sampled))
                stats.cost = stats.cost * w + latency * (1 - w)
            } else {
                stats.cost = latency
            }
            stats.sampled = now
            switch outcome {
            case .success:
                stats.consecutiveFailures = 0
                stats.ejections = 0
                stats.ejectedUntil = nil
            case .failure, .connectFailure:
                stats.consecutiveFailures += 1
                if outcome == .connectFailure || stats.consecutiveFailures >= ejection.consecutiveFailures {
                    stats.ejections += 1
                    var period = baseEjection
                    for _ in 1..<min(stats.ejections, 16) where period < maxEjection {
                        period = period > maxEjection / 2 ? maxEjection : period * 2
                    }
                    let until = now.addingReportingOverflow(min(period, maxEjection))
                    stats.ejectedUntil = until.overflow ? .max : until.partialValue
                    stats.consecutiveFailures = 0
                }
            }
        }
    }

    /// Whether the node is out of rotation now.
    public func isEjected(_ nodeID: String) -> Bool {
        let now = self.now()
        return state.withLock { $0.nodes[nodeID]?.isEjected(at: now) ?? false }
    }

    /// Calls in flight on the node, as this selector counts them.
    public func outstanding(_ nodeID: String) -> Int {
        state.withLock { $0.nodes[nodeID]?.outstanding ?? 0 }
    }

    /// The weight the cost so far keeps after `since` nanoseconds: e^(-since/decay). Samples
    /// under load come microseconds apart, where the series' first terms are exact to a double's
    /// precision (x < 1e-4: the next term is below 1e-17) and cost a tenth of `exp`.
    static func weight(since: Double) -> Double {
        let x = max(0, since) / decay  // (two finishes racing to the lock may see time run back)
        guard x < 1e-4 else { return exp(-x) }
        return 1 - x + x * x / 2 - x * x * x / 6
    }

    private static func load(_ stats: NodeStats?, _ now: Int64) -> Double {
        guard let stats else { return 0 }
        let cost = stats.sampled == nil ? (stats.outstanding > 0 ? unknownPenalty : 0) : stats.cost
        return cost * Double(stats.outstanding + 1)
    }

    /// Forgets idle nodes not used for five minutes (nodes come and go; the table must not grow).
    /// A selection still holding a forgotten record updates it harmlessly.
    private static func prune(_ state: inout State, _ now: Int64) {
        state.memos = []
        state.nodes = state.nodes.filter { _, stats in
            stats.outstanding > 0 || now - stats.lastUsed < 300_000_000_000 || stats.isEjected(at: now)
        }
    }
}

/// A node as a selection hands it on, to the call and to the ``ClientResponse`` it answers:
/// one reference, where a copy of the node costs one per field. Made once per node list by the
/// selector's memo, with what a client reads of the node's metadata on every call.
final class PickedNode: Sendable {
    let node: Node
    /// ``Node/requiresTLS`` and ``Node/httpVersion``.
    let requiresTLS: Bool
    let httpVersion: HTTPClient.Version

    init(_ node: Node) {
        self.node = node
        requiresTLS = node.requiresTLS
        httpVersion = node.httpVersion
    }
}
