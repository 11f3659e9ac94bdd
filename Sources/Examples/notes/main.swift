// notes: a service that keeps its state in the store (SQLite on this host by default;
// MICRO_STORE=postgres MICRO_STORE_ADDRESS=postgres://… for several machines). Call it:
//   micro call notes Notes.Write '{"id": "n1", "text": "buy milk"}'
//   micro call notes Notes.Read '{"id": "n1"}'
//   micro call notes Notes.List '{"prefix": "n"}'
// A store error goes back as the matching micro error: 404 for no such note, 409 for a write
// from a stale version, 503 while the database is down.
import Foundation
import Micro
import MicroEtcd
import MicroPostgres
import MicroSQLite

MicroEtcd.install()
MicroSQLite.install()
MicroPostgres.install()

struct Note: Codable, Sendable {
    var id: String
    var text: String
    /// On read: the note's version; on write, when set: write only if it is still that one.
    var version: UInt64?
}

struct NoteID: Codable, Sendable { var id: String }
struct Listing: Codable, Sendable { var prefix: String? }
struct Notes: Codable, Sendable { var ids: [String] }

let service = Service(name: "notes")
let notes: StoreTable
do {
    notes = try Stores.default.table("notes")
} catch {
    FileHandle.standardError.write(Data("notes: cannot start: \(error)\n".utf8))
    exit(1)
}

service.handle("Notes.Write") { (note: Note, _: Context) async throws -> Note in
    var written = note
    written.version = try await notes.write(Record(key: note.id, value: Array(note.text.utf8)), ifVersion: note.version)
    return written
}

service.handle("Notes.Read") { (request: NoteID, _: Context) async throws -> Note in
    let record = try await notes.read(request.id)
    return Note(id: record.key, text: String(decoding: record.value, as: UTF8.self), version: record.version)
}

service.handle("Notes.List") { (request: Listing, _: Context) async throws -> Notes in
    Notes(ids: try await notes.list(prefix: request.prefix ?? ""))
}

try await service.run()
