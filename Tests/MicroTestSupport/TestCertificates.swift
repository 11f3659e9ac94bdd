public import Foundation

/// Certificates made with openssl for tests: a CA (`ca`), a server certificate for 127.0.0.1 and
/// localhost signed by it (`server`, CN `server`), a client certificate (`client`, CN `micro`,
/// the PostgreSQL test user's name), and another CA that signed none of them (`other`). Keys are
/// readable by their owner only (libpq refuses others).
public enum TestCertificates {
    /// Makes them in `dir`; the paths by file name (`ca.crt`, `server.key`, …).
    public static func make(in dir: URL) async throws -> [String: String] {
        let script = """
            set -e
            cd "\(dir.path)"
            umask 077
            for ca in ca other; do
              openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$ca" -keyout $ca.key -out $ca.crt 2>/dev/null
            done
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=server -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=micro -keyout client.key -out client.csr 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.crt 2>/dev/null
            chmod 644 *.crt
            """
        let made = try await Tool.run("sh", ["-c", script])
        guard made.status == 0 else { throw ChildError("openssl: \(made.stderr)") }
        var files: [String: String] = [:]
        for name in ["ca.crt", "other.crt", "server.crt", "server.key", "client.crt", "client.key"] {
            files[name] = dir.appendingPathComponent(name).path
        }
        return files
    }
}
