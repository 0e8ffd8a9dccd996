//go:build race

package sim

// The race detector slows the simulator about tenfold; its concurrency is
// only the seed workers, so fewer seeds cover it.
const raceEnabled = true
