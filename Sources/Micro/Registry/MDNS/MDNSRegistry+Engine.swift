import Foundation
import Logging
import MicroCore
import Synchronization

/// The registry's state and its packet handling. All of it is in one `Mutex`; what it decides to
/// do (datagrams, watch events, waking lookups) is collected as ``Effects`` and done after the
/// lock is released.
extension MDNSRegistry {
    struct Published {
        var zone: MDNSZone
        /// When the node's records were last multicast on each interface: at most once a
        /// second (RFC 6762 §6), which also bounds what a flood of queries can make us send.
        var lastMulticast: [UInt32: ContinuousClock.Instant]
    }

    struct Watcher {
        var service: String?
        var handler: @Sendable (RegistryEvent) -> Void
    }

    /// The sockets of each family: one on 5353 joined to the group (announcements, answers,
    /// continuous queries), one on an ephemeral port for one-shot queries (RFC 6762 §5.1), whose
    /// answers come back by unicast and so reach this process even when others share 5353.
    struct Sockets: Sendable {
        var multicast: [DatagramSocket] = []
        var oneShot: [DatagramSocket] = []
        var interfaces: [NetworkInterface] = []
        var all: [DatagramSocket] { multicast + oneShot }
    }

    enum Phase {
        case idle
        case starting([CheckedContinuation<Bool, Never>])
        case started(Sockets)
        case closed
    }

    struct State {
        var phase = Phase.idle
        var zones: [String: Published] = [:]
        var cache = MDNSCache()
        /// The nodes the cache describes, as last reported to watchers.
        var known: [String: ServiceRecord] = [:]
        var watchers: [Int: Watcher] = [:]
        var nextID = 0
        /// `getService` calls waiting for a first node of a service.
        var waiters: [Int: (service: String, continuation: CheckedContinuation<Void, Never>)] = [:]
        var finishedWaiters: Set<Int> = []
        var announcements: [(due: ContinuousClock.Instant, node: String)] = []
        /// Cache records already queried again near the end of their TTL.
        var refreshed: Set<MDNSCache.Key> = []
        var timer: (task: Task<Void, Never>, due: ContinuousClock.Instant)?

        var sockets: Sockets? {
            if case .started(let sockets) = phase { return sockets }
            return nil
        }

        /// Takes the chosen interfaces' current addresses from `all`.
        mutating func refreshInterfaces(from all: [NetworkInterface]) {
            guard case .started(var sockets) = phase else { return }
            let indexes = Set(sockets.interfaces.map(\.index))
            let fresh = all.filter { indexes.contains($0.index) }
            if !fresh.isEmpty { sockets.interfaces = fresh }
            phase = .started(sockets)
        }
    }

    struct Effects {
        var datagrams: [(socket: DatagramSocket, bytes: [UInt8], to: DatagramSocket.Address, interface: UInt32)] = []
        var events: [(handler: @Sendable (RegistryEvent) -> Void, event: RegistryEvent)] = []
        var wake: [CheckedContinuation<Void, Never>] = []
    }

    // MARK: - start

    /// Opens the sockets once; concurrent callers wait for the first.
    func start() async {
        let mustOpen: Bool = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer: Bool? = state.withLock { state in
                switch state.phase {
                case .started, .closed: return false
                case .idle:
                    state.phase = .starting([])
                    return true
                case .starting(var waiting):
                    waiting.append(continuation)
                    state.phase = .starting(waiting)
                    return nil
                }
            }
            if let answer { continuation.resume(returning: answer) }
        }
        guard mustOpen else { return }
        let sockets = await openSockets()
        let waiting = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard case .starting(let waiting) = state.phase else { return [] }
            state.phase = .started(sockets)
            return waiting
        }
        for continuation in waiting { continuation.resume(returning: false) }
    }

    static func chooseInterfaces(_ configured: [String]?) -> [NetworkInterface] {
        let all = NetworkInterface.all()
        if let configured { return all.filter { configured.contains($0.name) } }
        return all.filter { $0.isUp && $0.supportsMulticast && !$0.isLoopback }
    }

    private func openSockets() async -> Sockets {
        var sockets = Sockets()
        sockets.interfaces = Self.chooseInterfaces(configuration.interfaces)
        guard !sockets.interfaces.isEmpty else {
            logger.warning("mDNS: no interface to use (MICRO_MDNS_INTERFACE=\(configuration.interfaces?.joined(separator: ",") ?? "unset"))")
            return sockets
        }
        let indexes = sockets.interfaces.map(\.index)
        for (family, group) in [(DatagramSocket.Family.v4, Self.groupV4), (.v6, Self.groupV6)] {
            do {
                let multicast = try await DatagramSocket.open(on: loop, family: family, port: Self.port, joining: group, interfaces: indexes) {
                    [weak self] datagram in self?.received(datagram, oneShot: false)
                }
                sockets.multicast.append(multicast)
                let oneShot = try await DatagramSocket.open(on: loop, family: family, port: 0, joining: nil, interfaces: []) {
                    [weak self] datagram in self?.received(datagram, oneShot: true)
                }
                sockets.oneShot.append(oneShot)
            } catch {
                logger.info("mDNS over \(family == .v4 ? "IPv4" : "IPv6") is off: \(error)")
            }
        }
        logger.debug("mDNS on \(sockets.interfaces.map(\.name).joined(separator: ", "))")
        return sockets
    }

    // MARK: - receiving

    /// One datagram from the network (loop thread). Anything malformed is dropped here.
    func received(_ datagram: DatagramSocket.Datagram, oneShot: Bool) {
        guard let message = try? DNSMessage(parsing: datagram.bytes), message.opcode == 0, message.rcode == 0 else { return }
        let now = ContinuousClock.now
        let effects = state.withLock { state -> Effects in
            var effects = Effects()
            guard let sockets = state.sockets, let interface = sockets.interfaces.first(where: { $0.index == datagram.interfaceIndex })
            else { return effects }  // not from an interface we use
            if message.isResponse {
                // RFC 6762 §6: responses come from port 5353
                guard datagram.source.port == Self.port else { return effects }
                var changed = false
                for record in message.answers + message.additionals {
                    changed = state.cache.insert(record, now: now, interface: datagram.interfaceIndex) || changed
                    // a record heard afresh is queried again near the end of its new TTL
                    state.refreshed.remove(MDNSCache.Key(name: record.name, data: record.data))
                }
                if changed { updateView(&state, effects: &effects) }
                schedule(&state, now: now)
            } else if !oneShot {
                answer(message, from: datagram.source, on: interface, sockets: sockets, now: now, state: &state, effects: &effects)
            }
            return effects
        }
        performOnLoop(effects)
    }

    /// Answers a query with the records of each published node, one message per node (a client
    /// such as hashicorp/mdns completes one entry per message).
    private func answer(
        _ query: DNSMessage, from source: DatagramSocket.Address, on interface: NetworkInterface, sockets: Sockets,
        now: ContinuousClock.Instant, state: inout State, effects: inout Effects
    ) {
        guard let socket = sockets.multicast.first(where: { $0.family == source.family }) else { return }
        // a query from another port than 5353 is a legacy or one-shot query: answer it alone, by
        // unicast, echoing its id and questions, with short TTLs and no cache-flush bits (§6.7)
        let legacy = source.port != Self.port
        let known = Set(query.answers.map { MDNSCache.Key(name: $0.name, data: $0.data) })
        let knownTTL = Dictionary(query.answers.map { (MDNSCache.Key(name: $0.name, data: $0.data), $0.ttl) }) { max($0, $1) }
        for id in state.zones.keys.sorted() {
            guard var published = state.zones[id] else { continue }
            var answers: [DNSRecord] = []
            var additionals: [DNSRecord] = []
            for question in query.questions {
                let result = published.zone.answer(question, ipv4: interface.ipv4, ipv6: interface.ipv6)
                answers += result.answers
                additionals += result.additionals
            }
            // known-answer suppression (§7.1): the asker holds it with at least half our TTL
            answers = answers.filter { record in
                let key = MDNSCache.Key(name: record.name, data: record.data)
                return !known.contains(key) || (knownTTL[key] ?? 0) < record.ttl / 2
            }
            guard !answers.isEmpty else { continue }
            var seen = Set(answers)
            additionals = additionals.filter { seen.insert($0).inserted }
            var message = DNSMessage(flags: DNSMessage.responseFlag | DNSMessage.authoritativeFlag)
            var destination = DatagramSocket.Address(ip: source.family == .v4 ? Self.groupV4 : Self.groupV6, port: Self.port)
            if legacy {
                message.id = query.id
                message.questions = query.questions
                answers = answers.map(Self.legacy)
                additionals = additionals.map(Self.legacy)
                destination = source
            } else {
                if let last = published.lastMulticast[interface.index], now - last < .seconds(1) { continue }
                published.lastMulticast[interface.index] = now
                state.zones[id] = published
            }
            message.answers = answers
            message.additionals = additionals
            guard let bytes = try? message.encoded() else { continue }
            effects.datagrams.append((socket, bytes, destination, interface.index))
        }
    }

    private static func legacy(_ record: DNSRecord) -> DNSRecord {
        var record = record
        record.ttl = min(record.ttl, legacyTTL)
        record.rawClass &= 0x7FFF
        return record
    }

    /// Recomputes the nodes from the cache; watchers hear of the differences, lookups waiting for
    /// a service that now has a node are woken.
    func updateView(_ state: inout State, effects: inout Effects) {
        let nodes = state.cache.nodes(names: names)
        let events = diff(state.known, nodes)
        state.known = nodes
        for event in events {
            for watcher in state.watchers.values where watcher.service == nil || watcher.service == event.service.name {
                effects.events.append((watcher.handler, event))
            }
        }
        let services = Set(nodes.values.map(\.name))
        for (id, waiter) in state.waiters where services.contains(waiter.service) {
            state.waiters[id] = nil
            state.finishedWaiters.insert(id)
            effects.wake.append(waiter.continuation)
        }
    }

    // MARK: - sending

    /// The node's records (or its goodbyes), multicast on every interface in both families.
    func announce(_ zone: MDNSZone, ttlZero: Bool, state: inout State, effects: inout Effects) {
        guard let sockets = state.sockets else { return }
        let now = ContinuousClock.now
        for interface in sockets.interfaces {
            let records =
                ttlZero
                ? zone.goodbye(ipv4: interface.ipv4, ipv6: interface.ipv6) : zone.announcement(ipv4: interface.ipv4, ipv6: interface.ipv6)
            let message = DNSMessage(flags: DNSMessage.responseFlag | DNSMessage.authoritativeFlag, answers: records)
            guard let bytes = try? message.encoded() else { continue }
            for socket in sockets.multicast {
                let group = socket.family == .v4 ? Self.groupV4 : Self.groupV6
                effects.datagrams.append((socket, bytes, DatagramSocket.Address(ip: group, port: Self.port), interface.index))
            }
            if !ttlZero { state.zones[zone.nodeID]?.lastMulticast[interface.index] = now }
        }
    }

    /// Multicasts a query on every interface, from the one-shot sockets (answers come back by
    /// unicast) or from 5353 (answers are multicast, refreshing every cache on the link).
    func query(_ questions: [DNSQuestion], oneShot: Bool = true) async {
        let effects = state.withLock { state in queryEffects(questions, oneShot: oneShot, state: state) }
        await perform(effects)
    }

    private func queryEffects(_ questions: [DNSQuestion], oneShot: Bool, state: State) -> Effects {
        var effects = Effects()
        guard let sockets = state.sockets, let bytes = try? DNSMessage(questions: questions).encoded() else { return effects }
        for interface in sockets.interfaces {
            for socket in oneShot ? sockets.oneShot : sockets.multicast {
                let group = socket.family == .v4 ? Self.groupV4 : Self.groupV6
                effects.datagrams.append((socket, bytes, DatagramSocket.Address(ip: group, port: Self.port), interface.index))
            }
        }
        return effects
    }

    /// Does the effects on the loop and returns once the datagrams are handed to the kernel.
    func perform(_ effects: Effects) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            loop.execute {
                self.performOnLoop(effects)
                continuation.resume()
            }
        }
    }

    func performOnLoop(_ effects: Effects) {
        for datagram in effects.datagrams { datagram.socket.send(datagram.bytes, to: datagram.to, interface: datagram.interface) }
        for (handler, event) in effects.events { handler(event) }
        for continuation in effects.wake { continuation.resume() }
    }

    // MARK: - timers

    /// (Re)arms the one timer at the earliest of: a repeated announcement, a cache expiry, a
    /// refresh query (while anyone watches).
    func schedule(_ state: inout State, now: ContinuousClock.Instant) {
        var due = state.announcements.map(\.due).min()
        if let expiry = state.cache.nextExpiry { due = min(due ?? expiry, expiry) }
        if !state.watchers.isEmpty, let refresh = nextRefresh(state).map(\.due) { due = min(due ?? refresh, refresh) }
        guard let due else { return }
        if let timer = state.timer, timer.due <= due { return }
        state.timer?.task.cancel()
        let task = Task(executorPreference: loop) { [weak self] in
            guard (try? await Task.sleep(until: due, tolerance: .milliseconds(10))) != nil else { return }
            self?.tick()
        }
        state.timer = (task, due)
    }

    private func nextRefresh(_ state: State) -> (due: ContinuousClock.Instant, key: MDNSCache.Key)? {
        var best: (due: ContinuousClock.Instant, key: MDNSCache.Key)?
        for (key, entry) in state.cache.entries where key.data.type == DNSType.srv && !state.refreshed.contains(key) {
            let due = entry.received + .seconds(Double(entry.record.ttl) * 0.8)
            if best == nil || due < best!.due { best = (due, key) }
        }
        return best
    }

    private func tick() {
        let now = ContinuousClock.now
        let effects = state.withLock { state -> Effects in
            var effects = Effects()
            state.timer = nil
            let due = state.announcements.filter { $0.due <= now }
            state.announcements.removeAll { $0.due <= now }
            for item in due {
                if let zone = state.zones[item.node]?.zone { announce(zone, ttlZero: false, state: &state, effects: &effects) }
            }
            if state.cache.expire(now: now) {
                state.refreshed = state.refreshed.filter { state.cache.entries[$0] != nil }
                updateView(&state, effects: &effects)
            }
            if !state.watchers.isEmpty {
                // ask again for the instances whose SRV records near the end of their TTL
                var questions: [DNSQuestion] = []
                while let next = nextRefresh(state), next.due <= now {
                    state.refreshed.insert(next.key)
                    questions.append(DNSQuestion(name: next.key.name, type: DNSType.any))
                }
                if !questions.isEmpty {
                    let query = queryEffects(Array(Set(questions)), oneShot: false, state: state)
                    effects.datagrams += query.datagrams
                }
            }
            schedule(&state, now: now)
            return effects
        }
        performOnLoop(effects)
    }

    // MARK: - lookups

    /// Waits until the cache describes a node of `service` or `timeout` passes; true if found.
    func waitForNode(of service: String, timeout: Duration) async -> Bool {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { state -> Bool in
                        if state.finishedWaiters.contains(id) || state.known.values.contains(where: { $0.name == service }) {
                            return true
                        }
                        state.waiters[id] = (service, continuation)
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.finishWaiter(id)
            }
            await group.next()
            group.cancelAll()
        }
        return state.withLock { state in
            state.finishedWaiters.remove(id)
            return state.known.values.contains { $0.name == service }
        }
    }

    /// Wakes a waiting lookup (or marks it done, if it has not started waiting yet).
    private func finishWaiter(_ id: Int) {
        let continuation = state.withLock { state in
            state.finishedWaiters.insert(id)
            return state.waiters.removeValue(forKey: id)?.continuation
        }
        continuation?.resume()
    }
}
