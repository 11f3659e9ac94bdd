// swift-tools-version:6.1
// MicroOTel: OpenTelemetry export of swift-micro's traces (OTLP over HTTP, through swift-otel).
// A package of its own, as go-micro keeps its plugins in their own modules: swift-otel brings
// SwiftNIO, AsyncHTTPClient and BoringSSL, which a service that does not export should not build.
import PackageDescription

let package = Package(
    name: "swift-micro-otel",
    platforms: [.macOS(.v15)],
    products: [
        // `MicroOTel.install()`, then MICRO_TRACER=otlp
        .library(name: "MicroOTel", targets: ["MicroOTel"]),
        // a small traced service (front, back, sink or helloworld): the three-process test and
        // Benchmarks/observability
        .executable(name: "traced", targets: ["traced"]),
    ],
    dependencies: [
        .package(name: "swift-micro", path: "../.."),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .target(
            name: "MicroOTel",
            dependencies: [
                .product(name: "Micro", package: "swift-micro"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("InternalImportsByDefault")]
        ),
        .executableTarget(
            name: "traced",
            dependencies: [
                "MicroOTel",
                .product(name: "Micro", package: "swift-micro"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
