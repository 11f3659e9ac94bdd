import ArgumentParser
import Foundation
import Micro

/// `micro certs init` / `micro certs issue SERVICE`: a development CA and service certificates.
struct Certs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development certificates for mutual TLS: a local CA and service certificates with SPIFFE IDs.",
        discussion: "Files live under $MICRO_CERTS_DIR (default ~/.micro/certs): ca/ca.pem, ca/ca.key, and SERVICE/{cert.pem,key.pem,ca.pem}. Serve with MICRO_TLS_CERT, MICRO_TLS_KEY and MICRO_TLS_CA pointing at a service's files.",
        subcommands: [Init.self, Issue.self]
    )

    struct Common: ParsableArguments {
        @Option(help: "Directory of the certificates (default: $MICRO_CERTS_DIR or ~/.micro/certs).") var dir: String?
        @Option(help: "SPIFFE trust domain of the identities.") var trustDomain: String = "micro.local"
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the local CA (kept if it exists, unless --force).")
        @OptionGroup var common: Common
        @Flag(help: "Replace an existing CA (certificates it issued stop being trusted).") var force = false

        func run() async throws {
            let certs = Certificates(directory: common.dir, trustDomain: common.trustDomain)
            print(try certs.initAuthority(replace: force))
        }
    }

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Issue a certificate for a service (spiffe://TRUST-DOMAIN/service/SERVICE).")
        @OptionGroup var common: Common
        @Argument(help: "The service name.") var service: String
        @Option(help: "Days the certificate is valid.") var days: Int = 365

        func run() async throws {
            let certs = Certificates(directory: common.dir, trustDomain: common.trustDomain)
            let files = try certs.issue(service: service, validity: .seconds(Int64(days) * 86400))
            print("MICRO_TLS_CERT=\(files.certificate)")
            print("MICRO_TLS_KEY=\(files.privateKey)")
            print("MICRO_TLS_CA=\(files.trustRoots)")
        }
    }
}
