import Foundation
import Micro

/// Which keys a request concerns.
public enum EtcdKeys: Sendable, Equatable {
    /// One key.
    case key(String)
    /// Every key that starts with the text.
    case prefix(String)
    /// Keys from the first (included) to the second (excluded).
    case range(from: String, to: String)
    /// Every key.
    case all

    /// etcd's `key` and `range_end`.
    var bounds: (key: Data, end: Data) {
        switch self {
        case .key(let key): (Data(key.utf8), Data())
        case .prefix(let prefix): prefix.isEmpty ? (Data([0]), Data([0])) : (Data(prefix.utf8), Self.end(ofPrefix: Array(prefix.utf8)))
        case .range(let from, let to): (Data(from.utf8), Data(to.utf8))
        case .all: (Data([0]), Data([0]))
        }
    }

    /// The first key after every key that starts with `prefix` (`\0`, etcd's "to the end", when
    /// there is none).
    static func end(ofPrefix prefix: [UInt8]) -> Data {
        KeyRange.end(ofPrefix: prefix).map { Data($0) } ?? Data([0])
    }
}

/// A key, its value and its history.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// The revision that created the key (0: it does not exist).
    public var createRevision: Int64
    /// The revision of its last change.
    public var modRevision: Int64
    /// How many times it was written since it was created.
    public var version: Int64
    /// The lease it is attached to (0: none).
    public var lease: Int64

    public var keyString: String { String(decoding: key, as: UTF8.self) }
    public var valueString: String { String(decoding: value, as: UTF8.self) }

    init(_ kv: Mvccpb_KeyValue) {
        key = Array(kv.key)
        value = Array(kv.value)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        lease = kv.lease
    }
}

/// What a read found.
public struct EtcdRange: Sendable, Equatable {
    public var kvs: [EtcdKeyValue]
    /// How many keys the range holds (more than `kvs` when a limit cut it).
    public var count: Int64
    /// Whether a limit left keys out.
    public var more: Bool
    /// The store's revision the read saw.
    public var revision: Int64
}

/// A comparison a transaction makes before choosing its branch.
public struct EtcdCompare: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public enum Result: Sendable, Equatable { case equal, notEqual, greater, less }

    public var key: String
    public var result: Result
    public var target: Target

    public init(_ key: String, _ target: Target, _ result: Result = .equal) {
        self.key = key
        self.result = result
        self.target = target
    }

    var message: Etcdserverpb_Compare {
        var c = Etcdserverpb_Compare()
        c.key = Data(key.utf8)
        c.result = switch result {
        case .equal: .equal
        case .notEqual: .notEqual
        case .greater: .greater
        case .less: .less
        }
        switch target {
        case .version(let v): c.target = .version; c.version = v
        case .createRevision(let v): c.target = .create; c.createRevision = v
        case .modRevision(let v): c.target = .mod; c.modRevision = v
        case .value(let v): c.target = .value; c.value = Data(v)
        case .lease(let v): c.target = .lease; c.lease = v
        }
        return c
    }
}

/// One operation of a transaction's branch.
public enum EtcdOperation: Sendable, Equatable {
    case get(EtcdKeys)
    /// The one key of `keys` that was created first (none if there is none).
    case getFirstCreated(EtcdKeys)
    case put(String, [UInt8], lease: Int64 = 0)
    case delete(EtcdKeys)

    var message: Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        switch self {
        case .get(let keys): op.requestRange = EtcdClient.rangeRequest(keys)
        case .getFirstCreated(let keys):
            var range = EtcdClient.rangeRequest(keys, limit: 1)
            range.sortTarget = .create
            range.sortOrder = .ascend
            op.requestRange = range
        case .put(let key, let value, let lease): op.requestPut = EtcdClient.putRequest(key, value, lease: lease, prevKV: false)
        case .delete(let keys):
            var d = Etcdserverpb_DeleteRangeRequest()
            (d.key, d.rangeEnd) = keys.bounds
            op.requestDeleteRange = d
        }
        return op
    }
}

/// What a transaction did.
public struct EtcdTxnResult: Sendable, Equatable {
    /// Whether every comparison held (the success branch ran).
    public var succeeded: Bool
    public var revision: Int64
    /// The keys each `get` of the branch that ran found, in order.
    public var ranges: [EtcdRange]
}

/// A lease: keys attached to it go when it expires or is revoked.
public struct EtcdLease: Sendable, Equatable {
    /// The whole seconds a lease needs to last `ttl`: rounded up, at least 2 (etcd's minimum with
    /// its default timings).
    static func seconds(for ttl: Duration) -> Int64 {
        max(2, Int64((Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18).rounded(.up)))
    }

    public var id: Int64
    /// Seconds it lives without a keep-alive (etcd may grant more than asked: 2 s at least with
    /// its default timings).
    public var ttl: Int64
    /// When the grant was asked for: the lease lives at least `ttl` from then.
    public var asked: ContinuousClock.Instant

    public init(id: Int64, ttl: Int64, asked: ContinuousClock.Instant = .now) {
        self.id = id
        self.ttl = ttl
        self.asked = asked
    }
}

/// A member of the cluster.
public struct EtcdMember: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var clientURLs: [String]
    public var peerURLs: [String]
}

extension EtcdClient {
    static func rangeRequest(_ keys: EtcdKeys, limit: Int = 0, revision: Int64 = 0, keysOnly: Bool = false,
                             countOnly: Bool = false, serializable: Bool = false) -> Etcdserverpb_RangeRequest {
        var r = Etcdserverpb_RangeRequest()
        (r.key, r.rangeEnd) = keys.bounds
        r.limit = Int64(limit)
        r.revision = revision
        r.keysOnly = keysOnly
        r.countOnly = countOnly
        r.serializable = serializable
        return r
    }

    static func putRequest(_ key: String, _ value: [UInt8], lease: Int64, prevKV: Bool) -> Etcdserverpb_PutRequest {
        var r = Etcdserverpb_PutRequest()
        r.key = Data(key.utf8)
        r.value = Data(value)
        r.lease = lease
        r.prevKv = prevKV
        return r
    }

    static func range(_ r: Etcdserverpb_RangeResponse) -> EtcdRange {
        EtcdRange(kvs: r.kvs.map(EtcdKeyValue.init), count: r.count, more: r.more, revision: r.header.revision)
    }

    /// Reads keys. `limit` 0: all; `revision` 0: the present (an older one must not be
    /// compacted); `serializable`: from the member asked, without asking the leader (faster,
    /// possibly a little behind).
    public func get(_ keys: EtcdKeys, limit: Int = 0, revision: Int64 = 0, keysOnly: Bool = false, countOnly: Bool = false,
                    serializable: Bool = false) async throws(EtcdError) -> EtcdRange {
        let request = Self.rangeRequest(keys, limit: limit, revision: revision, keysOnly: keysOnly, countOnly: countOnly,
                                        serializable: serializable)
        let response: Etcdserverpb_RangeResponse = try await unary("/etcdserverpb.KV/Range", request, repeat: .whenMemberFails)
        return Self.range(response)
    }

    /// Writes a key (attached to `lease` when not 0); returns the revision written and, with
    /// `prevKV`, the value it replaced.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0, prevKV: Bool = false) async throws(EtcdError)
        -> (revision: Int64, previous: EtcdKeyValue?)
    {
        let response: Etcdserverpb_PutResponse = try await unary("/etcdserverpb.KV/Put", Self.putRequest(key, value, lease: lease, prevKV: prevKV))
        return (response.header.revision, response.hasPrevKv ? EtcdKeyValue(response.prevKv) : nil)
    }

    /// Deletes keys; returns how many went and, with `prevKV`, what they held.
    @discardableResult
    public func delete(_ keys: EtcdKeys, prevKV: Bool = false) async throws(EtcdError) -> (deleted: Int64, previous: [EtcdKeyValue]) {
        var request = Etcdserverpb_DeleteRangeRequest()
        (request.key, request.rangeEnd) = keys.bounds
        request.prevKv = prevKV
        // deleting twice deletes the same keys: safe to repeat on another member
        let response: Etcdserverpb_DeleteRangeResponse = try await unary("/etcdserverpb.KV/DeleteRange", request, repeat: .whenMemberFails)
        return (response.deleted, response.prevKvs.map(EtcdKeyValue.init))
    }

    /// If every comparison holds, runs `success`, else `failure`, atomically.
    public func txn(_ compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) async throws(EtcdError) -> EtcdTxnResult {
        try await txn(compares, success: success, failure: failure, repeat: .whenNotApplied)
    }

    /// A transaction that its caller knows can be repeated (`.whenMemberFails`): one whose
    /// compares make a second application change nothing.
    package func txn(_ compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = [],
                     repeat rule: Repeat) async throws(EtcdError) -> EtcdTxnResult {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares.map(\.message)
        request.success = success.map(\.message)
        request.failure = failure.map(\.message)
        let response: Etcdserverpb_TxnResponse = try await unary("/etcdserverpb.KV/Txn", request, repeat: rule)
        let ranges = response.responses.compactMap { op -> EtcdRange? in
            if case .responseRange(let r)? = op.response { return Self.range(r) }
            return nil
        }
        return EtcdTxnResult(succeeded: response.succeeded, revision: response.header.revision, ranges: ranges)
    }

    /// Writes `value` only if the key was last changed at `modRevision` (0: only if the key
    /// does not exist). Returns whether it wrote.
    public func compareAndSwap(_ key: String, modRevision: Int64, value: [UInt8], lease: Int64 = 0) async throws(EtcdError) -> Bool {
        try await txn([EtcdCompare(key, .modRevision(modRevision))], success: [.put(key, value, lease: lease)]).succeeded
    }

    // MARK: Leases

    /// Grants a lease of `ttl` seconds (etcd may grant more; see ``EtcdLease/ttl``).
    public func grantLease(ttl: Int64) async throws(EtcdError) -> EtcdLease {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = ttl
        let asked = ContinuousClock.now
        // repeated on any failure: a lease granted twice leaves one that no one renews, which
        // holds no key and expires after its TTL
        let response: Etcdserverpb_LeaseGrantResponse = try await unary("/etcdserverpb.Lease/LeaseGrant", request, repeat: .whenMemberFails)
        guard response.error.isEmpty else { throw EtcdError(.other, response.error) }
        return EtcdLease(id: response.id, ttl: response.ttl, asked: asked)
    }

    /// Revokes a lease: its keys are deleted at once.
    public func revokeLease(_ id: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        let _: Etcdserverpb_LeaseRevokeResponse = try await unary("/etcdserverpb.Lease/LeaseRevoke", request, repeat: .whenMemberFails)
    }

    /// Seconds the lease has left (nil: it is gone), and the keys attached to it.
    public func leaseTimeToLive(_ id: Int64) async throws(EtcdError) -> (ttl: Int64, keys: [String])? {
        var request = Etcdserverpb_LeaseTimeToLiveRequest()
        request.id = id
        request.keys = true
        let response: Etcdserverpb_LeaseTimeToLiveResponse
        do {
            response = try await unary("/etcdserverpb.Lease/LeaseTimeToLive", request, repeat: .whenMemberFails)
        } catch where error.kind == .leaseNotFound {
            return nil  // etcd answers so, or with a TTL of -1, depending on where the lease went
        }
        guard response.ttl > 0 else { return nil }
        return (response.ttl, response.keys.map { String(decoding: $0, as: UTF8.self) })
    }

    // MARK: Cluster

    /// The cluster's members.
    public func members() async throws(EtcdError) -> [EtcdMember] {
        let response: Etcdserverpb_MemberListResponse = try await unary("/etcdserverpb.Cluster/MemberList", Etcdserverpb_MemberListRequest(),
                                                                          repeat: .whenMemberFails)
        return response.members.map { EtcdMember(id: $0.id, name: $0.name, clientURLs: $0.clientUrls, peerURLs: $0.peerUrls) }
    }

    /// The status of one member: its id, the leader's id, the store's revision.
    public func status(of endpoint: String) async throws(EtcdError) -> (member: UInt64, leader: UInt64, revision: Int64) {
        let response: Etcdserverpb_StatusResponse = try await unary("/etcdserverpb.Maintenance/Status", Etcdserverpb_StatusRequest(),
                                                                      endpoint: EtcdConfiguration.normalized(endpoint) ?? endpoint)
        return (response.header.memberID, response.leader, response.header.revision)
    }

    /// Compacts the history up to `revision` (reads and watches below it then fail with
    /// ``EtcdError/Kind/compacted(compactRevision:)``).
    public func compact(_ revision: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        let _: Etcdserverpb_CompactionResponse = try await unary("/etcdserverpb.KV/Compact", request, repeat: .whenMemberFails)
    }
}
