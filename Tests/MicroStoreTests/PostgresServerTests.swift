import Foundation
import MicroTestSupport
import Testing

/// The PostgreSQL the store tests start: made, started, stopped and started again.
@Suite struct PostgresServerTests {
    @Test func aServerOfItsOwnComesUpAndBackAfterAKill() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        #expect(try await server.psql("SELECT current_user, current_database()") == "micro|micro\n")
        await server.kill9()
        try server.start()
        try await server.waitUntilReady()
        #expect(try await server.psql("SELECT 41 + 1") == "42\n")
    }
}
