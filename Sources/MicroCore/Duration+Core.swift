extension Duration {
    /// Whole nanoseconds, saturating: 0 for a duration that is not positive, `Int64.max` for one
    /// too long to count in them. (The standard library only; the grpc fuzz target compiles this
    /// file with Micro's Duration+Micro.swift.)
    package var saturatingNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        guard seconds < 9_000_000_000 else { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
