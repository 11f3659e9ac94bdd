import Foundation
import MicroCore
import Synchronization

// Server-sent events: a server stream's answers, the registry's changes, a topic's messages.
// Over HTTP/1.1 a chunked answer, over HTTP/2 a stream's DATA; each event ends with an empty
// line, and an idle stream gets a comment line now and then (``Gateway/Options/keepAlive``).

/// Writes one event stream.
struct EventWriter {
    let responder: HTTPResponder

    func open(_ cors: HTTPHeaders) async throws {
        var headers = cors
        headers["content-type"] = "text/event-stream; charset=utf-8"
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"  // a proxy in front (nginx) passes each event on at once
        try await responder.sendHead(status: 200, headers: headers)
    }

    /// One event: its name (none: a `message`), and `data` as one `data:` line per line of it.
    func send(event: String? = nil, data: [UInt8]) async throws {
        try await responder.write(Self.frame(event: event, data: data))
    }

    static func frame(event: String? = nil, data: some Collection<UInt8>) -> [UInt8] {
        let data = Array(data)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(data.count + 16)
        if let event { bytes += Array("event: \(event)\n".utf8) }
        for line in data.split(separator: 10, omittingEmptySubsequences: false) {
            bytes += Array("data: ".utf8)
            bytes += line.last == 13 ? line.dropLast() : line[...]
            bytes.append(10)
        }
        bytes.append(10)
        return bytes
    }

    func keepAlive() async throws {
        try await responder.write(Array(": keep-alive\n\n".utf8))
    }
}

extension Gateway {
    /// What an event stream's producer hands its writer.
    enum Outgoing: Sendable {
        case event([UInt8])
        case keepAlive
    }

    /// Takes a place among the open event streams, or nil when all are taken.
    func takeStreamSlot() -> Int? {
        state.withLock { state in
            guard !state.stopRequested, state.streams < options.maxEventStreams else { return nil }
            state.streams += 1
            state.nextStream += 1
            return state.nextStream
        }
    }

    func releaseStreamSlot(_ slot: Int) {
        state.withLock { state in
            state.streams -= 1
            state.enders[slot] = nil
        }
    }

    func tooManyStreams(_ cors: HTTPHeaders) -> HTTPServerResponse {
        failure(MicroError(id: "micro.gateway", code: 503, detail: "\(options.maxEventStreams) event streams are open: try again later"), cors)
    }

    /// Starts a producer (a watch, a subscription), opens the event stream with a `ready` event,
    /// then writes what the producer yields, with keep-alive comments, until the producer ends (or
    /// the gateway stops), the client goes away, or the client falls 256 events behind (the stream
    /// then ends: the client reconnects and reads afresh, rather than the gateway holding an
    /// unbounded backlog for it).
    func pump(_ responder: HTTPResponder, slot: Int, _ cors: HTTPHeaders,
              produce: (AsyncStream<Outgoing>.Continuation) async throws -> Void, cleanUp: () async -> Void) async {
        let (items, continuation) = AsyncStream<Outgoing>.makeStream(bufferingPolicy: .bufferingOldest(256))
        let stopping = state.withLock { state in
            if state.stopRequested { return true }
            state.enders[slot] = { continuation.finish() }
            return false
        }
        let writer = EventWriter(responder: responder)
        do {
            if stopping { throw MicroError(id: "micro.gateway", code: 503, detail: "the gateway is stopping") }
            // the watch first: what it sees meanwhile waits in the stream; a failure is still an
            // HTTP error of its own
            try await produce(continuation)
        } catch {
            await cleanUp()
            return responder.send(failure(error, cors))
        }
        do {
            try await writer.open(cors)
            // in place: what happens from now on is seen (a client may act on this)
            try await writer.send(event: "ready", data: Array("{}".utf8))
        } catch {
            continuation.finish()
            await cleanUp()
            return responder.finish()
        }
        let keepAlive = options.keepAlive
        let ticker = Task {
            while (try? await Task.sleep(for: keepAlive)) != nil { continuation.yield(.keepAlive) }
        }
        do {
            for await item in items {
                switch item {
                case .event(let bytes): try await responder.write(bytes)
                case .keepAlive: try await writer.keepAlive()
                }
            }
        } catch {
            // the client went away
        }
        ticker.cancel()
        continuation.finish()
        await cleanUp()
        responder.finish()
    }

    /// Yields `bytes` as an event; ends the stream if the client has fallen too far behind.
    static func offer(_ bytes: [UInt8], to continuation: AsyncStream<Outgoing>.Continuation) {
        if case .dropped = continuation.yield(.event(bytes)) { continuation.finish() }
    }

    // MARK: the registry's changes

    struct RegistryChange: Encodable {
        var action: String
        var service: ServiceRecord
    }

    func registryEvents(_ responder: HTTPResponder, _ cors: HTTPHeaders) async {
        guard let slot = takeStreamSlot() else { return responder.send(tooManyStreams(cors)) }
        defer { releaseStreamSlot(slot) }
        let watch = Mutex<RegistryWatch?>(nil)
        await pump(responder, slot: slot, cors) { continuation in
            do {
                let started = try registry.watch(service: nil) { event in
                    guard let data = try? Self.encoder.encode(RegistryChange(action: event.action.rawValue, service: event.service)) else { return }
                    Self.offer(EventWriter.frame(data: data), to: continuation)
                }
                watch.withLock { $0 = started }
            } catch {
                throw MicroError(id: "micro.gateway", code: 503, detail: "cannot watch the registry: \(error)")
            }
        } cleanUp: {
            watch.withLock { $0?.cancel() }
        }
    }

    // MARK: a topic's messages

    struct TopicMessage: Encodable {
        var topic: String
        var header: [String: String]
        var body: String
        var encoding: String?
    }

    func topicEvents(_ responder: HTTPResponder, _ topic: String, _ cors: HTTPHeaders) async {
        guard let subscriber else {
            return responder.send(failure(MicroError(id: "micro.gateway", code: 501, detail: "this gateway has no broker to watch topics with"), cors))
        }
        guard let slot = takeStreamSlot() else { return responder.send(tooManyStreams(cors)) }
        defer { releaseStreamSlot(slot) }
        let subscription = Mutex<BrokerSubscription?>(nil)
        await pump(responder, slot: slot, cors) { continuation in
            do {
                let made = try await subscriber.subscribe(topic, queue: nil) { event in
                    let body = event.message.body
                    let text = String(validating: body, as: UTF8.self)
                    let message = TopicMessage(topic: event.topic, header: event.message.header,
                                               body: text ?? Data(body).base64EncodedString(), encoding: text == nil ? "base64" : nil)
                    guard let data = try? Self.encoder.encode(message) else { return }
                    Self.offer(EventWriter.frame(data: data), to: continuation)
                }
                subscription.withLock { $0 = made }
            } catch {
                throw MicroError(id: "micro.gateway", code: 503, detail: "cannot subscribe to \(topic): \(error)")
            }
        } cleanUp: {
            if let made = subscription.withLock({ $0 }) { await made.unsubscribe() }
        }
    }

    // MARK: server streams

    /// A server stream's answers as events: the request is the body (`POST`) or the `request`
    /// parameter of the query (`GET`, as `EventSource` asks; `{}` without one). The event stream
    /// opens at once; each answer is a `message` event, then an `end` event, or an `error` event
    /// with the micro error's JSON (a service or endpoint not found among them).
    func serverStream(_ request: HTTPServerRequest, _ responder: HTTPResponder, _ service: String, _ endpoint: String,
                      query: String?, _ cors: HTTPHeaders) async {
        guard let slot = takeStreamSlot() else { return responder.send(tooManyStreams(cors)) }
        defer { releaseStreamSlot(slot) }
        let writer = EventWriter(responder: responder)
        do {
            try await writer.open(cors)
        } catch {
            return
        }
        do {
            var body = request.method == "GET" ? Array((Self.queryValue("request", in: query) ?? "").utf8) : request.body
            if body.isEmpty { body = Array("{}".utf8) }
            if request.method == "POST", let problem = Self.contentTypeProblem(request) { throw problem }
            if let problem = await missing(service, endpoint) { throw problem }
            try await client.rawStream(service, endpoint, options: callOptions(request)) { call in
                try await call.send(body)
                call.closeSend()
                for try await answer in call.responses { try await writer.send(data: answer) }
            }
            try await writer.send(event: "end", data: Array("{}".utf8))
        } catch is HTTPStreamError {
            // the client went away
        } catch {
            let micro = error as? MicroError ?? MicroError(id: "micro.gateway", code: 500, detail: "\(error)")
            try? await writer.send(event: "error", data: Array(micro.json.utf8))
        }
        responder.finish()
    }

    /// The value of `name` in a query string (`+` and percent escapes decoded).
    static func queryValue(_ name: String, in query: String?) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }
}
