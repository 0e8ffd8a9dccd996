package batch

import (
	"sync/atomic"
	"time"
)

// Clock reads a monotonic time in nanoseconds from an arbitrary origin.
// The batcher never reads the wall clock itself, so tests and the
// simulation drive it with a FakeClock and replay exactly.
type Clock interface {
	Now() int64
}

// MonotonicClock is the production Clock: nanoseconds since its creation,
// from Go's monotonic clock reading (immune to wall-clock steps).
type MonotonicClock struct{ origin time.Time }

// NewMonotonicClock returns a clock whose origin is now.
func NewMonotonicClock() *MonotonicClock { return &MonotonicClock{origin: time.Now()} }

// Now implements Clock.
func (c *MonotonicClock) Now() int64 { return int64(time.Since(c.origin)) }

// FakeClock is a Clock that moves only when told to. Safe for concurrent
// use (producers read it while the test advances it).
type FakeClock struct{ nanos atomic.Int64 }

// Now implements Clock.
func (c *FakeClock) Now() int64 { return c.nanos.Load() }

// Advance moves the clock forward by d (d >= 0) and returns the new time.
func (c *FakeClock) Advance(d time.Duration) int64 {
	if d < 0 {
		panic("batch: FakeClock cannot go backwards")
	}
	return c.nanos.Add(int64(d))
}

// Set moves the clock to nanos, which must not be in its past.
func (c *FakeClock) Set(nanos int64) {
	if nanos < c.nanos.Load() {
		panic("batch: FakeClock cannot go backwards")
	}
	c.nanos.Store(nanos)
}
