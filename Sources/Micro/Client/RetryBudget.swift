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
    private let state: Mutex<(tokens: Double, refilled: ContinuousClock.Instant)>

    init(_ policy: RetryBudgetPolicy) {
        self.policy = policy
        state = Mutex((policy.minimumPerSecond, .now))
    }

    func deposit() {
        state.withLock { $0.tokens = min($0.tokens + policy.ratio, 1000) }
    }

    func withdraw() -> Bool {
        state.withLock { state in
            let now = ContinuousClock.now
            let elapsed = now - state.refilled
            let seconds = elapsed.nanosecondsValue / 1e9
            state.tokens = min(state.tokens + seconds * policy.minimumPerSecond, max(state.tokens, policy.minimumPerSecond))
            state.refilled = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}
