import Synchronization

/// Values made once per kind of call (a ``CallDescriptor``) and kept, at most `limit` of them:
/// a client may call endpoints by any name, so past the limit they are made each time instead of
/// growing the table. Span names and client metrics use it.
final class DescriptorMemo<Value: Sendable>: Sendable {
    private let values = Mutex<[CallDescriptor: Value]>([:])
    let limit: Int

    init(limit: Int = 1024) {
        self.limit = limit
    }

    /// The value kept for `call`, or `make`'s (kept while there is room; one made at the same
    /// time by another thread wins).
    func value(for call: CallDescriptor, _ make: (CallDescriptor) -> Value) -> Value {
        if let known = values.withLock({ $0[call] }) { return known }
        let made = make(call)
        return values.withLock { values in
            if let raced = values[call] { return raced }
            if values.count < limit { values[call] = made }
            return made
        }
    }
}
