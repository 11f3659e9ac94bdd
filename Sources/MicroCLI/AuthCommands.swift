import ArgumentParser
import Foundation
import Micro

/// `micro auth`: key pairs, tokens and rules (go-micro's JWT auth).
struct AuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth",
        abstract: "Make key pairs and tokens, inspect tokens, and manage the rules services enforce.",
        discussion: """
            Services check tokens when MICRO_AUTH=jwt, with MICRO_AUTH_PUBLIC_KEY; tokens are signed with \
            MICRO_AUTH_PRIVATE_KEY. Rules live in the store (MICRO_STORE), database micro, table auth_rules: every service \
            using that store sees a change within a second.
              eval "$(micro auth keys)"
              micro auth token alice --scopes admin --expiry 1h
              micro auth rules create admins --resource 'service:billing:*' --scope admin
              micro call --token "$TOKEN" billing Invoices.List '{}'
            """,
        subcommands: [Keys.self, TokenCommand.self, Inspect.self, Rules.self])

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("micro auth: \(message)\n".utf8))
        Foundation.exit(1)
    }

    /// The auth of the environment (MICRO_AUTH_PUBLIC_KEY, MICRO_AUTH_PRIVATE_KEY), whatever
    /// MICRO_AUTH says: the tool signs and inspects for the services.
    static func environmentAuth() -> JWTAuth {
        var environment = MicroConfig.process.frameworkEnvironment
        environment["MICRO_AUTH"] = "jwt"
        do {
            guard let (auth, _) = try ServiceAuth.fromEnvironment(environment, store: MemoryStore()) else { fail("no auth") }
            return auth.auth
        } catch {
            fail(error.description)
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print MICRO_AUTH_PUBLIC_KEY and MICRO_AUTH_PRIVATE_KEY lines for a new key pair (base64 of PEM).")

        @Option(help: "ed25519 (EdDSA: the shortest tokens, the fastest signing), rsa (RS256: tokens go-micro can verify) or ec (ES256).")
        var type = "ed25519"

        func run() async throws {
            let kind: SigningKey.Kind
            switch type.lowercased() {
            case "rsa": kind = .rsa
            case "ec", "p256", "es256": kind = .p256
            case "ed25519", "eddsa": kind = .ed25519
            default: throw ValidationError("--type is rsa, ec or ed25519")
            }
            do {
                let key = try SigningKey.generate(kind)
                let base64 = { (text: String) in Data(text.utf8).base64EncodedString() }
                print("MICRO_AUTH_PUBLIC_KEY=\(base64(key.publicPEM))")
                print("MICRO_AUTH_PRIVATE_KEY=\(base64(key.privatePEM ?? ""))")
            } catch {
                AuthCommand.fail(error.description)
            }
        }
    }

    struct TokenCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token",
            abstract: "Print an access token for ACCOUNT, signed with MICRO_AUTH_PRIVATE_KEY.")

        @Argument(help: "The account's id (the token's sub).") var account: String
        @Option(help: "Its scopes, comma separated.") var scopes: String = ""
        @Option(help: "user or service.") var type = "user"
        @Option(help: "How long it lives: 90s, 15m, 1h, 7d.") var expiry = "1h"
        @Option(name: .customLong("metadata"), help: "key=value (repeatable).") var metadata: [String] = []

        func run() async throws {
            guard let lifetime = parseDuration(expiry) else { throw ValidationError("--expiry is a number and s, m, h or d: 90s, 15m, 1h, 7d") }
            let scopes = scopes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let auth = AuthCommand.environmentAuth()
            do {
                let token = try auth.sign(Account(id: account, type: type, issuer: auth.issuer, scopes: scopes,
                                                  metadata: try keyValues(metadata, what: "metadata")), expiry: lifetime)
                print(token)
            } catch let error as AuthError {
                AuthCommand.fail(error.description)
            }
        }
    }

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the account a token names, as JSON, if MICRO_AUTH_PUBLIC_KEY verifies it (exit 1 with why if not).")

        @Argument(help: "The access token.") var token: String

        func run() async throws {
            let auth = AuthCommand.environmentAuth()
            do {
                let account = try auth.inspect(token)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try encoder.encode(account), as: UTF8.self))
            } catch let error as AuthError {
                AuthCommand.fail(error.description)
            }
        }
    }

    struct Rules: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create, list and delete the rules in the store.",
            subcommands: [Create.self, List.self, Delete.self])

        static func with(_ body: (AuthRules) async throws -> Void) async {
            let store = StoreCommand.open()
            do {
                try await body(AuthRules(store: store))
            } catch {
                await store.close()
                AuthCommand.fail("\(error)")
            }
            await store.close()
        }

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create (or replace) the rule ID.")

            @Argument(help: "The rule's id.") var id: String
            @Option(help: "TYPE:NAME:ENDPOINT, * for any part, ENDPOINT/* or Service.* for a prefix: service:helloworld:Say.Hello.")
            var resource: String
            @Option(help: "Who it is for: an account scope, * for any account, \"\" for everyone (public).") var scope: String
            @Option(help: "granted or denied.") var access = "granted"
            @Option(help: "Higher first.") var priority: Int32 = 0

            func run() async throws {
                guard let access = Rule.Access(rawValue: access.lowercased()) else { throw ValidationError("--access is granted or denied") }
                let parsed: Resource
                do {
                    parsed = try Resource(parsing: resource)
                } catch {
                    throw ValidationError(error.message)
                }
                let rule = Rule(id: id, scope: scope, resource: parsed, access: access, priority: priority)
                await Rules.with { rules in try await rules.create(rule) }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Print the rules: ID, SCOPE, RESOURCE, ACCESS, PRIORITY.")

            func run() async throws {
                await Rules.with { rules in
                    for rule in try await rules.list() {
                        print("\(rule.id)\t\(rule.scope.isEmpty ? "\"\"" : rule.scope)\t\(rule.resource)\t\(rule.access.rawValue)\t\(rule.priority)")
                    }
                }
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete the rule ID (exit 1 if there is none).")

            @Argument(help: "The rule's id.") var id: String

            func run() async throws {
                await Rules.with { rules in try await rules.delete(id) }
            }
        }
    }
}

/// `90s`, `15m`, `1h`, `7d`, or a number of seconds.
func parseDuration(_ text: String) -> Duration? {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var number = Substring(text), scale = 1.0
    if let last = text.last, let unit = units[last] {
        number = text.dropLast()
        scale = unit
    }
    guard let value = Double(number), value > 0, value.isFinite, value * scale <= 10 * 365 * 86400 else { return nil }
    return .milliseconds(Int64(value * scale * 1000))
}
