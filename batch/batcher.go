package batch

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Defaults, matching the flags of SPEC §1.
const (
	DefaultMaxBatchBytes      = 1 << 20              // --max-batch-bytes
	DefaultMaxBatchDelay      = 2 * time.Millisecond // --max-batch-delay
	DefaultMaxPending         = 10000                // --max-pending
	DefaultMaxPendingBytes    = 64 << 20             // the 64 MiB bound beside --max-pending
	DefaultMaxInflightBatches = 4
	DefaultInflightTimeout    = 5 * time.Second // --request-timeout
)

// ewmaShift sets the weight of a new latency sample to 1/8, the gain TCP
// uses for its smoothed RTT (RFC 6298 §2): about 8 batches to follow a
// step change, while one slow fsync moves the estimate by only 1/8.
const ewmaShift = 3

// NoDeadline is the wait Park returns when no timer is needed: only a
// producer's wake-up or the runtime's own events (a Finish) end the sleep.
const NoDeadline = time.Duration(math.MaxInt64)

// Config bounds a Batcher. Zero fields take the defaults above.
type Config struct {
	// MaxBatchBytes bounds one batch (sum of Proposal.SizeBytes). A single
	// proposal larger than it still goes out, alone; so MaxBatchBytes = 1
	// turns batching off (every batch is one proposal, none is held), the
	// baseline for the "adaptive on/off" benchmark.
	MaxBatchBytes int64
	// MaxBatchDelay bounds how long the batcher holds a proposal, to grow a
	// batch, while the pipeline has room. Never applied when idle. Zero
	// means the default like every field; for no hold at all, use 1ns.
	MaxBatchDelay time.Duration
	// MaxPending and MaxPendingBytes bound the proposals submitted and not
	// yet handed out in a batch; past them Submit refuses at once.
	MaxPending      int
	MaxPendingBytes int64
	// MaxInflightBatches bounds the batches handed out and not yet
	// Finished. At the bound proposals wait in the queue (that queue, not
	// the delay, is then the backpressure).
	MaxInflightBatches int
	// InflightTimeout: a batch not Finished this long after it was handed
	// out stops counting as in flight (its clients have timed out anyway),
	// so a lost Finish can never wedge the batcher.
	InflightTimeout time.Duration
	// Clock stamps submissions; a FakeClock in tests. Nil: a MonotonicClock.
	Clock Clock
	// Metrics, if not nil, receives the batcher's counters and gauges
	// (edgekv_batch_*, written at scrape time from its atomics). One
	// Batcher per set: the names are fixed. A node keeps one Batcher for
	// its life (a leader change needs no new one: PopPending and
	// Finish(id, _, false)).
	Metrics *metrics.Set
	// Observer, if not nil, receives the batcher's distributions (batch
	// sizes, waits, commit latencies) for Prometheus histograms; the
	// node's *ops.Metrics implements it. Called by the proposer goroutine
	// only, once per batch (never per proposal).
	Observer Observer
}

// Observer receives one sample per batch. Implementations must not block
// or allocate: they run on the proposer goroutine, between Raft rounds.
type Observer interface {
	// ObserveBatch: a batch left the batcher with entries proposals of
	// sizeBytes in all; oldestWaitNanos is how long its oldest proposal
	// waited in the batcher (the time the batching policy added).
	ObserveBatch(entries int, sizeBytes, oldestWaitNanos int64)
	// ObserveBatchCommit: a batch committed commitNanos after it left (a
	// sample of fsync+replication latency, the input of the hold).
	ObserveBatchCommit(commitNanos int64)
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.MaxBatchBytes == 0 {
		out.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if out.MaxBatchDelay == 0 {
		out.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if out.MaxPending == 0 {
		out.MaxPending = DefaultMaxPending
	}
	if out.MaxPendingBytes == 0 {
		out.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if out.MaxInflightBatches == 0 {
		out.MaxInflightBatches = DefaultMaxInflightBatches
	}
	if out.InflightTimeout == 0 {
		out.InflightTimeout = DefaultInflightTimeout
	}
	if out.Clock == nil {
		out.Clock = NewMonotonicClock()
	}
	switch {
	case out.MaxBatchBytes < 0:
		return out, fmt.Errorf("batch: max batch bytes %d is negative", out.MaxBatchBytes)
	case out.MaxBatchDelay < 0:
		return out, fmt.Errorf("batch: max batch delay %v is negative", out.MaxBatchDelay)
	case out.MaxPending < 0:
		return out, fmt.Errorf("batch: max pending %d is negative", out.MaxPending)
	case out.MaxPendingBytes < 0:
		return out, fmt.Errorf("batch: max pending bytes %d is negative", out.MaxPendingBytes)
	case out.MaxInflightBatches < 0 || out.MaxInflightBatches > 1<<16:
		return out, fmt.Errorf("batch: max in-flight batches %d outside [1, 65536]", out.MaxInflightBatches)
	case out.InflightTimeout < 0:
		return out, fmt.Errorf("batch: in-flight timeout %v is negative", out.InflightTimeout)
	}
	return out, nil
}

// Proposal is one client write waiting to become a Raft entry.
type Proposal struct {
	// RequestID comes from Registry.Acquire; the runtime copies it into the
	// entry so that the apply loop can complete the right waiter.
	RequestID uint64
	// Data is the encoded command. The batcher keeps only the slice header:
	// the submitter must not modify it until its waiter completes.
	Data []byte
}

// SizeBytes is what the proposal counts against byte bounds: the same
// measure as raftmsg.Entry.PayloadBytes, so the batch bound and the
// replication window agree.
func (p *Proposal) SizeBytes() int64 {
	return int64(len(p.Data)) + raftmsg.EntryOverheadBytes
}

// Trigger says why a batch left the batcher.
type Trigger uint8

const (
	// TriggerIdle: nothing was in flight, so waiting could only add latency.
	TriggerIdle Trigger = iota
	// TriggerFull: the queue held a full batch (MaxBatchBytes).
	TriggerFull
	// TriggerDelay: the oldest proposal had waited the hold time.
	TriggerDelay
	numTriggers
)

var triggerNames = [numTriggers]string{TriggerIdle: "idle", TriggerFull: "full", TriggerDelay: "delay"}

func (t Trigger) String() string {
	if t < numTriggers {
		return triggerNames[t]
	}
	return fmt.Sprintf("Trigger(%d)", uint8(t))
}

// Batch is what Next hands to the proposer.
type Batch struct {
	// ID numbers batches from 1 in the order they left; pass it to Finish.
	ID uint64
	// Proposals in submission order (FIFO per producer). The slice is the
	// batcher's buffer: valid only until the next call to Next.
	Proposals []Proposal
	// Bytes is the sum of the proposals' SizeBytes.
	Bytes          int64
	EmittedAtNanos int64
	Trigger        Trigger
}

// inflightRecord remembers one batch between Next and Finish.
type inflightRecord struct {
	id             uint64
	emittedAtNanos int64
	done           bool
}

// Batcher turns proposals submitted by many goroutines into batches for
// one proposer goroutine. See the package comment for the policy and the
// calling protocol.
type Batcher struct {
	cfg   Config
	clock Clock
	queue *Queue[Proposal]

	// Owned by the proposer goroutine.
	out []Proposal // reused batch buffer, capacity maxEntriesPerBatch
	// inflight holds the records of batches [oldestID, nextID); its length
	// is MaxInflightBatches and batch id lives at index id % len. Invariant:
	// oldestID <= nextID <= oldestID + len(inflight), and the record of
	// oldestID (when the window is not empty) is not done.
	inflight []inflightRecord
	oldestID uint64
	nextID   uint64

	// Written by the proposer goroutine, read by Stats from anywhere.
	ewmaNanos       atomic.Int64 // smoothed commit latency; 0 before the first sample
	inflightBatches atomic.Int64
	batches         [numTriggers]atomic.Uint64
	entries         atomic.Uint64
	bytes           atomic.Uint64
	waitNanos       atomic.Uint64 // sum over proposals of time in the batcher
	committed       atomic.Uint64
	failed          atomic.Uint64
	forwarded       atomic.Uint64
	expired         atomic.Uint64
	lateFinishes    atomic.Uint64

	observer Observer // nil: no distributions
}

// New returns a Batcher for cfg (zero fields take the defaults).
func New(cfg Config) (*Batcher, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	q, err := NewQueue[Proposal](c.MaxPending, c.MaxPendingBytes, c.Clock)
	if err != nil {
		return nil, fmt.Errorf("batch: proposal queue: %w", err)
	}
	// Every proposal costs at least EntryOverheadBytes, so a batch never
	// holds more than this many; one more for a lone oversized proposal.
	maxEntries := c.MaxBatchBytes/raftmsg.EntryOverheadBytes + 1
	if maxEntries > int64(c.MaxPending) {
		maxEntries = int64(c.MaxPending)
	}
	b := &Batcher{
		cfg:      c,
		clock:    c.Clock,
		queue:    q,
		out:      make([]Proposal, 0, maxEntries),
		inflight: make([]inflightRecord, c.MaxInflightBatches),
		oldestID: 1,
		nextID:   1,
		observer: c.Observer,
	}
	if c.Metrics != nil {
		b.registerMetrics(c.Metrics)
	}
	return b, nil
}

// Config returns the effective configuration (defaults applied).
func (b *Batcher) Config() Config { return b.cfg }

// Submit queues p for the next batch or refuses it at once. Safe for any
// number of goroutines; takes no mutex and does not allocate.
func (b *Batcher) Submit(p Proposal) Reason {
	return b.queue.TryPush(p, p.SizeBytes())
}

// Close refuses every later Submit with ReasonClosed and wakes the
// proposer. Proposals already queued stay: drain them with PopPending.
// Close is for shutdown, there is no reopening: from then on Park always
// reports false, so the proposer loop must end (after draining) rather
// than keep polling. A node that merely stops leading keeps the Batcher
// open and fails or forwards what PopPending returns.
func (b *Batcher) Close() { b.queue.Close() }

// Wakeup is the channel the proposer sleeps on after a successful Park.
func (b *Batcher) Wakeup() <-chan struct{} { return b.queue.Wakeup() }

// Unpark must follow every successful Park once the proposer is awake.
func (b *Batcher) Unpark() { b.queue.Unpark() }

// holdNanos is how long a proposal may wait for company while batches are
// in flight: the smoothed commit latency, capped by MaxBatchDelay. While a
// batch is being fsynced and replicated, a new batch proposed now would
// mostly wait behind it anyway (the WAL syncs in order), so holding for up
// to one commit latency costs little and lets the batch grow with the
// latency; the cap keeps the worst case bounded when the cluster is slow.
func (b *Batcher) holdNanos() int64 {
	hold := b.ewmaNanos.Load()
	if maxDelay := int64(b.cfg.MaxBatchDelay); hold > maxDelay {
		hold = maxDelay
	}
	return hold
}

// inflightLen is the number of batches in the in-flight window.
func (b *Batcher) inflightLen() int { return int(b.nextID - b.oldestID) }

// decide says whether a batch should leave now, and why. ok is false when
// the proposer should wait (queue empty, pipeline full, or holding).
func (b *Batcher) decide(nowNanos int64) (trigger Trigger, ok bool) {
	_, acceptedAt, ready := b.queue.Peek()
	if !ready {
		return 0, false
	}
	inflight := b.inflightLen()
	switch {
	case inflight == 0:
		return TriggerIdle, true
	case inflight >= len(b.inflight):
		return 0, false
	case b.queue.Bytes() >= b.cfg.MaxBatchBytes:
		return TriggerFull, true
	case nowNanos-acceptedAt >= b.holdNanos():
		return TriggerDelay, true
	}
	return 0, false
}

// Next returns the batch to propose now, if the policy says one should
// leave (see the package comment). Proposer goroutine only. The returned
// Proposals slice is valid until the next call.
func (b *Batcher) Next(nowNanos int64) (Batch, bool) {
	b.expireInflight(nowNanos)
	trigger, ok := b.decide(nowNanos)
	if !ok {
		return Batch{}, false
	}
	b.out = b.out[:0]
	var batchBytes, waitNanos, oldestWait int64
	for len(b.out) < cap(b.out) {
		size, _, ready := b.queue.Peek()
		if !ready || (len(b.out) > 0 && batchBytes+size > b.cfg.MaxBatchBytes) {
			break
		}
		p, size, acceptedAt, _ := b.queue.Pop()
		b.out = append(b.out, p)
		batchBytes += size
		wait := max(nowNanos-acceptedAt, 0)
		waitNanos += wait
		oldestWait = max(oldestWait, wait)
	}
	if len(b.out) == 0 {
		panic("batch: decided to emit but popped nothing")
	}
	id := b.nextID
	b.nextID++
	b.inflight[id%uint64(len(b.inflight))] = inflightRecord{id: id, emittedAtNanos: nowNanos}
	b.inflightBatches.Store(int64(b.inflightLen()))

	b.batches[trigger].Add(1)
	b.entries.Add(uint64(len(b.out)))
	b.bytes.Add(uint64(batchBytes))
	b.waitNanos.Add(uint64(waitNanos))
	if b.observer != nil {
		b.observer.ObserveBatch(len(b.out), batchBytes, oldestWait)
	}
	return Batch{ID: id, Proposals: b.out, Bytes: batchBytes, EmittedAtNanos: nowNanos, Trigger: trigger}, true
}

// Finish reports that batch id left the pipeline: committed (and its
// latency from Next to now is a sample of fsync+replication time) or
// failed (dropped on a leader change, refused by Raft: no sample).
// Proposer goroutine only; each id at most once. Finishing an id the
// batcher already expired (InflightTimeout) is counted and ignored.
func (b *Batcher) Finish(id uint64, nowNanos int64, committed bool) {
	outcome := outcomeFailed
	if committed {
		outcome = outcomeCommitted
	}
	b.finish(id, nowNanos, outcome)
}

// Forwarded reports that batch id left this member's pipeline for another
// one's (a follower hands its proposals to the leader): its commit is seen
// there, so it yields no latency sample and is neither committed nor
// failed here. Same rules as Finish.
func (b *Batcher) Forwarded(id uint64, nowNanos int64) { b.finish(id, nowNanos, outcomeForwarded) }

type outcome uint8

const (
	outcomeCommitted outcome = iota
	outcomeFailed
	outcomeForwarded
)

func (b *Batcher) finish(id uint64, nowNanos int64, o outcome) {
	if id == 0 || id >= b.nextID {
		panic(fmt.Sprintf("batch: Finish(%d) of a batch never handed out (next id %d)", id, b.nextID))
	}
	if id < b.oldestID {
		b.lateFinishes.Add(1)
		return
	}
	rec := &b.inflight[id%uint64(len(b.inflight))]
	if rec.id != id || rec.done {
		panic(fmt.Sprintf("batch: Finish(%d) twice", id))
	}
	rec.done = true
	switch o {
	case outcomeCommitted:
		b.committed.Add(1)
		b.sampleLatency(max(nowNanos-rec.emittedAtNanos, 0))
	case outcomeFailed:
		b.failed.Add(1)
	case outcomeForwarded:
		b.forwarded.Add(1)
	}
	b.popDone()
}

func (b *Batcher) sampleLatency(sampleNanos int64) {
	old := b.ewmaNanos.Load()
	if old == 0 {
		b.ewmaNanos.Store(max(sampleNanos, 1))
	} else {
		b.ewmaNanos.Store(max(old+(sampleNanos-old)>>ewmaShift, 1))
	}
	if b.observer != nil {
		b.observer.ObserveBatchCommit(sampleNanos)
	}
}

// popDone advances the window past finished records.
func (b *Batcher) popDone() {
	for b.oldestID < b.nextID && b.inflight[b.oldestID%uint64(len(b.inflight))].done {
		b.oldestID++
	}
	b.inflightBatches.Store(int64(b.inflightLen()))
}

// expireInflight drops batches older than InflightTimeout from the window.
func (b *Batcher) expireInflight(nowNanos int64) {
	limit := int64(b.cfg.InflightTimeout)
	for b.oldestID < b.nextID {
		rec := &b.inflight[b.oldestID%uint64(len(b.inflight))]
		if nowNanos-rec.emittedAtNanos < limit {
			break
		}
		rec.done = true
		b.expired.Add(1)
		b.oldestID++
		b.popDone()
	}
	b.inflightBatches.Store(int64(b.inflightLen()))
}

// Park prepares the proposer to sleep after Next returned nothing. ok
// false: something changed, call Next again without sleeping. ok true:
// sleep until Wakeup() fires, wait elapses (NoDeadline: no timer), or the
// runtime has a Finish to report; then call Unpark and Next again.
// Proposer goroutine only.
func (b *Batcher) Park(nowNanos int64) (wait time.Duration, ok bool) {
	if _, ok := b.decide(nowNanos); ok {
		return 0, false
	}
	_, acceptedAt, ready := b.queue.Peek()
	switch {
	case !ready:
		// Empty (or its head not yet published): the next producer to
		// publish wakes us; it is the idle case, so no timer.
		if !b.queue.Park(1) {
			return 0, false
		}
		return NoDeadline, true
	case b.inflightLen() >= len(b.inflight):
		// Pipeline full: only a Finish (the runtime's event) or the oldest
		// batch's expiry can make room; producers need not wake us.
		if !b.queue.Park(ParkNoWake) {
			return 0, false
		}
		oldest := b.inflight[b.oldestID%uint64(len(b.inflight))].emittedAtNanos
		return time.Duration(max(oldest+int64(b.cfg.InflightTimeout)-nowNanos, 0)), true
	default:
		// Holding: wake when a full batch has queued or the hold ends.
		if !b.queue.Park(b.cfg.MaxBatchBytes) {
			return 0, false
		}
		return time.Duration(max(acceptedAt+b.holdNanos()-nowNanos, 0)), true
	}
}

// PopPending removes one queued proposal without batching it, for the
// runtime to fail it (after Close, or when this node stops leading).
// Proposer goroutine only.
func (b *Batcher) PopPending() (Proposal, bool) {
	p, _, _, ok := b.queue.Pop()
	return p, ok
}

// Pending is the number of queued proposals and their bytes.
func (b *Batcher) Pending() (count int, bytes int64) { return b.queue.Len(), b.queue.Bytes() }

// CommitLatency is the smoothed fsync+replication latency (0 before the
// first committed batch).
func (b *Batcher) CommitLatency() time.Duration { return time.Duration(b.ewmaNanos.Load()) }
