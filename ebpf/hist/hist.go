// Package hist holds the log2 latency histograms that edgekv's BPF
// programs fill in the kernel, and renders them: as biolatency-style text
// for `edgekv trace`, and as Prometheus histograms for /metrics.
//
// A histogram counts nanosecond values in NumSlots power-of-two slots:
//
//	slot:   0      1      2      3            i                63
//	range: [0,2) [2,4)  [4,8)  [8,16) ... [2^i, 2^(i+1)) ... [2^63, 2^64)
//
// This package is pure computation: it never touches the kernel, never
// allocates per value, and must never panic on any counts it is given.
package hist

import (
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"
)

// NumSlots is the number of power-of-two slots of a Log2 histogram.
const NumSlots = 64

// Log2 is a log2 histogram of nanosecond values.
type Log2 struct {
	Slots [NumSlots]uint64
	// SumNs is the sum of all counted values in nanoseconds (it wraps
	// after ~584 years of accumulated latency).
	SumNs uint64
}

// Slot returns the slot a value of ns nanoseconds falls into.
func Slot(ns uint64) int {
	if ns == 0 {
		return 0
	}
	return bits.Len64(ns) - 1
}

// SlotLowerNs returns the smallest value of slot i.
func SlotLowerNs(i int) uint64 {
	if i <= 0 {
		return 0
	}
	return 1 << uint(i)
}

// SlotUpperNs returns the exclusive upper bound of slot i (saturating at
// the largest uint64 for the last slot).
func SlotUpperNs(i int) uint64 {
	if i >= NumSlots-1 {
		return ^uint64(0)
	}
	return 1 << uint(i+1)
}

// Add counts one value; for tests and for user-space producers.
func (h *Log2) Add(ns uint64) {
	h.Slots[Slot(ns)]++
	h.SumNs += ns
}

// Count returns the number of values counted.
func (h *Log2) Count() uint64 {
	var n uint64
	for _, c := range h.Slots {
		n += c
	}
	return n
}

// Mean returns the mean value, or 0 for an empty histogram.
func (h *Log2) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return time.Duration(h.SumNs / n)
}

// QuantileUpper returns the upper bound of the slot that holds quantile q
// (0 < q <= 1): at least a fraction q of the values are below it. It
// returns 0 for an empty histogram.
func (h *Log2) QuantileUpper(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		q = 0
	}
	if q > 1 {
		q = 1
	}
	rank := uint64(q * float64(n))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.Slots {
		seen += c
		if seen >= rank {
			return clampDuration(SlotUpperNs(i))
		}
	}
	return clampDuration(SlotUpperNs(NumSlots - 1))
}

func clampDuration(ns uint64) time.Duration {
	if ns > uint64(1<<63-1) {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(ns)
}

// Sub returns h minus prev slot by slot: the values counted between two
// reads of the same monotonically growing histogram. A slot that shrank
// (the histogram was reset) yields h's own count for that slot.
func (h *Log2) Sub(prev *Log2) Log2 {
	var d Log2
	for i := range h.Slots {
		if h.Slots[i] >= prev.Slots[i] {
			d.Slots[i] = h.Slots[i] - prev.Slots[i]
		} else {
			d.Slots[i] = h.Slots[i]
		}
	}
	if h.SumNs >= prev.SumNs {
		d.SumNs = h.SumNs - prev.SumNs
	} else {
		d.SumNs = h.SumNs
	}
	return d
}

// barWidth is the width of the distribution column, as in biolatency.
const barWidth = 40

// WriteText renders h in the style of the classic biolatency tool: a
// summary line, then one row per slot from the first to the last
// non-empty one. An empty histogram renders as its title and "no events".
func WriteText(w io.Writer, title string, h *Log2) error {
	n := h.Count()
	if n == 0 {
		_, err := fmt.Fprintf(w, "%s: no events\n", title)
		return err
	}
	first, last := -1, -1
	var peak uint64
	for i, c := range h.Slots {
		if c == 0 {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
		if c > peak {
			peak = c
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: count %d, mean %s, p50 < %s, p99 < %s, max < %s\n",
		title, n, FormatNs(uint64(h.Mean())), FormatNs(uint64(h.QuantileUpper(0.5))),
		FormatNs(uint64(h.QuantileUpper(0.99))), FormatNs(SlotUpperNs(last)))
	fmt.Fprintf(&b, "%24s : %-8s %s\n", "latency", "count", "distribution")
	for i := first; i <= last; i++ {
		c := h.Slots[i]
		stars := int(c * barWidth / peak)
		if c > 0 && stars == 0 {
			stars = 1
		}
		rng := FormatNs(SlotLowerNs(i)) + " -> " + FormatNs(SlotUpperNs(i))
		fmt.Fprintf(&b, "%24s : %-8d |%-40s|\n", rng, c, strings.Repeat("*", stars))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatNs formats a nanosecond count with three significant digits and
// a unit: "512ns", "1.02µs", "4.19ms", "1.07s".
func FormatNs(ns uint64) string {
	switch {
	case ns < 1000:
		return fmt.Sprintf("%dns", ns)
	case ns < 1000_000:
		return fmt.Sprintf("%.3gµs", float64(ns)/1e3)
	case ns < 1000_000_000:
		return fmt.Sprintf("%.3gms", float64(ns)/1e6)
	default:
		return fmt.Sprintf("%.3gs", float64(ns)/1e9)
	}
}
