package batch

import (
	"fmt"
	"sync/atomic"
)

// Reason says why a submission was refused. The zero value means accepted.
// The HTTP layer maps it to a status: ReasonFullCount and ReasonFullBytes
// to 429 for writes (503 for reads), ReasonClosed to 503, ReasonTooLarge
// to 413; every refusal but ReasonTooLarge carries Retry-After.
type Reason uint8

const (
	// ReasonNone: accepted.
	ReasonNone Reason = iota
	// ReasonFullCount: the queue holds its maximum number of items.
	ReasonFullCount
	// ReasonFullBytes: accepting the item would pass the queue's byte bound.
	ReasonFullBytes
	// ReasonTooLarge: the item alone is larger than the byte bound; it can
	// never be accepted, retrying is pointless.
	ReasonTooLarge
	// ReasonClosed: the queue is shut down (node stopping or stepping down).
	ReasonClosed
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:      "none",
	ReasonFullCount: "full_count",
	ReasonFullBytes: "full_bytes",
	ReasonTooLarge:  "too_large",
	ReasonClosed:    "closed",
}

// String is the reason's metric label value.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Error lets a Reason travel as an error; it never allocates.
func (r Reason) Error() string { return "batch: rejected: " + r.String() }

// Retryable reports whether the same request may succeed later.
func (r Reason) Retryable() bool { return r == ReasonFullCount || r == ReasonFullBytes }

// queued is one item in a Queue's ring: the value, its size as counted
// against the byte bound, and the time it was accepted (for wait metrics
// and the batcher's delay bound).
type queued[T any] struct {
	v               T
	sizeBytes       int64
	acceptedAtNanos int64 // Clock reading
}

// wakeNever is the park threshold meaning "asleep, but no producer needs
// to wake me": the consumer waits for its own timer or another event.
const wakeNever = int64(^uint64(0) >> 1)

// Queue is a bounded multi-producer single-consumer FIFO: a Ring plus an
// admission bound by count and by bytes, a reject-at-once policy with
// per-reason counters, and a park/wake protocol so that an idle consumer
// sleeps on a channel while busy producers never touch that channel.
//
// Producers: TryPush from any goroutine; it takes no mutex (atomics and
// the ring's CAS) and never allocates. Consumer: exactly one goroutine
// calls Pop, Peek, Park and Unpark.
//
// Admission reserves count and bytes (one CAS on one word) before the
// item enters the ring and the consumer releases them after it leaves, so
// at every instant count <= maxCount and bytes <= maxBytes hold, and an
// item is refused only if admitting it would really pass a bound. Nothing
// is sticky: the bounds are
// live counters, so once the consumer drains, the next push is admitted —
// there is no "busy" mode to leave.
type Queue[T any] struct {
	ring *Ring[queued[T]]

	_ [cacheLineBytes]byte
	// admitted packs, for the items admitted and not yet popped, their
	// number (low admittedCountBits bits; <= maxCount) and the sum of their
	// sizes (high bits; <= maxBytes), so that one CAS reserves both bounds
	// exactly and a gauge never shows more than the bound.
	admitted atomic.Uint64
	_        [cacheLineBytes - 8]byte
	// wakeAt is 0 while the consumer is awake; while it is parked it is the
	// queued-bytes level at which a producer must wake it (1: any item;
	// wakeNever: none). Producers read it after publishing their item and
	// the consumer re-checks the queue after storing it, so with Go's
	// sequentially consistent atomics one of the two always sees the other
	// (no lost wake-up).
	wakeAt atomic.Int64
	_      [cacheLineBytes - 8]byte

	closed   atomic.Bool
	maxCount int64
	maxBytes int64
	wake     chan struct{} // capacity 1: at most one pending wake token
	clock    Clock

	rejected [numReasons]atomic.Uint64
	accepted atomic.Uint64

	// testHookParking, when set by a test, runs inside Park between
	// announcing the sleep and re-checking the queue.
	testHookParking func()
}

// NewQueue returns a queue admitting at most maxCount items and maxBytes
// bytes. clock stamps each accepted item.
func NewQueue[T any](maxCount int, maxBytes int64, clock Clock) (*Queue[T], error) {
	if maxBytes < 1 || maxBytes > maxQueueBytes {
		return nil, fmt.Errorf("batch: queue byte bound %d outside [1, %d]", maxBytes, int64(maxQueueBytes))
	}
	if clock == nil {
		return nil, fmt.Errorf("batch: queue needs a clock")
	}
	r, err := NewRing[queued[T]](maxCount)
	if err != nil {
		return nil, fmt.Errorf("batch: queue: %w", err)
	}
	return &Queue[T]{
		ring:     r,
		maxCount: int64(maxCount),
		maxBytes: maxBytes,
		wake:     make(chan struct{}, 1),
		clock:    clock,
	}, nil
}

// TryPush admits v, counted as sizeBytes against the byte bound, or
// refuses it at once with the reason. It never blocks and never allocates.
func (q *Queue[T]) TryPush(v T, sizeBytes int64) Reason {
	if sizeBytes < 0 {
		panic("batch: negative item size") // a caller bug, not input
	}
	if q.closed.Load() {
		return q.reject(ReasonClosed)
	}
	if sizeBytes > q.maxBytes {
		return q.reject(ReasonTooLarge)
	}
	if r := q.reserve(sizeBytes); r != ReasonNone {
		return q.reject(r)
	}
	// The reservation guarantees a free cell: items in the ring never
	// outnumber count <= maxCount <= Cap, and the consumer frees a cell
	// before it gives back the reservation.
	if !q.ring.TryPush(queued[T]{v: v, sizeBytes: sizeBytes, acceptedAtNanos: q.clock.Now()}) {
		panic("batch: ring full despite a count reservation")
	}
	q.accepted.Add(1)
	q.maybeWake()
	return ReasonNone
}

// reserve admits one item of sizeBytes against both bounds, or says which
// bound refuses it. The CAS loop is lock-free: it retries only when another
// producer or the consumer changed the word, i.e. made progress.
func (q *Queue[T]) reserve(sizeBytes int64) Reason {
	for {
		cur := q.admitted.Load()
		count, bytes := unpackAdmitted(cur)
		switch {
		case count+1 > q.maxCount:
			return ReasonFullCount
		case bytes+sizeBytes > q.maxBytes:
			return ReasonFullBytes
		}
		if q.admitted.CompareAndSwap(cur, cur+packAdmitted(1, sizeBytes)) {
			return ReasonNone
		}
	}
}

// release gives back the reservation of one popped item.
func (q *Queue[T]) release(sizeBytes int64) {
	// Subtracting never borrows across the fields: the item was counted in
	// both, so each field is at least its share.
	q.admitted.Add(^(packAdmitted(1, sizeBytes) - 1))
}

const (
	admittedCountBits = 25 // holds maxRingCapacity
	admittedCountMask = 1<<admittedCountBits - 1
	// maxQueueBytes is what the remaining 39 bits hold, halved for margin.
	maxQueueBytes = 1 << (64 - admittedCountBits - 1)
)

func packAdmitted(count, bytes int64) uint64 {
	return uint64(bytes)<<admittedCountBits | uint64(count)
}

func unpackAdmitted(w uint64) (count, bytes int64) {
	return int64(w & admittedCountMask), int64(w >> admittedCountBits)
}

func (q *Queue[T]) reject(r Reason) Reason {
	q.rejected[r].Add(1)
	return r
}

// maybeWake wakes a parked consumer whose threshold is reached. The fast
// path (consumer awake: the common case under load) is one atomic load.
func (q *Queue[T]) maybeWake() {
	at := q.wakeAt.Load()
	if at == 0 || (at > 1 && q.Bytes() < at) {
		return
	}
	if q.wakeAt.CompareAndSwap(at, 0) {
		select {
		case q.wake <- struct{}{}:
		default: // a token is already pending
		}
	}
}

// Close makes every later TryPush fail with ReasonClosed and wakes the
// consumer. Items already admitted stay poppable. Idempotent.
func (q *Queue[T]) Close() {
	q.closed.Store(true)
	q.wakeAt.Store(0)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Closed reports whether Close was called.
func (q *Queue[T]) Closed() bool { return q.closed.Load() }

// Len is the number of admitted items not yet popped (including ones whose
// producer has not finished publishing them).
func (q *Queue[T]) Len() int {
	count, _ := unpackAdmitted(q.admitted.Load())
	return int(count)
}

// Bytes is the sum of the sizes of those items.
func (q *Queue[T]) Bytes() int64 {
	_, bytes := unpackAdmitted(q.admitted.Load())
	return bytes
}

// MaxCount and MaxBytes are the admission bounds.
func (q *Queue[T]) MaxCount() int    { return int(q.maxCount) }
func (q *Queue[T]) MaxBytes() int64  { return q.maxBytes }
func (q *Queue[T]) Accepted() uint64 { return q.accepted.Load() }

// Rejected is the number of refusals for reason r since creation.
func (q *Queue[T]) Rejected(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	return q.rejected[r].Load()
}

// Pop removes the oldest ready item. Consumer only.
func (q *Queue[T]) Pop() (v T, sizeBytes int64, acceptedAtNanos int64, ok bool) {
	it, ok := q.ring.TryPop()
	if !ok {
		return v, 0, 0, false
	}
	// Release after the ring freed the cell (see TryPush).
	q.release(it.sizeBytes)
	return it.v, it.sizeBytes, it.acceptedAtNanos, true
}

// Peek describes the oldest ready item without removing it. Consumer only.
func (q *Queue[T]) Peek() (sizeBytes int64, acceptedAtNanos int64, ok bool) {
	it, ok := q.ring.peek()
	if !ok {
		return 0, 0, false
	}
	return it.sizeBytes, it.acceptedAtNanos, true
}

// Park announces that the consumer is about to sleep until a producer has
// queued at least wakeAtBytes bytes (1: any item; use ParkNoWake for none).
// It reports false, and stays awake, when that is already the case; then
// the consumer must poll again instead of sleeping. After a true result
// the consumer sleeps on Wakeup() (and whatever else it waits for) and
// calls Unpark when it wakes. Consumer only.
func (q *Queue[T]) Park(wakeAtBytes int64) bool {
	if wakeAtBytes < 1 {
		wakeAtBytes = 1
	}
	q.wakeAt.Store(wakeAtBytes)
	if q.testHookParking != nil {
		q.testHookParking() // a test pushes here: the lost-wake-up window
	}
	if q.closed.Load() || q.readyFor(wakeAtBytes) {
		q.wakeAt.Store(0)
		return false
	}
	return true
}

// ParkNoWake is the Park threshold meaning no producer wakes the consumer.
const ParkNoWake = wakeNever

func (q *Queue[T]) readyFor(wakeAtBytes int64) bool {
	if wakeAtBytes == 1 {
		// "Any item" means a published one: a reserved but unpublished
		// item will wake us itself when its producer publishes it.
		_, ok := q.ring.peek()
		return ok
	}
	return q.Bytes() >= wakeAtBytes
}

// Unpark ends a sleep that Park began (whatever woke the consumer).
func (q *Queue[T]) Unpark() { q.wakeAt.Store(0) }

// Wakeup is the channel a parked consumer sleeps on. A token may be stale
// (a wake that raced with the consumer's own wake-up): waking and finding
// nothing to do is harmless.
func (q *Queue[T]) Wakeup() <-chan struct{} { return q.wake }

// ReadRequest is a linearizable read waiting for a ReadIndex round
// (Raft thesis §6.4): the waiter's id, which the runtime completes once
// the read index is confirmed and applied; the handler then reads.
type ReadRequest struct{ RequestID uint64 }

// DefaultMaxPendingReadBytes bounds the read queue's bytes; a read counts
// ReadRequestBytes, so in practice the count bound applies.
const (
	DefaultMaxPendingReadBytes = 64 << 20
	ReadRequestBytes           = 16
)

// NewReadQueue returns the bounded queue for linearizable reads: at most
// maxPending reads wait for a ReadIndex round; past it TryPush refuses at
// once (HTTP 503 with Retry-After). Push with size ReadRequestBytes.
func NewReadQueue(maxPending int, clock Clock) (*Queue[ReadRequest], error) {
	q, err := NewQueue[ReadRequest](maxPending, DefaultMaxPendingReadBytes, clock)
	if err != nil {
		return nil, fmt.Errorf("batch: read queue: %w", err)
	}
	return q, nil
}
