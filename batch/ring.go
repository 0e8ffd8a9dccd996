package batch

import (
	"fmt"
	"sync/atomic"
)

// cacheLineBytes pads the hot atomics of Ring and Queue apart so that the
// producers' tail and the consumer's head do not share a cache line (false
// sharing would make every push invalidate the consumer's line).
const cacheLineBytes = 64

// maxRingCapacity bounds a ring's slot array (2^24 slots): far above any
// sane --max-pending, low enough that a typo cannot allocate gigabytes.
const maxRingCapacity = 1 << 24

// MaxRingCapacity is the largest capacity NewRing (and so a Queue's
// count bound, --max-pending) accepts.
const MaxRingCapacity = maxRingCapacity

// ringSlot is one cell of the ring. seq is the cell's turn counter:
//
//	seq == pos        free, a producer claiming position pos may write it
//	seq == pos+1      holds the value of position pos, ready to be read
//	seq == pos+cap    read and released; free for position pos+cap
type ringSlot[T any] struct {
	seq atomic.Uint64
	val T
}

// Ring is a bounded lock-free FIFO with per-slot sequence numbers, after
// Dmitry Vyukov's bounded MPMC queue: a producer claims a position with one
// CAS on tail, writes its cell and publishes it by storing the cell's seq;
// a consumer claims with one CAS on head. No mutex, no allocation after
// NewRing, no per-item garbage (a popped cell is zeroed so the ring does not
// keep the value's pointers alive).
//
// Progress: the CAS loops are lock-free, not wait-free: a retry happens
// only because another goroutine's CAS succeeded, so the system as a whole
// always advances. One caveat inherited from the design: a producer that is
// preempted between claiming a position and publishing it holds back the
// consumer (which cannot skip the cell) until it runs again; later cells
// stay queued, nothing is lost or reordered.
//
// Order: FIFO by claimed position, so the pushes of one goroutine come out
// in the order it made them.
type Ring[T any] struct {
	_     [cacheLineBytes]byte
	tail  atomic.Uint64 // next position to claim for a push
	_     [cacheLineBytes - 8]byte
	head  atomic.Uint64 // next position to claim for a pop
	_     [cacheLineBytes - 8]byte
	mask  uint64
	slots []ringSlot[T]
}

// NewRing returns a ring holding at least capacity values (rounded up to a
// power of two so that a position maps to its cell with a mask).
func NewRing[T any](capacity int) (*Ring[T], error) {
	if capacity < 1 || capacity > maxRingCapacity {
		return nil, fmt.Errorf("batch: ring capacity %d outside [1, %d]", capacity, maxRingCapacity)
	}
	n := 1
	for n < capacity {
		n <<= 1
	}
	r := &Ring[T]{mask: uint64(n - 1), slots: make([]ringSlot[T], n)}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	return r, nil
}

// Cap is the number of cells (a power of two, >= the requested capacity).
func (r *Ring[T]) Cap() int { return len(r.slots) }

// TryPush appends v and reports whether it did; false means the ring is
// full. Safe for any number of concurrent producers.
func (r *Ring[T]) TryPush(v T) bool {
	pos := r.tail.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch diff := int64(seq - pos); {
		case diff == 0:
			if r.tail.CompareAndSwap(pos, pos+1) {
				s.val = v
				s.seq.Store(pos + 1) // publish: the release the consumer acquires
				return true
			}
			pos = r.tail.Load()
		case diff < 0:
			// The cell still holds position pos-cap: the ring is full.
			return false
		default:
			// Another producer claimed pos since we read tail.
			pos = r.tail.Load()
		}
	}
}

// TryPop removes the oldest value and reports whether there was one ready.
// Safe for concurrent consumers (Queue uses it with one).
func (r *Ring[T]) TryPop() (T, bool) {
	var zero T
	pos := r.head.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch diff := int64(seq - (pos + 1)); {
		case diff == 0:
			if r.head.CompareAndSwap(pos, pos+1) {
				v := s.val
				s.val = zero
				s.seq.Store(pos + r.mask + 1) // free the cell for position pos+cap
				return v, true
			}
			pos = r.head.Load()
		case diff < 0:
			// Empty, or the producer of pos has not published yet.
			return zero, false
		default:
			pos = r.head.Load()
		}
	}
}

// peek returns the oldest ready value without removing it. Only valid with
// a single consumer (the pointer is stable until that consumer pops).
func (r *Ring[T]) peek() (*T, bool) {
	pos := r.head.Load()
	s := &r.slots[pos&r.mask]
	if s.seq.Load() != pos+1 {
		return nil, false
	}
	return &s.val, true
}
