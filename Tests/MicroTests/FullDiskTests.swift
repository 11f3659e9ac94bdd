import Foundation
@testable import Micro
import MicroTestSupport
import Testing

/// The local registry on a full disk (a 64 KiB tmpfs the test mounts; it runs as root): the
/// service says why it cannot register, keeps serving, and registers once there is room, with
/// nothing left behind.
@Suite struct FullDiskTests {
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullDiskFailsRegistrationClearlyAndHarmsNothing() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-full-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let mount = try await Tool.run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir.path])
        try #require(mount.status == 0, "\(mount.stderr)")
        var mounted = true
        defer { if mounted { umount2(dir.path, Int32(MNT_DETACH)) } }
        // fill it
        let filler = dir.appendingPathComponent("filler")
        let fill = try await Tool.run("dd", ["if=/dev/zero", "of=\(filler.path)", "bs=1k", "count=128"])
        #expect(fill.status != 0)  // dd stops at "No space left on device"

        let registry = LocalRegistry(directory: dir)
        let events = try registry.events(service: "helloworld")
        let service = try await ChildService("helloworld", environment: ["MICRO_REGISTRY_ADDRESS": dir.path, "MICRO_REGISTER_INTERVAL": "0.2"])
        defer { service.stop() }
        let error = await service.waitForLine(containing: "cannot register")
        #expect(error?.contains("No space left on device") == true, "\(error ?? "nil")")
        // it serves all the same
        let call = try await Tool.run("curl", ["-s", "-H", "Micro-Endpoint: Helloworld.Greeting", "-H", "Content-Type: application/json",
                                               "-d", #"{"name":"disk"}"#, "http://127.0.0.1:\(service.port)/"])
        #expect(call.stdout == #"{"message":"Hello disk"}"#)

        // room again: the next heartbeat registers it
        try FileManager.default.removeItem(at: filler)
        var iterator = events.makeAsyncIterator()
        while let event = await iterator.next() {
            if event.action == .create { break }
        }
        let nodes = try await registry.getService("helloworld").flatMap(\.nodes)
        #expect(nodes.map(\.address) == ["127.0.0.1:\(service.port)"])
        // no temporary files left behind by the failed writes. Looked at once the service has
        // ended gracefully (it removes its node file): while it runs, a heartbeat's write has its
        // temporary file for a moment, which a listing may catch
        service.signal(SIGTERM)
        #expect(await service.waitForExit() == 0)
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir.path)
        #expect(files.allSatisfy { !$0.contains("/") }, "\(files)")  // at most the service's folder, empty
        mounted = umount2(dir.path, 0) != 0
        try? FileManager.default.removeItem(at: dir)
    }
}
