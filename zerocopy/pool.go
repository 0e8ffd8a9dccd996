// Package zerocopy provides pools of byte buffers with explicit ownership,
// so that a decoder can hand out slices that point into the buffer a frame
// was read into instead of copying every payload.
//
// Ownership rule (the whole point of the package): a *Buffer has exactly
// one owner at a time. Pool.Get makes the caller the owner. The owner may
// pass ownership on (for example the wire receiver hands a decoded batch,
// and with it the buffer, to the node runtime); whoever owns it last calls
// Release exactly once, after which no slice into Bytes() may be used. A
// buffer may be shared by calling Retain before handing out a second
// reference; each reference is then released once and the buffer goes back
// to the pool when the count reaches zero.
//
// Sizing rule: a pool serves requests between its minimum and maximum size
// in power-of-two classes, and retains at most retainBytes per class
// (classes larger than retainBytes keep nothing idle); the bound on memory
// held idle by a pool is therefore classes × retainBytes, computed by
// RetainedBoundBytes and asserted at construction. Buffers beyond the
// retention bound are left to the garbage collector.
//
// The package must never hand the same buffer to two owners (a release
// while still referenced, or a double release, panics: that is a bug in
// the caller, not bad input), never allocate on Get/Release in steady
// state, and never block.
package zerocopy

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// Buffer is a pooled byte slice with a reference count.
type Buffer struct {
	buf   []byte // len == cap == class size
	n     int    // bytes in use, set by Get
	class int8   // index into Pool.classes, -1 for an oversized one-off
	refs  atomic.Int32
	pool  *Pool
}

// Bytes returns the n bytes requested from Get. The slice is valid until
// the last Release.
func (b *Buffer) Bytes() []byte { return b.buf[:b.n] }

// Cap returns the capacity of the underlying storage (the size class).
func (b *Buffer) Cap() int { return len(b.buf) }

// Retain adds a reference: the buffer is returned to the pool only after
// one more Release.
func (b *Buffer) Retain() {
	if b.refs.Add(1) <= 1 {
		panic("zerocopy: Retain of a released buffer")
	}
}

// Release drops a reference; the last one returns the buffer to its pool.
func (b *Buffer) Release() {
	switch r := b.refs.Add(-1); {
	case r > 0:
		return
	case r < 0:
		panic("zerocopy: buffer released more often than acquired")
	}
	b.pool.put(b)
}

// Pool hands out Buffers in power-of-two size classes.
type Pool struct {
	minShift    uint8
	classes     []chan *Buffer // free lists, one per class, bounded by channel capacity
	retainBytes int
	outstanding atomic.Int64 // buffers handed out and not yet released
}

// NewPool returns a pool serving sizes up to maxBytes, rounding requests up
// to a power of two no smaller than minBytes, keeping at most retainBytes of
// idle buffers per class (at least one buffer per class).
func NewPool(minBytes, maxBytes, retainBytes int) *Pool {
	if minBytes <= 0 || maxBytes < minBytes || retainBytes < 0 {
		panic(fmt.Sprintf("zerocopy: bad pool bounds min=%d max=%d retain=%d", minBytes, maxBytes, retainBytes))
	}
	minShift := uint8(bits.Len(uint(minBytes - 1)))
	maxShift := uint8(bits.Len(uint(maxBytes - 1)))
	p := &Pool{minShift: minShift, retainBytes: retainBytes}
	for s := minShift; s <= maxShift; s++ {
		size := 1 << s
		keep := retainBytes / size // 0 for classes larger than retainBytes: never kept idle
		p.classes = append(p.classes, make(chan *Buffer, keep))
	}
	if len(p.classes) != ClassCount(minBytes, maxBytes) {
		panic("zerocopy: class count disagrees with ClassCount")
	}
	if got, bound := p.retainedCapacityBytes(), p.RetainedBoundBytes(); got > bound {
		panic(fmt.Sprintf("zerocopy: retained capacity %d exceeds bound %d", got, bound))
	}
	return p
}

// ClassCount is the number of size classes of a pool serving minBytes to
// maxBytes, so that callers can split a total retention budget.
func ClassCount(minBytes, maxBytes int) int {
	return bits.Len(uint(maxBytes-1)) - bits.Len(uint(minBytes-1)) + 1
}

// RetainedBoundBytes is the most memory the pool keeps idle: retainBytes
// per class.
func (p *Pool) RetainedBoundBytes() int { return len(p.classes) * p.retainBytes }

func (p *Pool) retainedCapacityBytes() int {
	total := 0
	for i, c := range p.classes {
		total += cap(c) * p.classSize(i)
	}
	return total
}

func (p *Pool) classSize(i int) int { return 1 << (int(p.minShift) + i) }

// MaxBytes is the largest size Get serves from the pool.
func (p *Pool) MaxBytes() int { return p.classSize(len(p.classes) - 1) }

// Outstanding is the number of buffers handed out and not yet released
// (tests use it to prove nothing leaks).
func (p *Pool) Outstanding() int64 { return p.outstanding.Load() }

// Get returns a buffer of n bytes owned by the caller. n must not exceed
// MaxBytes: callers bound lengths read from the network before asking, so
// a larger n is our own bug.
func (p *Pool) Get(n int) *Buffer {
	if n < 0 || n > p.MaxBytes() {
		panic(fmt.Sprintf("zerocopy: Get(%d) outside [0, %d]", n, p.MaxBytes()))
	}
	ci := 0
	if n > 1<<p.minShift {
		ci = bits.Len(uint(n-1)) - int(p.minShift)
	}
	var b *Buffer
	select {
	case b = <-p.classes[ci]:
	default:
		b = &Buffer{buf: make([]byte, p.classSize(ci)), class: int8(ci), pool: p}
	}
	b.n = n
	b.refs.Store(1)
	p.outstanding.Add(1)
	return b
}

func (p *Pool) put(b *Buffer) {
	p.outstanding.Add(-1)
	select {
	case p.classes[b.class] <- b:
	default: // class full: let the collector have it
	}
}
