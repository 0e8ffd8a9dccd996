// Package tracker keeps the leader's view of each follower's log: how far
// it is known to match (Match), what to send next (Next), whether the
// leader is still probing for the match point or streaming (pipelining),
// and the window of append messages in flight, bounded by count and bytes.
//
// It must never send anything, never know about terms or the log's
// contents, and never allocate after construction.
package tracker

import "fmt"

// Inflights is a ring of the append messages sent to one follower and not
// yet acknowledged, each remembered by its last entry index and its payload
// bytes. It is full when it holds maxCount messages or at least maxBytes
// bytes. The ring is allocated once, at construction.
type Inflights struct {
	start    int // ring position of the oldest message
	count    int
	bytes    uint64
	maxBytes uint64 // 0 means unbounded
	indexes  []uint64
	sizes    []uint64
}

// NewInflights makes a window of at most maxCount messages and maxBytes
// payload bytes (0: no byte bound). maxCount must be positive.
func NewInflights(maxCount int, maxBytes uint64) *Inflights {
	if maxCount <= 0 {
		panic(fmt.Sprintf("tracker: inflight window of %d messages", maxCount))
	}
	return &Inflights{maxBytes: maxBytes, indexes: make([]uint64, maxCount), sizes: make([]uint64, maxCount)}
}

// Count is the number of messages in flight.
func (in *Inflights) Count() int { return in.count }

// Bytes is the payload in flight.
func (in *Inflights) Bytes() uint64 { return in.bytes }

// Full reports whether no further message may be sent.
func (in *Inflights) Full() bool {
	return in.count == len(in.indexes) || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

// RoomBytes is how many more payload bytes fit in the window (the maximum
// uint64 when the window has no byte bound).
func (in *Inflights) RoomBytes() uint64 {
	if in.maxBytes == 0 {
		return ^uint64(0)
	}
	if in.bytes >= in.maxBytes {
		return 0
	}
	return in.maxBytes - in.bytes
}

// Add records a message whose last entry is lastIndex. Indexes must grow.
// Adding to a full window is a bug of the caller.
func (in *Inflights) Add(lastIndex, bytes uint64) {
	if in.count == len(in.indexes) {
		panic("tracker: add to a full inflight window")
	}
	if in.count > 0 {
		if prev := in.indexes[(in.start+in.count-1)%len(in.indexes)]; lastIndex <= prev {
			panic(fmt.Sprintf("tracker: inflight index %d after %d", lastIndex, prev))
		}
	}
	pos := (in.start + in.count) % len(in.indexes)
	in.indexes[pos] = lastIndex
	in.sizes[pos] = bytes
	in.count++
	in.bytes += bytes
}

// FreeLE forgets every message whose last index is <= index: the follower
// has acknowledged up to index.
func (in *Inflights) FreeLE(index uint64) {
	for in.count > 0 && in.indexes[in.start] <= index {
		in.bytes -= in.sizes[in.start]
		in.start = (in.start + 1) % len(in.indexes)
		in.count--
	}
	if in.count == 0 {
		in.start = 0
	}
}

// Reset empties the window.
func (in *Inflights) Reset() {
	in.start, in.count, in.bytes = 0, 0, 0
}
