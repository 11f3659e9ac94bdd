// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-micro",
    // Linux only today: the core uses accept4, inotify and Linux socket options. The macOS line
    // states the API availability (Mutex, Atomic) a port would need, not that it builds there.
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Micro", targets: ["Micro"]),
        .library(name: "MicroCore", targets: ["MicroCore"]),
        // etcd as the registry and config source (`MicroEtcd.install()`, then MICRO_REGISTRY=etcd)
        .library(name: "MicroEtcd", targets: ["MicroEtcd"]),
        // the SQLite store, the default one (`MicroSQLite.install()`)
        .library(name: "MicroSQLite", targets: ["MicroSQLite"]),
        // the PostgreSQL store (`MicroPostgres.install()`; also CockroachDB)
        .library(name: "MicroPostgres", targets: ["MicroPostgres"]),
        // the NATS broker and client (`MicroNATS.install()`, then MICRO_BROKER=nats)
        .library(name: "MicroNATS", targets: ["MicroNATS"]),
        .executable(name: "helloworld", targets: ["helloworld"]),
        .executable(name: "micro", targets: ["MicroCLI"]),
        .executable(name: "greeter", targets: ["greeter"]),
        .executable(name: "echo", targets: ["echo"]),
        .executable(name: "counter", targets: ["counter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["JSON", "YAML"]),
    ],
    targets: [
        // System libraries (Debian: libuv1-dev, libssl-dev, libhttp-parser-dev).
        .systemLibrary(
            name: "CUV", path: "CShims/CUV", pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"]), .brew(["libuv"])]),
        .systemLibrary(
            name: "COpenSSL", path: "CShims/COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]),
        .systemLibrary(
            name: "CZlib", path: "CShims/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        .systemLibrary(
            name: "CSQLite", path: "CShims/CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),
        .systemLibrary(
            name: "CLibPQ", path: "CShims/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]),
        .systemLibrary(
            name: "CHTTPParser", path: "CShims/CHTTPParser",
            providers: [.apt(["libhttp-parser-dev"]), .brew(["http-parser"])]),
        .target(
            name: "CMicroCore",
            dependencies: ["CUV", "COpenSSL", "CHTTPParser"],
            path: "CShims/CMicroCore",
            publicHeadersPath: "include",
            cSettings: [
                .define("_GNU_SOURCE"),
                .define("NDEBUG", .when(configuration: .release)),
            ],
            linkerSettings: [.linkedLibrary("http_parser")]
        ),
        .target(
            name: "MicroCore",
            dependencies: [
                "CMicroCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Micro",
            dependencies: [
                "MicroCore",
                "CMicroCore",  // signing keys for tokens (Auth/SigningKey.swift)
                "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // The etcd v3 client (generated from etcd's protos by scripts/generate-protos, committed),
        // the etcd registry and the config provider over etcd.
        .target(
            name: "MicroEtcd",
            dependencies: [
                "Micro",
                "MicroCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        // A SQLite VFS that refuses file reads on a thread that asks it to (event loops).
        .target(
            name: "CSQLiteNoIO",
            dependencies: ["CSQLite"],
            path: "CShims/CSQLiteNoIO",
            publicHeadersPath: "include"
        ),
        // The SQLite store: a file per database, a writer thread and two reader threads per file.
        .target(
            name: "MicroSQLite",
            dependencies: [
                "Micro",
                "MicroCore",
                "CSQLite",
                "CSQLiteNoIO",
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL store: libpq connections driven on the event loops, in pipeline mode.
        .target(
            name: "MicroPostgres",
            dependencies: [
                "Micro",
                "MicroCore",
                "CLibPQ",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // A NATS client on the core's byte-stream connection, and go-micro's NATS broker on it.
        .target(
            name: "MicroNATS",
            dependencies: [
                "Micro",
                "MicroCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "MicroCLI",
            dependencies: [
                "Micro",
                "MicroEtcd",
                "MicroSQLite",
                "MicroPostgres",
                "MicroNATS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),  // micro new: the template's file descriptor
                "MicroCore",
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "helloworld",
            dependencies: ["Micro", "MicroEtcd", "MicroNATS"],
            path: "Sources/Examples/helloworld",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "echo",
            dependencies: ["Micro", "MicroEtcd"],
            path: "Sources/Examples/echo",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "notes",
            dependencies: ["Micro", "MicroEtcd", "MicroSQLite", "MicroPostgres"],
            path: "Sources/Examples/notes",
            swiftSettings: swiftSettings
        ),
        // Generated from Protos/greeter.proto by scripts/generate-protos (committed).
        .target(
            name: "GreeterProto",
            dependencies: ["Micro", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Sources/Examples/GreeterProto"
        ),
        .executableTarget(
            name: "greeter",
            dependencies: ["Micro", "GreeterProto"],
            path: "Sources/Examples/greeter",
            swiftSettings: swiftSettings
        ),
        // Generated from Protos/counter.proto by scripts/generate-protos (committed).
        .target(
            name: "CounterProto",
            dependencies: ["Micro", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Sources/Examples/CounterProto"
        ),
        .executableTarget(
            name: "counter",
            dependencies: ["Micro", "CounterProto", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Examples/counter",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "MicroTestSupport",
            dependencies: ["MicroCore"],
            path: "Tests/MicroTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MicroCoreTests",
            dependencies: ["MicroCore", "CMicroCore", "MicroTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MicroTests",
            dependencies: [
                "Micro", "MicroTestSupport", "GreeterProto", "CounterProto", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        // against real etcd members the tests start (Debian's etcd-server)
        .testTarget(
            name: "MicroEtcdTests",
            dependencies: [
                "MicroEtcd", "Micro", "MicroTestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Configuration", package: "swift-configuration"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // against real nats-server processes the tests start (Debian's nats-server), and a Go peer on nats.go
        .testTarget(
            name: "MicroNATSTests",
            dependencies: ["MicroNATS", "Micro", "MicroCore", "MicroTestSupport"],
            swiftSettings: swiftSettings
        ),
        // one conformance suite over every store (memory, SQLite, and PostgreSQL to come)
        .testTarget(
            name: "MicroStoreTests",
            dependencies: ["Micro", "MicroSQLite", "MicroPostgres", "MicroTestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    cLanguageStandard: .c11
)
