import Foundation

extension Duration {
    /// The duration in nanoseconds, as a Double (for latency estimates and jitter).
    public var nanosecondsValue: Double {
        Double(components.seconds) * 1e9 + Double(components.attoseconds) / 1e9
    }

    /// The duration in seconds, as a Double.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// The duration in whole nanoseconds (as the `Timeout` header carries it).
    public var wholeNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }

    /// Seconds from the environment variable `name` (fractions allowed), if it is set and valid
    /// (a finite number, at least a millisecond, at most 10⁹ s): `MICRO_REGISTER_TTL=2.5`. The
    /// framework passes `MicroConfig.process.frameworkEnvironment`.
    public static func seconds(fromEnvironment name: String, _ environment: [String: String]) -> Duration? {
        guard let seconds = environment[name].flatMap(Double.init), seconds >= 0.001, seconds <= 1e9 else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }
}
