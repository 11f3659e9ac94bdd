import Synchronization

/// Caps retries as a share of calls, so that a failing fleet is not stormed: each call deposits
/// `ratio` of a token, each retry withdraws one; a floor of `minimumPerSecond` tokens a second
/// lets retries through when traffic is low.
public struct RetryBudgetPolicy: Sendable {
    public var ratio: Double
    public var minimumPerSecond: Double

    public init(ratio: Double = 0.2, minimumPerSecond: Double = 10) {
        self.ratio = ratio
        self.minimumPerSecond = minimumPerSecond
    }
}

final class RetryBudget: Sendable {
    private let policy: RetryBudgetPolicy
    /// Thousandths of a token: every call deposits, so that is one atomic add, not a lock.
    private let milliTokens: Atomic<Int>
    /// When the floor last refilled the budget (retries only).
    private let refilled: Mutex<ContinuousClock.Instant>
    private static let cap = 1000 * 1000

    init(_ policy: RetryBudgetPolicy) {
        self.policy = policy
        milliTokens = Atomic(Int(policy.minimumPerSecond * 1000))
        refilled = Mutex(.now)
    }

    func deposit() {
        let add = Int(policy.ratio * 1000)
        var old = milliTokens.load(ordering: .relaxed)
        while old < Self.cap {
            let (exchanged, seen) = milliTokens.compareExchange(expected: old, desired: min(old + add, Self.cap), ordering: .relaxed)
            if exchanged { return }
            old = seen
        }
    }

    func withdraw() -> Bool {
        let now = ContinuousClock.now
        let seconds = refilled.withLock { refilled in
            defer { refilled = now }
            return (now - refilled).nanosecondsValue / 1e9
        }
        let floor = Int(policy.minimumPerSecond * 1000), refill = Int(seconds * policy.minimumPerSecond * 1000)
        var old = milliTokens.load(ordering: .relaxed)
        while true {
            // the floor tops the budget up over time, never past the floor itself
            let topped = min(old + refill, max(old, floor))
            let desired = topped >= 1000 ? topped - 1000 : topped
            let (exchanged, seen) = milliTokens.compareExchange(expected: old, desired: desired, ordering: .relaxed)
            if exchanged { return topped >= 1000 }
            old = seen
        }
    }
}
