package batch

import (
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Request id layout (62 bits used; the top two stay zero because a
// waiter's state word packs the id with a 2-bit phase):
//
//	 63 62 61           46 45              slotBits  slotBits-1       0
//	+-----+---------------+----------------------------+----------------+
//	| 0 0 |  epoch (16)   |  generation of the slot    |  slot index    |
//	+-----+---------------+----------------------------+----------------+
//
// The slot index finds the waiter in O(1) without a map; the generation
// (bumped on every Acquire of that slot, never 0) makes an id unique
// within a registry's life (a slot is reused 2^(46-slotBits) times before
// its generation wraps, over 67 million with the largest registry); the
// epoch, which the runtime takes from a boot counter it persists, keeps
// ids of an earlier boot of the node (still in its log, applied after a
// restart) from matching a waiter of this boot.
const (
	idEpochShift    = 46
	maxRegistrySlot = 1 << 20
)

// MaxRegistryCapacity is the largest capacity NewRegistry accepts (the
// runtime keeps two waiters per --max-pending).
const MaxRegistryCapacity = maxRegistrySlot

// Waiter phases, the low two bits of Waiter.state.
const (
	phaseWaiting   = 1
	phaseCompleted = 2
)

// Registry hands out request ids and lets a submitter block until the
// runtime completes its id, with no channel, timer or allocation per
// request: a fixed table of Waiters (each with a reused channel and timer)
// and a lock-free free list. R is the runtime's result type.
//
// Protocol: a handler calls Acquire, puts w.ID() in its Proposal, submits,
// then Wait(timeout) (or Cancel if the submit was refused). The apply loop
// calls Complete(id, result) for every applied or failed entry whose
// RequestID is non-zero; an id whose waiter gave up (timed out) or never
// existed here is ignored (Complete reports false). Complete never blocks.
type Registry[R any] struct {
	waiters  []Waiter[R]
	free     *Ring[uint32]
	slotBits uint
	epoch    uint64
	genMask  uint64

	inUse     atomic.Int64
	completed atomic.Uint64
	stale     atomic.Uint64 // Complete of an id with no waiting waiter
	timedOut  atomic.Uint64
	exhausted atomic.Uint64 // Acquire with every waiter in use
}

// Waiter is one submitter's rendezvous with the apply loop. Its fields
// other than state are owned by whoever holds it (between Acquire and the
// end of Wait/Cancel), except result, which Complete writes after winning
// the state CAS and the owner reads only after receiving the token.
type Waiter[R any] struct {
	// state is id<<2 | phase while held, 0 while free or abandoned.
	state  atomic.Uint64
	id     uint64
	gen    uint64
	index  uint32
	reg    *Registry[R]
	result R
	done   chan struct{} // capacity 1; exactly one token per completion
	timer  *time.Timer
}

// NewRegistry returns a registry of capacity waiters (at most 2^20),
// issuing ids in the given epoch.
func NewRegistry[R any](capacity int, epoch uint16) (*Registry[R], error) {
	if capacity < 1 || capacity > maxRegistrySlot {
		return nil, fmt.Errorf("batch: registry capacity %d outside [1, %d]", capacity, maxRegistrySlot)
	}
	// Twice the capacity, so that a release only rarely meets a cell whose
	// pop is still being published (see release).
	free, err := NewRing[uint32](2 * capacity)
	if err != nil {
		return nil, fmt.Errorf("batch: registry free list: %w", err)
	}
	slotBits := uint(bits.Len(uint(capacity - 1)))
	r := &Registry[R]{
		waiters:  make([]Waiter[R], capacity),
		free:     free,
		slotBits: slotBits,
		epoch:    uint64(epoch),
		genMask:  1<<(idEpochShift-slotBits) - 1,
	}
	for i := range r.waiters {
		w := &r.waiters[i]
		w.index = uint32(i)
		w.reg = r
		w.done = make(chan struct{}, 1)
		w.timer = time.NewTimer(time.Hour)
		w.timer.Stop()
		if !free.TryPush(uint32(i)) {
			panic("batch: registry free list smaller than the registry")
		}
	}
	return r, nil
}

// Acquire takes a free waiter with a fresh id, or refuses at once with
// ReasonFullCount when every waiter is held (the HTTP layer answers 429).
// Lock-free, no allocation.
func (r *Registry[R]) Acquire() (*Waiter[R], Reason) {
	idx, ok := r.free.TryPop()
	if !ok {
		r.exhausted.Add(1)
		return nil, ReasonFullCount
	}
	w := &r.waiters[idx]
	w.gen = (w.gen + 1) & r.genMask
	if w.gen == 0 {
		w.gen = 1 // id 0 means "no request" in raftmsg.Entry
	}
	w.id = r.epoch<<idEpochShift | w.gen<<r.slotBits | uint64(idx)
	w.state.Store(w.id<<2 | phaseWaiting)
	r.inUse.Add(1)
	return w, ReasonNone
}

// ID is the request id to carry in the proposal.
func (w *Waiter[R]) ID() uint64 { return w.id }

// Complete hands result to the waiter of id, if one is still waiting, and
// reports whether it did. Safe from any goroutine; never blocks.
func (r *Registry[R]) Complete(id uint64, result R) bool {
	idx := id & (1<<r.slotBits - 1)
	if id>>62 != 0 || idx >= uint64(len(r.waiters)) {
		r.stale.Add(1)
		return false
	}
	w := &r.waiters[idx]
	if !w.state.CompareAndSwap(id<<2|phaseWaiting, id<<2|phaseCompleted) {
		r.stale.Add(1)
		return false
	}
	w.result = result
	w.done <- struct{}{} // never blocks: one token per use, drained before reuse
	r.completed.Add(1)
	return true
}

// Wait blocks until the waiter's id is completed or timeout passes, then
// returns the waiter to the registry: w must not be used afterwards. ok is
// false on timeout; a Complete that comes later is ignored.
func (w *Waiter[R]) Wait(timeout time.Duration) (result R, ok bool) {
	w.timer.Reset(timeout)
	select {
	case <-w.done:
		w.timer.Stop()
		return w.finish(), true
	case <-w.timer.C:
		// Since Go 1.23 a Reset timer never delivers a stale tick, so this
		// is our timeout. Abandon unless Complete won the race.
		if w.state.CompareAndSwap(w.id<<2|phaseWaiting, 0) {
			w.reg.timedOut.Add(1)
			var zero R
			w.release()
			return zero, false
		}
		<-w.done // Complete won: its token is on the way
		return w.finish(), true
	}
}

// Cancel returns the waiter without waiting (its proposal was refused, or
// the handler gives up). Any later Complete of its id is ignored.
func (w *Waiter[R]) Cancel() {
	if !w.state.CompareAndSwap(w.id<<2|phaseWaiting, 0) {
		<-w.done
		w.finish()
		return
	}
	w.release()
}

func (w *Waiter[R]) finish() R {
	res := w.result
	var zero R
	w.result = zero // drop references the result may hold
	w.release()
	return res
}

func (w *Waiter[R]) release() {
	w.state.Store(0)
	w.reg.inUse.Add(-1)
	// The free list has room for every index, yet a push can find its cell
	// not yet released by an Acquire that claimed it and was preempted
	// before publishing the release (the ring's one blocking window). That
	// lasts until the acquirer runs again, so yield and retry; a bound turns
	// a double release (our bug: the list would really be full) into a
	// panic instead of a hang.
	for tries := 0; !w.reg.free.TryPush(w.index); tries++ {
		if tries >= maxFreeListRetries {
			panic("batch: registry free list full (waiter released twice?)")
		}
		runtime.Gosched()
	}
}

// maxFreeListRetries bounds release's retry loop: far more yields than a
// preempted acquirer needs to be rescheduled.
const maxFreeListRetries = 1 << 20

// RegistryStats is a snapshot of a registry's counters.
type RegistryStats struct {
	InUse     int64
	Completed uint64
	Stale     uint64
	TimedOut  uint64
	Exhausted uint64
}

// Stats returns a snapshot. Safe from any goroutine.
func (r *Registry[R]) Stats() RegistryStats {
	return RegistryStats{
		InUse:     r.inUse.Load(),
		Completed: r.completed.Load(),
		Stale:     r.stale.Load(),
		TimedOut:  r.timedOut.Load(),
		Exhausted: r.exhausted.Load(),
	}
}

// Cap is the number of waiters.
func (r *Registry[R]) Cap() int { return len(r.waiters) }

// RegisterMetrics puts the registry's counters on set under prefix (for
// example "edgekv_batch_waiters"): <prefix>_in_use, <prefix>_completed_total,
// <prefix>_stale_total, <prefix>_timed_out_total, <prefix>_exhausted_total.
func (r *Registry[R]) RegisterMetrics(set *metrics.Set, prefix string) {
	inUse, completed, stale := prefix+"_in_use", prefix+"_completed_total", prefix+"_stale_total"
	timedOut, exhausted := prefix+"_timed_out_total", prefix+"_exhausted_total"
	set.RegisterMetricsWriter(func(w io.Writer) {
		s := r.Stats()
		metrics.WriteGaugeUint64(w, inUse, uint64(max(s.InUse, 0)))
		metrics.WriteCounterUint64(w, completed, s.Completed)
		metrics.WriteCounterUint64(w, stale, s.Stale)
		metrics.WriteCounterUint64(w, timedOut, s.TimedOut)
		metrics.WriteCounterUint64(w, exhausted, s.Exhausted)
	})
}
