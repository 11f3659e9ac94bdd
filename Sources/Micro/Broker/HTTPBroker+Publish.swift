import Foundation
import Logging
import MicroCore
import Synchronization

extension HTTPBroker {
    public func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions = .init()) async throws {
        var message = message
        message.header["Micro-Topic"] = topic
        if message.header["Micro-Id"] == nil { message.header["Micro-Id"] = UUID().uuidString.lowercased() }
        let body: [UInt8]
        do {
            body = Array(try JSONEncoder().encode(message))
        } catch {
            throw MicroError(id: "micro.broker", code: 400, detail: "cannot encode the message: \(error)")
        }
        let admitted = state.withLock { state -> Bool in
            guard state.pending[topic, default: 0] < policy.queueLimit else { return false }
            state.pending[topic, default: 0] += 1
            return true
        }
        guard admitted else {
            throw MicroError(id: "micro.broker", code: 503, detail: "the broker queue for \(topic) is full (\(policy.queueLimit) messages in delivery)")
        }
        let id = message.header["Micro-Id"]!
        switch options.wait {
        case .delivered:
            defer { release(topic) }
            if let failure = await deliver(topic: topic, id: id, body: body) { throw failure }
        case .queued:
            // the delivery outlives publish(): a task of its own, bounded by the retry window
            Task {
                defer { self.release(topic) }
                _ = await self.deliver(topic: topic, id: id, body: body)
            }
        }
    }

    private func release(_ topic: String) {
        state.withLock { state in
            state.pending[topic, default: 1] -= 1
            if state.pending[topic] == 0 { state.pending[topic] = nil }
        }
    }

    /// Delivers one message to every subscriber group of `topic` known at its first lookup: every
    /// node of the broadcast group (nodes that appear later, such as a restarted subscriber, get it
    /// too), one node of each queue group. Retries what failed until done, `maxAttempts` rounds or
    /// `retryWindow`; returns the error if it gave up (logged and counted as dropped).
    func deliver(topic: String, id: String, body: [UInt8]) async -> MicroError? {
        let started = ContinuousClock.now
        var groups: Set<String>?
        var done: Set<String> = []
        var acknowledged: Set<String> = []  // node ids (broadcast group)
        var failures: [String: Int] = [:]  // node id -> failed deliveries
        var lastError = "no subscriber answered"
        var round = 0
        while true {
            var byGroup: [String: [Node]] = [:]
            do {
                for record in try await cache.get(Self.serviceName) {
                    let nodes = record.nodes.filter { $0.metadata["broker"] == "http" && $0.metadata["topic"] == topic }
                    if !nodes.isEmpty { byGroup[record.version, default: []] += nodes }
                }
                if groups == nil {
                    groups = Set(byGroup.keys)
                    if groups!.isEmpty {
                        logger.debug("no subscriber for \(topic); message \(id) not delivered")
                        return nil
                    }
                }
            } catch {
                lastError = "registry lookup failed: \(error)"
            }
            if let groups {
                // one round: every unfinished group at once
                let outcomes = await withTaskGroup(of: (String, [String: Bool]).self) { tasks in
                    for group in groups.subtracting(done) {
                        let nodes = byGroup[group] ?? []
                        let targets: [Node]
                        if group == Self.broadcast {
                            targets = nodes.filter { !acknowledged.contains($0.id) }
                        } else {
                            // one member: the one that failed least, at random among equals
                            let least = nodes.map { failures[$0.id, default: 0] }.min()
                            targets = nodes.filter { failures[$0.id, default: 0] == least }.randomElement().map { [$0] } ?? []
                        }
                        tasks.addTask {
                            var results: [String: Bool] = [:]
                            await withTaskGroup(of: (String, Bool).self) { posts in
                                for node in targets {
                                    posts.addTask { (node.id, await self.post(body, to: node, topic: topic)) }
                                }
                                for await (node, ok) in posts { results[node] = ok }
                            }
                            return (group, results)
                        }
                    }
                    var all: [(String, [String: Bool])] = []
                    for await outcome in tasks { all.append(outcome) }
                    return all
                }
                for (group, results) in outcomes {
                    for (node, ok) in results {
                        if ok { acknowledged.insert(node) } else { failures[node, default: 0] += 1 }
                    }
                    let nodes = byGroup[group] ?? []
                    if group == Self.broadcast {
                        // finished when every live member has it (members that left need nothing)
                        if nodes.allSatisfy({ acknowledged.contains($0.id) }) { done.insert(group) }
                    } else if results.values.contains(true) {
                        done.insert(group)
                    }
                }
                if done.isSuperset(of: groups) {
                    BrokerMetrics.delivered(topic: topic)
                    return nil
                }
                lastError = "\(groups.subtracting(done).sorted()) not acknowledged"
            }
            round += 1
            if round >= policy.maxAttempts || ContinuousClock.now - started >= policy.retryWindow {
                logger.error("dropping message \(id) on \(topic) after \(round) delivery rounds: \(lastError)")
                BrokerMetrics.dropped(topic: topic)
                return MicroError(id: "micro.broker", code: 503, detail: "message \(id) on \(topic) not delivered: \(lastError)")
            }
            BrokerMetrics.retried(topic: topic)
            cache.invalidate(Self.serviceName)
            try? await Task.sleep(for: backoff(round))
        }
    }

    private func backoff(_ round: Int) -> Duration {
        var cap = policy.backoff
        for _ in 1..<min(round, 20) where cap < policy.maxBackoff { cap *= 2 }
        cap = min(cap, policy.maxBackoff)
        let ns = cap.nanosecondsValue
        return .nanoseconds(Int64(Double.random(in: ns / 2...ns)))
    }

    /// One delivery: true when the subscriber acknowledged it (or says it no longer exists).
    private func post(_ body: [UInt8], to node: Node, topic: String) async -> Bool {
        let secure = node.metadata["tls"] == "required"
        do {
            let response = try await http.request(
                address: node.address, method: "POST", path: "/?id=" + Self.queryEscape(node.id),
                headers: ["content-type": "application/json"], body: body,
                tls: secure ? HTTPClient.TLSTarget(expectedIdentity: node.metadata["identity"]) : nil,
                version: secure ? .http2 : node.httpVersion)
            switch response.status {
            case 200..<300: return true
            case 404: return true  // that subscription is gone: nothing to deliver to
            default:
                logger.debug("delivery on \(topic) to \(node.id) failed: HTTP \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))")
                return false
            }
        } catch {
            logger.debug("delivery on \(topic) to \(node.id) at \(node.address) failed: \(error)")
            return false
        }
    }

    static func queryEscape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}
