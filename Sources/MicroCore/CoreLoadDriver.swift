import CMicroCore

/// A closed-loop HTTP/2 load driver run entirely in the C core, on one loop (what `micro bench
/// --driver core` uses): no Swift task per request, so one core drives more than one server core
/// absorbs. Every call is the same request; latencies come back per call.
package enum CoreLoadDriver {
    package struct Plan: Sendable {
        package var host: String
        package var port: Int
        package var method = "POST"
        package var path: String
        package var headers: HTTPHeaders
        package var body: [UInt8]
        package var connections = 1
        package var concurrency = 1
        /// Measured calls; nil runs until `duration`.
        package var requests: Int?
        package var duration: Duration?
        /// Calls per connection before measuring.
        package var warmup = 0
        /// Success also needs grpc-status 0.
        package var grpc = false

        /// `address` is `host:port`, read as the HTTP client reads it.
        package init(address: String, path: String, headers: HTTPHeaders, body: [UInt8]) throws(HTTPClientError) {
            let (host, port) = try ConnectionPool.split(address)
            self.init(host: host, port: Int(port), path: path, headers: headers, body: body)
        }

        package init(host: String, port: Int, path: String, headers: HTTPHeaders, body: [UInt8]) {
            self.host = host
            self.port = port
            self.path = path
            self.headers = headers
            self.body = body
        }
    }

    package struct Result: Sendable {
        package var succeeded: Int
        package var failed: Int
        package var elapsed: Duration
        /// One per answered call, in completion order.
        package var latencyMicroseconds: [UInt32]
        /// Why a connection could not be made, if one could not.
        package var connectionError: String?
    }

    /// Runs `plan` on `loop`; returns when every connection is closed.
    package static func run(_ plan: Plan, on loop: EventLoop) async throws(MicroCoreError) -> Result {
        guard (1...65535).contains(plan.port), plan.connections > 0, plan.concurrency > 0 else {
            throw MicroCoreError(message: "a load plan needs a port, connections and concurrency")
        }
        let outcome: Swift.Result<Result, MicroCoreError> = await withCheckedContinuation { continuation in
            let owner = Box(continuation)
            loop.execute {
                let box = Unmanaged.passRetained(owner).toOpaque()  // released when the run reports
                let rc = plan.headers.withCHeaders { h, nh in
                    plan.body.withUnsafeBufferPointer { body in
                        plan.host.withCString { host in
                            plan.method.withCString { method in
                                plan.path.withCString { path in
                                    var config = mc_bench_config_t(
                                        host: host, port: UInt16(plan.port), method: method, path: path, headers: h, nheaders: nh,
                                        body: body.baseAddress, body_len: body.count, connections: UInt32(plan.connections),
                                        concurrency: UInt32(plan.concurrency), requests: UInt64(plan.requests ?? 0),
                                        duration_ms: UInt64(plan.duration.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 } ?? 0),
                                        warmup: UInt64(plan.warmup), grpc: plan.grpc ? 1 : 0)
                                    if plan.requests == nil && plan.duration == nil { config.requests = 10_000 }
                                    return mc_bench_start(loop.handle, &config, { ctx, result in
                                        Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue().finish(result!)
                                    }, box)
                                }
                            }
                        }
                    }
                }
                if rc != 0 {
                    Unmanaged<Box>.fromOpaque(box).takeRetainedValue()
                        .continuation.resume(returning: .failure(MicroCoreError(message: "cannot start the load driver")))
                }
            }
        }
        return try outcome.get()
    }

    /// The continuation between the C run and the caller.
    private final class Box: Sendable {
        let continuation: CheckedContinuation<Swift.Result<Result, MicroCoreError>, Never>

        init(_ continuation: CheckedContinuation<Swift.Result<Result, MicroCoreError>, Never>) {
            self.continuation = continuation
        }

        func finish(_ r: UnsafeMutablePointer<mc_bench_result_t>) {
            let latencies = r.pointee.latency_us.map { Array(UnsafeBufferPointer(start: $0, count: Int(r.pointee.nlatency))) } ?? []
            let error = withUnsafeBytes(of: r.pointee.error) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            let result = Result(
                succeeded: Int(r.pointee.ok), failed: Int(r.pointee.failed), elapsed: .nanoseconds(Int64(r.pointee.elapsed_ns)),
                latencyMicroseconds: latencies, connectionError: error.isEmpty ? nil : error)
            mc_bench_result_free(r)
            continuation.resume(returning: .success(result))
        }
    }
}
