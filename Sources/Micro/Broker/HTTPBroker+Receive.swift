import Foundation
public import MicroCore
import Synchronization

extension HTTPBroker {
    /// Takes one delivery (`POST /?id=NODE` with a JSON `BrokerMessage`) and answers: 200 once the
    /// handler returned, 500 with the error if it threw (the publisher delivers again), 400 for
    /// a malformed message, 404 for an unknown subscription, 405 for another method.
    public func receive(_ request: HTTPServerRequest) async -> HTTPServerResponse {
        func answer(_ code: Int, _ detail: String) -> HTTPServerResponse {
            let error = MicroError(id: "micro.broker", code: code, detail: detail)
            return HTTPServerResponse(status: code, headers: ["content-type": "application/json"], body: Array(error.json.utf8))
        }
        guard request.method == "POST" else { return answer(405, "method \(request.method) not allowed: deliveries are POST") }
        guard let id = Self.queryValue("id", in: request.path) else {
            return answer(400, "no subscription named: expected POST /?id=NODE")
        }
        guard let subscription = state.withLock({ $0.subscriptions[id] }) else {
            return answer(404, "no subscription \(id) here")
        }
        let message: BrokerMessage
        do {
            message = try JSONDecoder().decode(BrokerMessage.self, from: Data(request.body))
        } catch {
            return answer(400, "malformed broker message: \(Router.describe(error)); expected {\"Header\":{...},\"Body\":\"<base64>\"}")
        }
        guard let topic = message.topic else { return answer(400, "broker message without a Micro-Topic header") }
        guard topic == subscription.topic else {
            return answer(400, "message for topic \(topic) sent to a subscription to \(subscription.topic)")
        }
        do {
            try await subscription.handler(BrokerEvent(topic: topic, message: message, eventLoop: request.loop, peer: Peer(request.tls)))
            return HTTPServerResponse(status: 200)
        } catch let error as MicroError {
            return answer(500, "subscriber error: \(error.detail)")
        } catch {
            return answer(500, "subscriber error: \(error)")
        }
    }

    /// Whether a request is a broker delivery (`/?id=` and no endpoint header).
    public func isDelivery(_ request: HTTPServerRequest) -> Bool {
        request.path.hasPrefix("/?") && request.headers["micro-endpoint"] == nil && Self.queryValue("id", in: request.path) != nil
    }

    static func queryValue(_ name: String, in path: String) -> String? {
        guard let q = path.firstIndex(of: "?") else { return nil }
        for pair in path[path.index(after: q)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return String(parts[1]).removingPercentEncoding ?? String(parts[1])
        }
        return nil
    }
}
