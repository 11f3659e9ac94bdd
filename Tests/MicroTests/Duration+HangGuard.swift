extension Duration {
    /// The deadline of a test's calls and streams where the test is not about deadlines: a guard
    /// that ends a hung test, never a bound that a slow machine reaches. The 5 s default of
    /// `CallOptions` is no such guard: under ThreadSanitizer and a concurrent build it has
    /// expired on calls that were only slow.
    static let hangGuard: Duration = .seconds(60)

    /// ``hangGuard`` as the option of `micro call`, whose default is 5 s too.
    static var hangGuardOption: [String] { ["--timeout", "\(hangGuard.components.seconds)"] }
}

extension Duration {
    /// The registration TTL of an in-process service in a test that is not about expiry. The
    /// 15 s default is renewed every 5 s by a task that waits its turn on the cooperative pool;
    /// with hundreds of tests on two cores that turn has come too late, and a node expired in the
    /// middle of a test ("service whoami not found").
    static let registrationGuard: Duration = .seconds(600)
}
