import ArgumentParser
import Foundation
import SwiftProtobuf

/// `micro new NAME`: a service package that builds, whose tests pass, and that answers
/// `micro call` as written. Its API is a .proto (`NAME.proto`: a unary `Call` and a server stream
/// `Stream`) with the Swift generated from it, a handler, the executable, a test, a README.
struct New: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new service package: a .proto and its generated Swift, a handler, a test and a README.",
        discussion: """
            Then: cd NAME && swift build && swift test && swift run NAME, and call it with \
            micro call NAME Name.Call '{"name":"alice"}' (Name: NAME with a capital first letter).
            """)

    @Argument(help: "The service's name: lowercase letters and digits, starting with a letter (e.g. inventory).")
    var name: String
    @Option(help: "Where to write it (default: ./NAME); it must not exist or be empty.") var directory: String?
    @Option(help: "Where the package finds swift-micro: a local checkout's path, or a git URL (default: the checkout this tool was built from).")
    var micro: String?
    @Option(help: "With a git URL for --micro: the branch to use.") var branch = "main"

    func validate() throws {
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first),
              name.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              name.utf8.count <= 64
        else {
            throw ValidationError("'\(name)' cannot name a service here: lowercase letters and digits, starting with a letter, at most 64")
        }
    }

    func run() throws {
        let pascal = name.prefix(1).uppercased() + name.dropFirst()
        let root = URL(fileURLWithPath: directory ?? name)
        let files = FileManager.default
        if files.fileExists(atPath: root.path), !((try? files.contentsOfDirectory(atPath: root.path))?.isEmpty ?? false) {
            throw Failure("\(root.path) exists and is not empty: micro new writes only into a new or empty directory")
        }
        let dependency = try microDependency()
        let values = ["{{name}}": name, "{{Name}}": pascal, "{{microDependency}}": dependency.declaration, "{{microPackage}}": dependency.identity,
                      "{{descriptor}}": try descriptor(name: name, pascal: pascal)]
        func fill(_ template: String) -> String {
            values.reduce(template) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
        }
        let written: [(String, String)] = [
            ("Package.swift", NewTemplate.package),
            ("README.md", NewTemplate.readme),
            (".gitignore", NewTemplate.gitignore),
            ("proto/\(name).proto", NewTemplateGenerated.proto),
            ("Sources/\(pascal)Proto/\(name).pb.swift", NewTemplateGenerated.pbSwift),
            ("Sources/\(pascal)Proto/\(name).micro.swift", NewTemplateGenerated.microSwift),
            ("Sources/\(pascal)Service/\(pascal).swift", NewTemplate.handler),
            ("Sources/\(name)/main.swift", NewTemplate.main),
            ("Tests/\(pascal)ServiceTests/\(pascal)Tests.swift", NewTemplate.test),
        ]
        for (path, template) in written {
            let file = root.appendingPathComponent(path)
            try files.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(fill(template).utf8).write(to: file)
        }
        print("""
            wrote \(root.path): \(written.map(\.0).joined(separator: ", "))
            next: cd \(root.path) && swift build && swift test && swift run \(name)
            """)
    }

    /// How the new package names swift-micro, and the identity its products are named by.
    func microDependency() throws -> (declaration: String, identity: String) {
        let source = micro ?? Self.builtFrom
        if let source, source.contains("://") || source.hasPrefix("git@") {
            let identity = (source.split(separator: "/").last.map(String.init) ?? "swift-micro")
                .replacingOccurrences(of: ".git", with: "").lowercased()
            return (".package(url: \(Self.literal(source)), branch: \(Self.literal(branch)))", identity)
        }
        guard let source else {
            throw Failure("no swift-micro checkout is known to this tool: say where it is with --micro PATH or --micro URL")
        }
        let path = URL(fileURLWithPath: source).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: path + "/Package.swift") else {
            throw Failure("\(path) is no swift-micro checkout (no Package.swift)")
        }
        // a package found by path is named by its directory
        return (".package(path: \(Self.literal(path)))", URL(fileURLWithPath: path).lastPathComponent.lowercased())
    }

    /// The checkout this tool was built from, if it is still there.
    static var builtFrom: String? {
        let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return FileManager.default.fileExists(atPath: checkout.appendingPathComponent("Package.swift").path) ? checkout.path : nil
    }

    static func literal(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// The template's file descriptor with the new names (for gRPC reflection), as the lines of a
    /// Swift byte array.
    func descriptor(name: String, pascal: String) throws -> String {
        var file = try Google_Protobuf_FileDescriptorProto(serializedBytes: NewTemplateGenerated.descriptor)
        file.name = "\(name).proto"
        file.package = name
        for s in file.service.indices {
            file.service[s].name = pascal
            for m in file.service[s].method.indices {
                file.service[s].method[m].inputType = file.service[s].method[m].inputType.replacingOccurrences(of: ".template.", with: ".\(name).")
                file.service[s].method[m].outputType = file.service[s].method[m].outputType.replacingOccurrences(of: ".template.", with: ".\(name).")
            }
        }
        let bytes: [UInt8] = try file.serializedBytes()
        return stride(from: 0, to: bytes.count, by: 16).map { start in
            "        " + bytes[start..<min(start + 16, bytes.count)].map { String(format: "0x%02x,", $0) }.joined(separator: " ")
        }.joined(separator: "\n")
    }
}
