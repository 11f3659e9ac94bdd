import DequeModule

/// Runs request handlers on long-lived worker tasks of one loop instead of a new task per request.
///
/// A new task per request costs its creation, an executor-preference record, a first slab for
/// its async frames and its teardown: about a tenth of a small request's time. A worker is a task
/// that takes requests from the loop's queue and awaits their handlers one after the other, and
/// its task allocator keeps its slabs, so a request that does not suspend allocates nothing for
/// the task at all.
///
/// Handlers still run concurrently. When a handler suspends (it calls another service, sleeps,
/// waits for a stream), its worker stays with that request, and the next request that arrives
/// finds no worker looking at the queue: a parked worker is woken, or a new one started. So there
/// are as many workers as requests suspended at once, plus at most `maxParked` idle ones. Requests
/// that arrived together are queued before any handler runs, so a worker about to run a handler
/// while others wait first makes sure another worker is on its way.
///
/// What the server's ``HTTPServer/Immediate`` answers without suspending (a synchronous handler,
/// an error) is answered before any of this, in the core's request callback itself: no queue, no
/// worker woken, no job. Only what it leaves goes to the workers, in the order it arrived.
///
/// Cancellation is per task and cannot be undone: when the client of the request a worker serves
/// goes away, that worker's task is cancelled (the handler sees it, as before), and the worker
/// ends after that request instead of serving another one with a cancelled task.
///
/// Threading: loop-confined. Requests arrive from the core's callbacks and workers run as jobs
/// of the same loop, never both at once, so a worker that is "in a handler" when a request
/// arrives is suspended there.
final class RequestWorkers: @unchecked Sendable {
    // @unchecked Sendable: every property is read and written on `loop`'s thread only (see the
    // type's comment); `stop()` hops there first.
    let loop: EventLoop
    let handler: HTTPServer.Handler
    /// Tried first for each request (see ``HTTPServer/Immediate``).
    let immediate: HTTPServer.Immediate?
    // Loop-confined state touched for every request: exclusivity cannot be violated across
    // threads, and no access here overlaps another, so the dynamic checks are left out.
    /// Requests waiting for a worker, oldest first.
    @exclusivity(unchecked) private var queue = Deque<InFlightRequest>()
    /// Workers woken or started that will look at the queue before they park or run a handler.
    @exclusivity(unchecked) private var looking = 0
    @exclusivity(unchecked) private var parked: [Worker] = []
    private var stopped = false
    /// The paths of this loop's recent requests, whose Strings its next requests reuse.
    let recentPaths = RecentStrings()
    /// Idle workers kept per loop; more end.
    static let maxParked = 32

    init(loop: EventLoop, immediate: HTTPServer.Immediate? = nil, handler: @escaping HTTPServer.Handler) {
        self.loop = loop
        self.immediate = immediate
        self.handler = handler
    }

    /// On the loop thread, in the core's request callback: answers the request right here if
    /// `immediate` can (no worker, no queue, no job), else queues it and makes sure a worker will
    /// take it.
    func submit(_ call: InFlightRequest) {
        if immediate != nil, immediate!(HTTPServerRequest(call), HTTPResponder(call)) {
            call.complete(HTTPServerResponse.handlerReturnedWithoutAnswer)
            return
        }
        queue.append(call)
        ensureLooking()
    }

    /// While requests wait, one worker at least must be on its way to the queue.
    private func ensureLooking() {
        guard !queue.isEmpty, looking == 0 else { return }
        looking += 1
        if let worker = parked.popLast() {
            worker.wake(true)
        } else {
            let worker = Worker(self)
            worker.task = Task(executorPreference: loop) { await worker.run() }
        }
    }

    /// Ends the parked workers (the server closed). Any thread.
    func stop() {
        loop.execute {
            self.stopped = true
            let parked = self.parked
            self.parked = []
            for worker in parked { worker.wake(false) }
        }
    }

    final class Worker: @unchecked Sendable {
        // @unchecked Sendable: loop-confined like its owner.
        let owner: RequestWorkers
        var task: Task<Void, Never>?
        /// The request whose handler it runs, if any.
        @exclusivity(unchecked) var current: InFlightRequest?
        private var waiting: OnceContinuation<Bool>?

        init(_ owner: RequestWorkers) { self.owner = owner }

        func wake(_ again: Bool) {
            let waiting = self.waiting
            self.waiting = nil
            waiting?.resume(returning: again)
        }

        /// The client of `call` went away while this worker runs its handler.
        func cancel(_ call: InFlightRequest) {
            guard current === call else { return }
            cancelled = true
            task?.cancel()
        }

        /// Its task was cancelled (only `cancel(_:)` does: the task is private to the worker).
        private var cancelled = false

        func run() async {
            let owner = self.owner
            while true {
                while let call = owner.queue.popFirst() {
                    owner.looking -= 1
                    // requests that arrived with this one must not wait for its handler, which
                    // may suspend: another worker runs after this one yields (if this handler
                    // does not suspend, that worker finds the queue drained and parks again)
                    owner.ensureLooking()
                    current = call
                    call.worker = self
                    // its client went away while it waited in the queue, when it had no worker
                    // to cancel: the handler runs cancelled (nothing else would ever cancel it,
                    // since a gone exchange arms no deadline)
                    if call.isGone { cancel(call) }
                    // `immediate` had its try in `submit`
                    await owner.handler(HTTPServerRequest(call), HTTPResponder(call))
                    call.complete(HTTPServerResponse.handlerReturnedWithoutAnswer)
                    call.worker = nil
                    current = nil
                    // a cancelled task stays cancelled: end rather than hand it the next request
                    if cancelled { return finish() }
                    owner.looking += 1
                }
                owner.looking -= 1
                if owner.stopped || owner.parked.count >= RequestWorkers.maxParked { return finish() }
                let again = await withOnceContinuation { (continuation: OnceContinuation<Bool>) in
                    waiting = continuation
                    owner.parked.append(self)
                }
                if !again { return finish() }
            }
        }

        private func finish() {
            task = nil  // the task's last reference to its worker goes with it
        }
    }
}
