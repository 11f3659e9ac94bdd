import Foundation
#if canImport(MicroCore)  // the grpc fuzz target compiles this file with Duration+Core.swift, no MicroCore
import MicroCore
#endif

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

/// Times on the call path: nanoseconds of the monotonic clock, a plain `Int64`.
///
/// Not `ContinuousClock.Instant`: the standard library keeps that type's layout its own to change
/// (resilient), so every instant an async function holds costs it a task allocation and every
/// copy a call through a witness table, and its arithmetic is 128-bit. A client call that kept its
/// start, deadline and selection times as instants made 23 task allocations before it sent
/// anything; the call path keeps nanoseconds instead.
enum Monotonic {
    /// Now, in nanoseconds since an arbitrary origin (the same for the whole process).
    @inline(__always)
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }

    /// `duration` in nanoseconds, saturating (a negative one is 0).
    static func nanoseconds(_ duration: Duration) -> Int64 { duration.saturatingNanoseconds }

    /// Nanoseconds as whole milliseconds, rounded up (what the core's deadlines take).
    static func millisecondsRoundedUp(_ nanoseconds: Int64) -> UInt64 {
        nanoseconds <= 0 ? 0 : UInt64(nanoseconds / 1_000_000) + (nanoseconds % 1_000_000 > 0 ? 1 : 0)
    }
}
