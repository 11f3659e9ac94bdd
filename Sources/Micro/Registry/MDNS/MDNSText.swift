import Foundation

/// The TXT payloads of the mDNS registry's two namings.
enum MDNSText {
    /// go-micro's TXT record: the JSON of its `mdnsTxt` struct (no JSON tags, so the keys are the
    /// Go field names), zlib-compressed, hex-encoded, and cut into strings of at most 255 bytes.
    /// Service-level metadata is not carried (go-micro does not either); node metadata is.
    struct GoMicro: Codable, Equatable, Sendable {
        var metadata: [String: String]
        var service: String
        var version: String
        var endpoints: [Endpoint]

        enum CodingKeys: String, CodingKey {
            case metadata = "Metadata", service = "Service", version = "Version", endpoints = "Endpoints"
        }

        init(metadata: [String: String], service: String, version: String, endpoints: [Endpoint]) {
            self.metadata = metadata
            self.service = service
            self.version = version
            self.endpoints = endpoints
        }

        init(from decoder: any Decoder) throws {
            // Go writes a nil map or slice as null
            let c = try decoder.container(keyedBy: CodingKeys.self)
            metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
            service = try c.decodeIfPresent(String.self, forKey: .service) ?? ""
            version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
            endpoints = try c.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? []
        }
    }

    /// Largest JSON accepted from a peer once inflated (a zlib bomb is refused, not inflated).
    static let maxJSONBytes = 1 << 20

    static func encodeGoMicro(_ text: GoMicro) -> [[UInt8]] {
        let json = (try? JSONEncoder().encode(text)).map { Array($0) } ?? Array("{}".utf8)
        let hex = Array(hexDigits(Gzip.compress(json, format: .zlib)).utf8)
        return stride(from: 0, to: hex.count, by: 255).map { Array(hex[$0..<min($0 + 255, hex.count)]) }
    }

    /// nil unless the strings are hex of zlib of a JSON object with a service name.
    static func decodeGoMicro(_ strings: [[UInt8]]) -> GoMicro? {
        guard let compressed = hexBytes(strings.joined()), let json = try? Gzip.decompress(compressed[...], limit: maxJSONBytes, format: .zlib),
            let text = try? JSONDecoder().decode(GoMicro.self, from: Data(json)), !text.service.isEmpty
        else { return nil }
        return text
    }

    /// DNS-SD TXT `key=value` strings (RFC 6763 §6): keys are case-insensitive, the first of a
    /// key wins, a string without `=` is a boolean key (value "").
    static func keyValues(_ strings: [[UInt8]]) -> [String: String] {
        var result: [String: String] = [:]
        for string in strings where !string.isEmpty {
            let eq = string.firstIndex(of: UInt8(ascii: "=")) ?? string.endIndex
            let key = String(decoding: string[..<eq], as: UTF8.self).lowercased()
            guard !key.isEmpty, result[key] == nil else { continue }
            result[key] = eq < string.endIndex ? String(decoding: string[(eq + 1)...], as: UTF8.self) : ""
        }
        return result
    }

    /// `key=value` strings, each cut to 255 bytes.
    static func keyValueStrings(_ pairs: [(String, String)]) -> [[UInt8]] {
        pairs.map { Array(Array("\($0.0)=\($0.1)".utf8).prefix(255)) }
    }

    private static let digits = Array("0123456789abcdef".utf8)

    static func hexDigits(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexBytes(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(text.count / 2)
        var high: UInt8?
        for c in text {
            guard let v = value(c) else { return nil }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }
}
