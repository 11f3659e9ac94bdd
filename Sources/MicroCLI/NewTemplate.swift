// The hand-written files of the package `micro new` writes ({{name}}, {{Name}}, {{microDependency}}
// and {{microPackage}} filled in). Its generated Swift is NewTemplateGenerated's.

enum NewTemplate {
    static let package = #"""
        // swift-tools-version:6.1
        import PackageDescription

        let package = Package(
            name: "{{name}}",
            platforms: [.macOS(.v15)],
            dependencies: [
                {{microDependency}},
                .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
            ],
            targets: [
                // what protoc-gen-swift and protoc-gen-micro made of proto/{{name}}.proto
                .target(
                    name: "{{Name}}Proto",
                    dependencies: [
                        .product(name: "Micro", package: "{{microPackage}}"),
                        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                    ]
                ),
                // the handler: what the service does
                .target(
                    name: "{{Name}}Service",
                    dependencies: ["{{Name}}Proto", .product(name: "Micro", package: "{{microPackage}}")]
                ),
                .executableTarget(
                    name: "{{name}}",
                    dependencies: ["{{Name}}Service", .product(name: "Micro", package: "{{microPackage}}")]
                ),
                .testTarget(
                    name: "{{Name}}ServiceTests",
                    dependencies: ["{{Name}}Service", "{{Name}}Proto", .product(name: "Micro", package: "{{microPackage}}")]
                ),
            ]
        )

        """#

    static let handler = #"""
        import Micro
        public import {{Name}}Proto

        /// The {{name}} service's endpoints, as proto/{{name}}.proto declares them: `{{Name}}.Call`
        /// answers a greeting; `{{Name}}.Stream` answers `count` times.
        public struct {{Name}}: {{Name}}Handler {
            public init() {}

            public func call(_ request: {{Name}}_CallRequest, context: Context) async throws -> {{Name}}_CallResponse {
                guard !request.name.isEmpty else { throw MicroError.badRequest("{{name}}", "a name is needed") }
                context.logger.info("greeting \(request.name)")
                var response = {{Name}}_CallResponse()
                response.message = "Hello " + request.name
                return response
            }

            public func stream(_ request: {{Name}}_StreamRequest, responses: MessageWriter<{{Name}}_StreamResponse>,
                               context: Context) async throws {
                guard (0...1000).contains(request.count) else {
                    throw MicroError.badRequest("{{name}}", "count must be within 0...1000")
                }
                for n in 0..<request.count {
                    var response = {{Name}}_StreamResponse()
                    response.count = n + 1
                    try await responses.write(response)
                }
            }
        }

        """#

    static let main = #"""
        // {{name}}: run it (swift run {{name}}), then call it:
        //   micro call {{name}} {{Name}}.Call '{"name": "alice"}'
        //   micro stream {{name}} {{Name}}.Stream <<< '{"count": 3}'
        // or over gRPC: /{{name}}.{{Name}}/Call. MICRO_SERVER_ADDRESS=HOST:PORT picks where it
        // listens (any free port by default); it registers in the registry that MICRO_REGISTRY names.
        import Micro
        import {{Name}}Service

        let service = Service(name: "{{name}}")
        service.register({{Name}}())
        try await service.run()

        """#

    static let test = #"""
        import Foundation
        import Micro
        import Testing
        import {{Name}}Proto
        import {{Name}}Service

        /// The service served on a free loopback port, called over the network as others will call
        /// it: through the generated client (gRPC) and with JSON (the micro protocol).
        @Suite struct {{Name}}Tests {
            final class Running: Sendable {
                let service: Service
                let task: Task<Void, any Error>
                let port: Int

                init() throws {
                    // a registry and a broker of its own, in memory: the test touches nothing else
                    service = Service(name: "{{name}}", address: "127.0.0.1:0",
                                      options: ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: MemoryBroker()))
                    service.register({{Name}}())
                    port = try service.start().port
                    let service = self.service
                    task = Task { try await service.run() }
                }

                /// Calls this node directly (a minute: a bound for a hung test, not a measurement).
                func options(_ base: CallOptions = CallOptions()) -> CallOptions {
                    var options = base
                    options.address = "127.0.0.1:\(port)"
                    options.timeout = .seconds(60)
                    return options
                }

                func stop() async throws {
                    service.stop()
                    try await task.value
                }
            }

            @Test func callGreetsOverGRPCAndJSON() async throws {
                let running = try Running()
                let client = Client(registry: MemoryRegistry(), tracer: nil)
                let {{name}} = {{Name}}Client(client: client, service: "{{name}}", options: running.options(.grpc))
                var request = {{Name}}_CallRequest()
                request.name = "alice"
                #expect(try await {{name}}.call(request).message == "Hello alice")

                let json = try await client.call("{{name}}", "{{Name}}.Call", body: Array(#"{"name":"bob"}"#.utf8), options: running.options())
                #expect(String(decoding: json.body, as: UTF8.self).contains("Hello bob"))

                await #expect(throws: MicroError.self) { try await {{name}}.call({{Name}}_CallRequest()) }
                await client.close()
                try await running.stop()
            }

            @Test func streamAnswersCountTimes() async throws {
                let running = try Running()
                let client = Client(registry: MemoryRegistry(), tracer: nil)
                let {{name}} = {{Name}}Client(client: client, service: "{{name}}", options: running.options(.grpc))
                var request = {{Name}}_StreamRequest()
                request.count = 3
                let counts = try await {{name}}.stream(request) { responses in
                    var counts: [Int64] = []
                    for try await response in responses { counts.append(response.count) }
                    return counts
                }
                #expect(counts == [1, 2, 3])
                await client.close()
                try await running.stop()
            }
        }

        """#

    static let readme = #"""
        # {{name}}

        A service on swift-micro, written by `micro new {{name}}`.

        ```sh
        swift build
        swift test
        swift run {{name}}                                   # serves; logs "listening on HOST:PORT"
        micro call {{name}} {{Name}}.Call '{"name": "alice"}' # from another shell
        micro stream {{name}} {{Name}}.Stream <<< '{"count": 3}'
        ```

        - `proto/{{name}}.proto`: the API (a unary `Call`, a server stream `Stream`).
        - `Sources/{{Name}}Proto`: the Swift generated from it: messages (protoc-gen-swift), the
          `{{Name}}Handler` protocol, `service.register(_:)` and the `{{Name}}Client` (protoc-gen-micro).
          A handler whose unary methods never wait (no calls, no store) can conform to
          `{{Name}}SynchronousHandler` instead: the same methods without `async`, a little faster.
        - `Sources/{{Name}}Service/{{Name}}.swift`: the handler: what the service does.
        - `Sources/{{name}}/main.swift`: the executable.
        - `Tests/{{Name}}ServiceTests`: the service on a loopback port, called through the generated
          client (gRPC) and with JSON.

        It listens on a free port (`MICRO_SERVER_ADDRESS=HOST:PORT` picks one) and registers in the
        registry `MICRO_REGISTRY` names (a directory on this machine by default; `etcd` or `mdns` across
        machines). Every `MICRO_*` setting of swift-micro applies.

        ## After changing the proto

        Generate the Swift again with protoc and the two plugins (swift-micro's
        `Plugins/protoc-gen-micro` package builds both):

        ```sh
        swift build -c release --package-path PATH-TO-SWIFT-MICRO/Plugins/protoc-gen-micro --product protoc-gen-micro
        swift build -c release --package-path PATH-TO-SWIFT-MICRO/Plugins/protoc-gen-micro --product protoc-gen-swift
        bin=$(swift build -c release --package-path PATH-TO-SWIFT-MICRO/Plugins/protoc-gen-micro --show-bin-path)
        protoc -I proto --plugin=protoc-gen-swift=$bin/protoc-gen-swift --plugin=protoc-gen-micro=$bin/protoc-gen-micro \
          --swift_opt=Visibility=Public --swift_out=Sources/{{Name}}Proto \
          --micro_opt=Visibility=Public --micro_out=Sources/{{Name}}Proto proto/{{name}}.proto
        ```

        """#

    static let gitignore = #"""
        .build/
        Package.resolved
        .swiftpm/

        """#
}
