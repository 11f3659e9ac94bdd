// swift-tools-version:6.1
// protoc-gen-micro: generates swift-micro service stubs from .proto files. Its own package, so
// that building swift-micro never builds SwiftProtobufPluginLibrary; scripts/generate-protos
// builds it (and swift-protobuf's protoc-gen-swift) and regenerates the committed code.
import PackageDescription

let package = Package(
    name: "protoc-gen-micro",
    products: [
        .executable(name: "protoc-gen-micro", targets: ["protoc-gen-micro"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "protoc-gen-micro",
            dependencies: [.product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf")],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        ),
    ]
)
