import DequeModule
import Foundation
import Logging
import Synchronization

/// go-micro's debug service, on every service: `Debug.Health`, `Debug.Stats`, `Debug.Log` (the
/// last log lines, streamed on as they come) and `Debug.Trace` (the last spans, with
/// `MICRO_TRACER=memory`). Its messages are go-micro's (`debug/proto/debug.proto`) in JSON.
/// `micro stats SERVICE` and `micro logs SERVICE [-f]` read them.
///
/// With auth on, `Debug.Health` is public like the health checks; the others need an account
/// the rules grant (they show what the service logs).
public enum Debug {
    public struct HealthRequest: Codable, Sendable {
        public var service: String?
        public init(service: String? = nil) { self.service = service }
    }

    public struct HealthResponse: Codable, Sendable {
        /// `ok`, or why not (the HTTP health checks' failing check).
        public var status: String
    }

    public struct StatsRequest: Codable, Sendable {
        public var service: String?
        public init(service: String? = nil) { self.service = service }
    }

    /// A node's counters, as go-micro's `StatsResponse`.
    public struct Stats: Codable, Sendable {
        /// When these were read (Unix seconds).
        public var timestamp: UInt64
        /// When the service started (Unix seconds).
        public var started: UInt64
        /// Seconds since.
        public var uptime: UInt64
        /// Resident memory, bytes.
        public var memory: UInt64
        public var threads: UInt64
        /// Garbage collection pauses: none in Swift (0).
        public var gc: UInt64
        /// Calls served (every kind: unary, streams, deliveries).
        public var requests: UInt64
        /// Of which ended in an error.
        public var errors: UInt64
    }

    public struct LogRequest: Codable, Sendable {
        public var service: String?
        /// The last `count` lines (0 or nil: all that are kept).
        public var count: Int64?
        /// Then every new line, until the caller ends the stream.
        public var stream: Bool?
        /// Only lines since this time (Unix seconds).
        public var since: Int64?

        public init(count: Int64? = nil, stream: Bool? = nil, since: Int64? = nil) {
            self.count = count
            self.stream = stream
            self.since = since
        }
    }

    /// A log line, as go-micro's `Record`.
    public struct Record: Codable, Sendable, Equatable {
        /// Unix seconds.
        public var timestamp: Int64
        /// The line's metadata, with `level` (and `trace_id`, `span_id` within a traced call).
        public var metadata: [String: String]
        public var message: String

        public init(timestamp: Int64, metadata: [String: String], message: String) {
            self.timestamp = timestamp
            self.metadata = metadata
            self.message = message
        }
    }

    public struct TraceRequest: Codable, Sendable {
        /// One trace's spans; nil or empty: every span kept.
        public var id: String?
        public init(id: String? = nil) { self.id = id }
    }

    public struct TraceResponse: Codable, Sendable {
        public var spans: [Span]
    }

    /// A span, as go-micro's `Span`.
    public struct Span: Codable, Sendable {
        public var trace: String
        public var id: String
        public var parent: String
        public var name: String
        /// Unix nanoseconds.
        public var started: UInt64
        /// Nanoseconds.
        public var duration: UInt64
        /// Its attributes, its status (`status`, `status.message`) and kind (`kind`).
        public var metadata: [String: String]
        /// `INBOUND` (served, delivered) or `OUTBOUND` (called, published).
        public var type: String
    }
}

/// Calls served and failed, for `Debug.Stats` (a relaxed add per call).
final class CallStats: Sendable {
    private let requests = Atomic<UInt64>(0)
    private let errors = Atomic<UInt64>(0)
    let started = Date()

    func record(failed: Bool) {
        requests.wrappingAdd(1, ordering: .relaxed)
        if failed { errors.wrappingAdd(1, ordering: .relaxed) }
    }

    /// A call ended with `code` (`failed` unless it succeeded): counted here, and in its
    /// endpoint's metrics when they are on (`start` from their `begin()`).
    func record(failed: Bool, code: Int, metrics: EndpointMetrics?, since start: MonotonicTime?) {
        record(failed: failed)
        if let metrics, let start { metrics.record(code: code, since: start) }
    }

    var snapshot: Debug.Stats {
        let now = Date()
        return Debug.Stats(
            timestamp: UInt64(now.timeIntervalSince1970), started: UInt64(started.timeIntervalSince1970),
            uptime: UInt64(max(0, now.timeIntervalSince(started))), memory: Self.residentBytes(), threads: Self.threads(), gc: 0,
            requests: requests.load(ordering: .relaxed), errors: errors.load(ordering: .relaxed))
    }

    /// Resident set size from /proc/self/statm (pages).
    private static func residentBytes() -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    private static func threads() -> UInt64 {
        UInt64((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0)
    }
}

/// The last log lines of a service (bounded: the oldest go first), and the streams that follow
/// new ones. A follower that does not keep up loses the oldest lines it has not read, never
/// grows the buffer.
package final class LogRing: Sendable {
    package let capacity: Int
    private struct State {
        var records = Deque<Debug.Record>()
        var followers: [UInt64: AsyncStream<Debug.Record>.Continuation] = [:]
        var nextFollower: UInt64 = 0
    }
    private let state = Mutex(State())

    package init(capacity: Int = 1000) {
        self.capacity = max(1, capacity)
    }

    package func add(_ record: Debug.Record) {
        let followers: [AsyncStream<Debug.Record>.Continuation] = state.withLock { state in
            if state.records.count >= capacity { state.records.removeFirst() }
            state.records.append(record)
            return Array(state.followers.values)
        }
        for follower in followers { follower.yield(record) }
    }

    /// The last `count` lines kept (all if 0), from `since` (Unix seconds) on, and, if `follow`,
    /// a stream of those that come after them (taken at the same instant: none lost between).
    package func read(count: Int, since: Int64, follow: Bool) -> (kept: [Debug.Record], next: AsyncStream<Debug.Record>?) {
        state.withLock { state in
            // appended one by one: Array(deque) of nothing writes its count into the runtime's
            // shared empty array, which TSan sees racing with every reader of an empty array
            var kept: [Debug.Record] = []
            for record in state.records where record.timestamp >= since { kept.append(record) }
            if count > 0, kept.count > count { kept.removeFirst(kept.count - count) }
            guard follow else { return (kept, nil) }
            let (stream, continuation) = AsyncStream.makeStream(of: Debug.Record.self, bufferingPolicy: .bufferingNewest(capacity))
            let id = state.nextFollower
            state.nextFollower += 1
            state.followers[id] = continuation
            continuation.onTermination = { [weak self] _ in self?.state.withLock { _ = $0.followers.removeValue(forKey: id) } }
            return (kept, stream)
        }
    }

    package var followerCount: Int { state.withLock { $0.followers.count } }
}

/// Keeps every line a service logs in its ``LogRing`` (beside the handler that prints it).
struct RingLogHandler: LogHandler {
    let ring: LogRing
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    var logLevel: Logger.Level

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [String: String] = ["level": event.level.rawValue]
        for (key, value) in metadata { fields[key] = "\(value)" }
        if let provided = metadataProvider?.get() { for (key, value) in provided { fields[key] = "\(value)" } }
        if let own = event.metadata { for (key, value) in own { fields[key] = "\(value)" } }
        ring.add(Debug.Record(timestamp: Int64(Date().timeIntervalSince1970), metadata: fields, message: "\(event.message)"))
    }
}

extension Debug.Span {
    init(_ span: MemoryTracer.FinishedSpan) {
        var metadata = span.attributes
        metadata["kind"] = span.kind
        if let status = span.status { metadata["status"] = status }
        if let message = span.statusMessage { metadata["status.message"] = message }
        self.init(trace: span.traceID, id: span.spanID, parent: span.parentID ?? "", name: span.name, started: span.start,
                  duration: span.end >= span.start ? span.end - span.start : 0, metadata: metadata,
                  type: ["server", "consumer"].contains(span.kind) ? "INBOUND" : "OUTBOUND")
    }
}

extension Service {
    /// Registers `Debug.Health`, `Debug.Stats`, `Debug.Log` and `Debug.Trace`.
    func registerDebug() {
        let stats = router.stats, logs = self.logs, tracer = options.tracer as? MemoryTracer, checks = healthChecks
        handle("Debug.Health") { (_: Debug.HealthRequest, _: Context) async throws -> Debug.HealthResponse in
            Debug.HealthResponse(status: await checks.failing() ?? "ok")
        }
        handle("Debug.Stats") { (_: Debug.StatsRequest, _: Context) async throws -> Debug.Stats in stats.snapshot }
        handle("Debug.Log", serverStream: { (request: Debug.LogRequest, records: MessageWriter<Debug.Record>, _: Context) in
            let (kept, next) = logs.read(count: Int(clamping: request.count ?? 0), since: request.since ?? 0, follow: request.stream ?? false)
            for record in kept { try await records.write(record) }
            guard let next else { return }
            for await record in next { try await records.write(record) }
        })
        handle("Debug.Trace") { (request: Debug.TraceRequest, _: Context) async throws -> Debug.TraceResponse in
            let id = request.id.flatMap { $0.isEmpty ? nil : $0 }
            return Debug.TraceResponse(spans: (tracer?.spans(traceID: id) ?? []).map(Debug.Span.init))
        }
    }
}
