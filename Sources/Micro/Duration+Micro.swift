public import Foundation

extension Duration {
    /// The duration in nanoseconds, as a Double (for latency estimates and jitter).
    public var nanosecondsValue: Double {
        Double(components.seconds) * 1e9 + Double(components.attoseconds) / 1e9
    }

    /// The duration in whole nanoseconds (as the `Timeout` header carries it).
    public var wholeNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }

    /// Seconds from the environment variable `name` (fractions allowed), if it is set and valid:
    /// `MICRO_REGISTER_TTL=2.5`.
    public static func seconds(fromEnvironment name: String, _ environment: [String: String] = ProcessInfo.processInfo.environment) -> Duration? {
        environment[name].flatMap(Double.init).map { .milliseconds(Int($0 * 1000)) }
    }
}
