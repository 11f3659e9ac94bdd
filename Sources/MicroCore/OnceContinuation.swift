/// The continuation of a suspension that happens once per call on the hot paths (a client call
/// waiting for its answer, a request worker waiting for work): checked in debug builds, where a
/// leak or a second resume is reported, and unsafe in release builds, where a checked one
/// allocates an object per suspension. Every site resumes exactly once by construction (the
/// reference to the continuation is cleared before it is resumed, on one loop's thread).
#if DEBUG
typealias OnceContinuation<T> = CheckedContinuation<T, Never>

@inline(__always)
func withOnceContinuation<T>(isolation: isolated (any Actor)? = #isolation, _ body: (OnceContinuation<T>) -> Void) async -> sending T {
    await withCheckedContinuation(isolation: isolation, body)
}
#else
typealias OnceContinuation<T> = UnsafeContinuation<T, Never>

@inline(__always)
func withOnceContinuation<T>(isolation: isolated (any Actor)? = #isolation, _ body: (OnceContinuation<T>) -> Void) async -> sending T {
    await withUnsafeContinuation(isolation: isolation, body)
}
#endif
