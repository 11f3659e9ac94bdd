import Foundation
import MicroCore

#if canImport(Glibc)
import Glibc
#endif

/// Why a service did not start, in one line: its description is `NAME: cannot start: REASON`,
/// e.g. `helloworld: cannot start: cannot listen on 127.0.0.1:8080: bind: Address already in use`.
///
/// ``Service/start()`` throws it; ``Service/run()`` writes it to stderr and exits with status 1
/// (see ``ServiceOptions/exitOnStartFailure``), or throws it.
public struct ServiceStartError: Error, CustomStringConvertible {
    /// The service's name.
    public let service: String
    /// What went wrong, one line, for a person.
    public let reason: String
    /// The error underneath (a ``MicroError``, a `MicroCoreError`, ...).
    public let underlying: any Error

    public init(service: String, underlying: any Error) {
        self.service = service
        self.underlying = underlying
        let text: String
        switch underlying {
        case let error as ServiceStartError: text = error.reason
        case let error as MicroError: text = error.detail
        case let error as MicroCoreError: text = error.message
        default: text = String(describing: underlying)
        }
        // one line, whatever the text underneath holds
        reason = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    public var description: String { "\(service): cannot start: \(reason)" }

    /// Writes ``description`` as one line to stderr and exits the process with status 1.
    func exitProcess() -> Never {
        FileHandle.standardError.write(Data((description + "\n").utf8))
        exit(1)
    }
}
