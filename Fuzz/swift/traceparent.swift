// libFuzzer target `traceparent`: a caller's W3C trace context (`traceparent`, then `tracestate`
// after the first newline), which every traced service reads from the network. Nothing may
// crash; what parses has ids of the right length, in lower-case hex, not all zero, the digits it
// was given, and prints back as a version-00 header that parses to the same context.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
    let state = parts.count > 1 ? String(parts[1]) : nil
    guard let trace = TraceContext(traceparent: String(parts[0]), tracestate: state) else { return 0 }
    let hex = Set("0123456789abcdef")
    precondition(trace.traceID.count == 32 && trace.spanID.count == 16, "an id of the wrong length")
    precondition(trace.traceID.allSatisfy(hex.contains) && trace.spanID.allSatisfy(hex.contains), "an id that is not lower-case hex")
    precondition(trace.traceID.contains { $0 != "0" } && trace.spanID.contains { $0 != "0" }, "an all-zero id")
    precondition((trace.traceState?.utf8.count ?? 0) <= 512, "an oversize tracestate kept")
    precondition(TraceContext(traceparent: trace.traceparent, tracestate: trace.traceState) == trace, "the header does not round-trip")
    let given = Array(parts[0].utf8)
    precondition(Array(trace.traceID.utf8) == Array(given[3..<35]) && Array(trace.spanID.utf8) == Array(given[36..<52]),
                 "ids read differently from how they were written")
    return 0
}
