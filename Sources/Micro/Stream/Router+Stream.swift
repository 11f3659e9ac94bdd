import Foundation
import Logging
import MicroCore
import Synchronization

/// The shape of a streaming endpoint, as gRPC names them.
enum StreamKind: String, Sendable {
    case server, client, bidi
}

/// A streaming endpoint: raw framed messages in and out, typed by the wrappers of
/// `Service+Stream.swift`.
struct StreamingHandler: Sendable {
    let kind: StreamKind
    let run: @Sendable (_ requests: MessageSource, _ responses: any MessageSink, _ codec: any Codec, _ context: Context) async throws -> Void
}

/// Streams on the same port as everything else (HTTP/2 only):
/// - gRPC: `POST /pkg.Service/Method`, `application/grpc*`, messages with gRPC's 5-byte prefix,
///   the status in trailers.
/// - the micro protocol: the usual `Micro-Endpoint` headers plus `Micro-Stream: <id>`, the same
///   5-byte framing both ways, and an error in a `micro-error` trailer (or header, when nothing
///   was sent yet).
extension Router {
    /// Whether an HTTP/2 request to `path` should be handed over as a stream (asked by the core
    /// when a request's headers arrive with a body to follow).
    /// Asked for every request with a body: bytes compared, and a String made only for a path
    /// that ends with a streaming endpoint's method.
    func isStream(path: UnsafeRawBufferPointer) -> Bool {
        var endsWithAStreamMethod = publishedStreamMethods.isSuffix(of: path)
        if !endsWithAStreamMethod, publishedStreamMethods.overflowed.load(ordering: .acquiring) {
            endsWithAStreamMethod = streamMethods.withLock { methods in
                methods.contains { method in method.withUnsafeBytes { PublishedSuffixes.ends(path, with: $0) } }
            }
        }
        guard endsWithAStreamMethod else { return false }
        return endpoint(grpcPath: String(decoding: path, as: UTF8.self)).endpoint?.streaming != nil
    }

    @inline(never)
    nonisolated(nonsending) func serveStream(
        _ request: HTTPServerRequest,
        _ responder: HTTPResponder,
        endpoint: EndpointHandler,
        handler: StreamingHandler,
        codec: any Codec,
        grpcContentType: String?,
        timeout: Int64
    ) async {
        let wire: CallDescriptor.Wire = grpcContentType != nil ? .grpc : request.httpVersion == 1 ? .microHTTP1 : .microHTTP2
        let context = self.context(request, endpoint: endpoint, timeout: timeout, wire: wire)
        guard responder.canStream else {
            let e = MicroError(id: service, code: 505, detail: "\(endpoint.name) is a stream: call it with a Micro-Stream header (HTTP/1.1 or HTTP/2) or over gRPC")
            return responder.send(error(e))
        }
        let source = MessageSource(
            loop: request.loop,
            body: request.bodyStream,
            whole: request.bodyStream == nil ? request.body : [],
            compression: request.header("grpc-encoding"),
            maxMessageBytes: Self.maxGRPCMessageBytes,
            onFailure: { _ in Self.streamFailure(context) }
        )
        let metrics = endpoint.metrics, start = endpoint.metrics?.begin()
        source.metrics = metrics
        let sink = ServerStreamSink(responder: responder, context: context, contentType: grpcContentType ?? codec.contentType, metrics: metrics)
        let name = endpoint.name
        let stats = self.stats
        let end: @Sendable (MicroError?) -> Void = { error in
            guard sink.end() else { return }
            stats.record(failed: error != nil, code: error?.code ?? 200, metrics: metrics, since: start)
            if let grpcContentType {
                let code = error.map { GRPCStatusCode(microCode: $0.code) } ?? .ok
                var trailers: HTTPHeaders = ["grpc-status": String(code.rawValue)]
                if let error { trailers.add(name: "grpc-message", value: GRPCText.encodeMessage(error.detail)) }
                if sink.started {
                    responder.finish(trailers: trailers)
                } else {
                    var headers = sink.head(contentType: grpcContentType)
                    for (name, value) in trailers { headers.add(name: name, value: value) }
                    responder.send(HTTPServerResponse(status: 200, headers: headers))
                }
            } else if sink.started {
                responder.finish(trailers: error.map { ["micro-error": $0.json] } ?? [:])
            } else if let error {
                responder.send(self.error(error))
            } else if request.httpVersion == 1 {
                responder.finish()  // go-micro's stream: the EOS frame
            } else {
                responder.send(HTTPServerResponse(status: 200, headers: sink.head(contentType: codec.contentType)))
            }
        }
        let interceptors = self.interceptors
        let work: @Sendable () async -> Void = {
            do {
                try await interceptors.traced(context) {
                    try await interceptors.admit(context)
                    if interceptors.isEmpty {
                        try await handler.run(source, sink, codec, context)
                    } else {
                        _ = try await interceptors.run(ServerCall(context: context, message: nil, codec: codec)) { call in
                            source.tap = call.taps.request
                            let tapped: any MessageSink = call.taps.response.map { TappedSink(sink, $0) } ?? sink
                            try await handler.run(source, tapped, call.codec, call.context)
                            return ServerResult(message: nil)
                        }
                    }
                }
                end(nil)
            } catch let e as MicroError {
                end(e)
            } catch is CancellationError {
                end(Self.streamFailure(context))
            } catch {
                context.logger.error("stream handler failed: \(error)")
                end(.internalServerError(self.service, "\(error)"))
            }
        }
        if context.timeoutMilliseconds > 0 {
            // in the core's wheel: the stream ends with a timeout and the handler is cancelled
            let service = self.service
            responder.setDeadline(afterMilliseconds: context.timeoutMilliseconds) { _, _ in
                end(.timeout(service, "\(name) did not finish before the caller's deadline"))
            }
        }
        await work()
    }

    /// A caller's deadline runs from before it sent the request, so a caller that gives up at
    /// its deadline resets the stream a little before ours passes: a reset this close to our
    /// deadline is that deadline.
    static let deadlineSlack: Duration = .milliseconds(250)

    /// What a handler's reads and writes throw once the stream is over: the deadline if it
    /// passed (or is within ``deadlineSlack``), else cancellation (the client went away).
    static func streamFailure(_ context: Context) -> MicroError {
        if let deadline = context.deadline, deadline <= .now + deadlineSlack {
            return .timeout(context.service, "\(context.endpoint): the caller's deadline passed")
        }
        return MicroError(id: context.service, code: 499, detail: "\(context.endpoint): the client cancelled the stream")
    }
}

/// A handler's answers: the head goes with the first message.
final class ServerStreamSink: MessageSink {
    let responder: HTTPResponder
    let context: Context
    let contentType: String
    /// Counts the bytes of each message sent (the endpoint's metrics, when on).
    let metrics: EndpointMetrics?
    private let state = Atomic<UInt8>(0)  // bit 0: started, bit 1: ended

    init(responder: HTTPResponder, context: Context, contentType: String, metrics: EndpointMetrics? = nil) {
        self.responder = responder
        self.context = context
        self.contentType = contentType
        self.metrics = metrics
    }

    var started: Bool { state.load(ordering: .acquiring) & 1 != 0 }

    /// True for the first caller only.
    func end() -> Bool { state.bitwiseOr(2, ordering: .acquiringAndReleasing).oldValue & 2 == 0 }

    func head(contentType: String) -> HTTPHeaders {
        var headers: HTTPHeaders = ["content-type": contentType]
        for (name, value) in context.responseMetadata.all { headers.add(name: name, value: value) }
        return headers
    }

    func send(_ framed: [UInt8]) async throws {
        if Task.isCancelled { throw Router.streamFailure(context) }
        do {
            if state.bitwiseOr(1, ordering: .acquiringAndReleasing).oldValue & 1 == 0 {
                try await responder.sendHead(status: 200, headers: head(contentType: contentType))
            }
            try await responder.write(framed)
            metrics?.record(received: 0, sent: max(0, framed.count - GRPCFraming.prefixBytes))
        } catch {
            throw Router.streamFailure(context)
        }
    }
}

/// Byte strings that only ever get added, readable from any thread without a lock: up to
/// `capacity` of them, each copied once into memory of its own that lives as long as this
/// object. A reader loads the count (acquiring), then reads that many entries, which never change
/// once counted. Writers must not overlap (the router appends under its lock).
///
/// @unchecked Sendable: entries are written before the count that publishes them (releasing),
/// and never written again.
final class PublishedSuffixes: @unchecked Sendable {
    static let capacity = 64
    private let entries = UnsafeMutableBufferPointer<UnsafeRawBufferPointer>.allocate(capacity: PublishedSuffixes.capacity)
    private let published = Atomic<Int>(0)
    /// Whether some did not fit: a reader must then ask the full list.
    let overflowed = Atomic<Bool>(false)

    func append(_ bytes: [UInt8]) {
        let count = published.load(ordering: .relaxed)
        guard count < Self.capacity else {
            overflowed.store(true, ordering: .releasing)
            return
        }
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
        entries[count] = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(copy)[0..<bytes.count])
        published.store(count + 1, ordering: .releasing)
    }

    /// Whether `path` ends with one of them (and is longer than it).
    func isSuffix(of path: UnsafeRawBufferPointer) -> Bool {
        let count = published.load(ordering: .acquiring)
        for i in 0..<count where Self.ends(path, with: entries[i]) { return true }
        return false
    }

    /// Whether `path` ends with `suffix` and is longer than it.
    static func ends(_ path: UnsafeRawBufferPointer, with suffix: UnsafeRawBufferPointer) -> Bool {
        path.count > suffix.count && memcmp(path.baseAddress! + (path.count - suffix.count), suffix.baseAddress!, suffix.count) == 0
    }

    deinit {
        for i in 0..<published.load(ordering: .acquiring) { UnsafeMutableRawPointer(mutating: entries[i].baseAddress!).deallocate() }
        entries.deallocate()
    }
}
