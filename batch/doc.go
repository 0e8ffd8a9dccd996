// Package batch carries client requests from many HTTP handler goroutines
// to the one goroutine that proposes to Raft: a bounded lock-free queue
// with fast refusal (backpressure), an adaptive batching policy, and a
// registry through which each handler gets its request's result.
//
// It must never block or take a contended mutex on the submit path, never
// allocate per request in steady state, never hold a request longer than
// --max-batch-delay while the pipeline has room, never delay a request
// when the pipeline is idle, never keep a "busy" state that outlives the
// load, and never read the clock except through the Clock it is given.
// It knows nothing of Raft, HTTP or the store: it moves opaque proposals
// and reports counts.
//
// # Pieces
//
//	handlers ──Acquire──▶ Registry ◀──Complete(id, result)── apply loop
//	    │                                                       ▲
//	    └─Submit(Proposal)─▶ Queue ──Next──▶ proposer ──Raft──▶ commit
//	       (refusal: Reason)  (ring)  Batch   goroutine  Finish(batch id)
//
// The pieces, leaves first:
//
//   - Ring: a bounded multi-producer FIFO with per-slot sequence numbers
//     (after Vyukov): a push is one CAS on the tail, a pop one CAS on the
//     head; FIFO per producer.
//   - Queue: a Ring plus admission by count and by bytes in one CAS word,
//     refusal at once with a typed Reason, and a park/wake protocol so that
//     producers touch the wake channel only when the consumer sleeps.
//   - Batcher: the proposal Queue plus the batching policy below, the
//     in-flight window, and the metrics.
//   - Registry: a fixed table of reusable waiters (a channel and a timer
//     each, made once) indexed by the request id, with a lock-free free
//     list; a waiter's state word packs its id and phase so that Complete
//     and a timeout race on one CAS.
//
// # Batching policy (the Nagle trade-off)
//
// A batch leaves the batcher when the queue is not empty and:
//
//  1. nothing is in flight (TriggerIdle): the pipeline is idle, so waiting
//     could only add latency. A lone request never waits.
//  2. otherwise, when the queued bytes reach MaxBatchBytes (TriggerFull):
//     a full batch gains nothing by waiting.
//  3. otherwise, when the oldest queued proposal has waited the hold
//     (TriggerDelay), hold = min(smoothed commit latency, MaxBatchDelay).
//
// and in every case only while fewer than MaxInflightBatches batches are
// in flight. A batch takes proposals in order until the next one would
// pass MaxBatchBytes (a lone larger proposal leaves alone).
//
// Why: while a batch is being fsynced and replicated, a new one mostly
// waits behind it (the WAL syncs in order, followers ack in order), so
// collecting for up to one commit latency costs little and adds company.
// This is Nagle's rule for TCP: with nothing unacknowledged, send now;
// with data in flight, accumulate until the acknowledgement. The batch
// size therefore follows the measured fsync+replication time: at arrival
// rate λ and commit latency L a batch holds about λ·min(L, MaxBatchDelay)
// proposals, growing when the disk or network slows and shrinking when
// they recover. The runtime reports each batch's fate with Finish; the
// latency from Next to a committed Finish feeds an EWMA with gain 1/8 (the
// gain of TCP's smoothed RTT, RFC 6298). MaxBatchDelay caps the hold when
// the cluster is slow; MaxBatchBytes caps the batch (and the latency of
// its fsync). The in-flight window (default 4) bounds the work handed to
// Raft and not yet committed: past it, proposals wait in the bounded queue
// rather than in Raft's log, so overload turns into fast refusals at the
// queue instead of an ever longer commit latency (see the simulation in
// sim_test.go). A batch that is never finished stops counting after
// InflightTimeout, so a lost Finish cannot wedge the pipeline.
//
// # Backpressure
//
// Submit refuses at once, without blocking, when admitting the proposal
// would pass MaxPending proposals or MaxPendingBytes bytes queued
// (ReasonFullCount, ReasonFullBytes → HTTP 429 with Retry-After), when
// the proposal alone is larger than MaxPendingBytes (ReasonTooLarge →
// 413), or after Close (ReasonClosed → 503). Registry.Acquire refuses with
// ReasonFullCount when every waiter is held. The bounds are live counters
// released as the proposer drains: there is no overloaded mode to leave,
// so refusals stop as soon as the queue has room. A Retry-After of one
// second is right for all of them: the queue drains in milliseconds.
//
// Linearizable reads use the same Queue type with their own bound
// (NewReadQueue): a refused read gets 503 with Retry-After.
//
// # API for the runtime
//
// Construction (once, at start):
//
//	b, err := batch.New(batch.Config{
//		MaxBatchBytes: flags.MaxBatchBytes, MaxBatchDelay: flags.MaxBatchDelay,
//		MaxPending: flags.MaxPending,     // MaxPendingBytes: 64 MiB default
//		Clock: batch.NewMonotonicClock(),
//		Metrics: m.Set(), Observer: m, // m: the node's *ops.Metrics
//	})
//	reg, err := batch.NewRegistry[Result](2*flags.MaxPending, bootEpoch) // bootEpoch: persisted boot counter (mod 2^16)
//	reg.RegisterMetrics(set, "edgekv_batch_waiters")
//	reads, err := batch.NewReadQueue(flags.MaxPending, clock)
//	reads.RegisterMetrics(set, "edgekv_batch_reads")
//
// A write handler (any goroutine; no allocation, no mutex):
//
//	w, reason := reg.Acquire()            // refused: 429
//	if reason == batch.ReasonNone {
//		reason = b.Submit(batch.Proposal{RequestID: w.ID(), Data: cmd})
//		if reason != batch.ReasonNone { w.Cancel() } // 429 / 413 / 503 by reason
//	}
//	res, ok := w.Wait(requestTimeout)     // !ok: 504, outcome unknown
//
// The proposer goroutine (the only caller of Next, Park, Unpark, Finish,
// PopPending), see Example_proposerLoop:
//
//	for {
//		now := clock.Now()
//		for bt, ok := b.Next(now); ok; bt, ok = b.Next(now) {
//			// copy bt.Proposals into Raft entries (RequestID, Data) and
//			// propose them together; remember bt.ID with the last index.
//		}
//		wait, ok := b.Park(now)
//		if !ok { continue }
//		// sleep on b.Wakeup(), a timer of wait (unless NoDeadline), and
//		// the runtime's own events; then b.Unpark().
//	}
//
// When Raft commits the last entry of a batch: b.Finish(id, clock.Now(),
// true); when the batch is dropped (leader change, proposal refused):
// b.Finish(id, clock.Now(), false). Every applied entry with a non-zero
// RequestID: reg.Complete(entry.RequestID, result) (ignored if the waiter
// gave up or lives on another node); every dropped proposal:
// reg.Complete(id, failure). On shutdown: b.Close(), then PopPending until
// empty, completing each with a failure.
//
// Stats() snapshots are safe from any goroutine; with Config.Metrics the
// batcher registers edgekv_batch_* counters and gauges (listed at
// registerMetrics), and with Config.Observer (the node's *ops.Metrics) it
// reports each batch's size, oldest wait and commit latency, which ops
// exports as Prometheus histograms.
package batch
