// counter: the streaming example, serving Protos/counter.proto with one method of each kind.
// Over gRPC (/counter.Counter/Count, ...) and the micro protocol over HTTP/2 (Counter.Count with
// a Micro-Stream header); try it with the micro tool:
//   micro stream counter Counter.Count <<< '{"count":3}'
//   printf '{"value":1}\n{"value":2}\n' | micro stream counter Counter.Sum
//   printf '{"text":"a"}\n{"text":"b"}\n' | micro stream counter Counter.Echo
import CounterProto
import Foundation
import Logging
import Micro

// The synchronous protocol: its unary method (ping) answers without waiting, so it is not async;
// the stream methods are async in either protocol.
struct Counter: CounterSynchronousHandler {
    func ping(_ request: Counter_Note, context: Context) throws -> Counter_Note { request }

    /// `count` ticks as fast as the caller reads them; each padded to `size` bytes.
    func count(_ request: Counter_CountRequest, responses: MessageWriter<Counter_Tick>, context: Context) async throws {
        guard request.count >= 0, (0...1_048_576).contains(request.size) else {
            throw MicroError.badRequest("counter", "count must be >= 0 and size within 0...1048576")
        }
        var tick = Counter_Tick()
        tick.pad = Data(repeating: 0x2e, count: Int(request.size))
        var sent: Int64 = 0
        do {
            while sent < request.count {
                tick.n = sent + 1
                try await responses.write(tick)
                sent += 1
            }
        } catch {
            // the caller went away or its deadline passed: say so (the tests watch for it)
            context.logger.notice("Counter.Count stopped after \(sent) of \(request.count) ticks: \(error)")
            throw error
        }
    }

    func sum(_ requests: MessageStream<Counter_Number>, context: Context) async throws -> Counter_Total {
        var total = Counter_Total()
        for try await number in requests {
            total.sum &+= number.value
            total.count += 1
        }
        return total
    }

    func echo(_ requests: MessageStream<Counter_Note>, responses: MessageWriter<Counter_Note>, context: Context) async throws {
        for try await note in requests {
            if note.text == "fail" { throw MicroError(id: "counter", code: 412, detail: "asked to fail") }
            try await responses.write(note)
        }
    }
}

let service = Service(name: "counter")
service.register(Counter())
try await service.run()
