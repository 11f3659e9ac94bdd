extension Duration {
    /// The deadline of a test's calls and streams where the test is not about deadlines: a guard
    /// that ends a hung test, never a bound that a slow machine reaches. The 5 s default of
    /// `CallOptions` is no such guard: under ThreadSanitizer and a concurrent build it has
    /// expired on calls that were only slow.
    static let hangGuard: Duration = .seconds(60)

    /// ``hangGuard`` as the option of `micro call`, whose default is 5 s too.
    static var hangGuardOption: [String] { ["--timeout", "\(hangGuard.components.seconds)"] }
}
