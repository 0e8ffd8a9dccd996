package ops

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
)

// Histogram is a Prometheus histogram with fixed upper bounds: one atomic
// counter per bucket plus a sum, so Observe is a bounded search and two
// atomic adds, never an allocation or a lock. Values are integers in the
// histogram's base unit (nanoseconds or bytes); the exposition scales them
// (nanoseconds are written as seconds).
//
// Bucket counts are read one by one at scrape time, so a scrape racing
// with Observe may see the sum and the buckets one observation apart; the
// _count written is always the +Inf bucket, so the buckets stay cumulative
// and consistent with _count.
type Histogram struct {
	// boundsUnits are the inclusive upper bounds in base units, strictly
	// increasing; counts has one more slot, for +Inf.
	boundsUnits []uint64
	counts      []atomic.Uint64
	sumUnits    atomic.Uint64
	// scale converts base units into the exposed unit (1e-9 for seconds).
	scale float64
	// Line prefixes, set once by bindSeries.
	bucketPrefixes         []string
	sumPrefix, countPrefix string
}

// newHistogram returns a histogram over boundsUnits (copied), which must be
// non-empty and strictly increasing.
func newHistogram(boundsUnits []uint64, scale float64) *Histogram {
	if len(boundsUnits) == 0 {
		panic("ops: histogram without buckets")
	}
	for i := 1; i < len(boundsUnits); i++ {
		if boundsUnits[i] <= boundsUnits[i-1] {
			panic(fmt.Sprintf("ops: histogram bounds not increasing at %d", i))
		}
	}
	return &Histogram{
		boundsUnits: append([]uint64(nil), boundsUnits...),
		counts:      make([]atomic.Uint64, len(boundsUnits)+1),
		scale:       scale,
	}
}

// Observe records one value in base units (nanoseconds or bytes).
func (h *Histogram) Observe(units uint64) {
	// Binary search for the first bound >= units; len(boundsUnits) is
	// small (under 32), so this is at most 5 comparisons.
	lo, hi := 0, len(h.boundsUnits)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.boundsUnits[mid] < units {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	h.counts[lo].Add(1)
	h.sumUnits.Add(units)
}

// ObserveNanos records a duration given in nanoseconds; negative
// durations (a clock that went backwards) count as zero.
func (h *Histogram) ObserveNanos(nanos int64) {
	h.Observe(uint64(max(nanos, 0)))
}

// Count returns the number of observations so far.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// bindSeries fixes the family and labels the histogram is written under
// and formats every line prefix once, so a scrape formats only numbers.
// labels is either empty or `k="v",...` without braces.
func (h *Histogram) bindSeries(family, labels string) {
	sep, braced := "", ""
	if labels != "" {
		sep, braced = ",", "{"+labels+"}"
	}
	h.bucketPrefixes = make([]string, len(h.boundsUnits)+1)
	for i, b := range h.boundsUnits {
		h.bucketPrefixes[i] = family + "_bucket{" + labels + sep + `le="` + formatFloat(float64(b)*h.scale) + `"} `
	}
	h.bucketPrefixes[len(h.boundsUnits)] = family + "_bucket{" + labels + sep + `le="+Inf"} `
	h.sumPrefix = family + "_sum" + braced + " "
	h.countPrefix = family + "_count" + braced + " "
}

// writeSeries appends the _bucket, _sum and _count lines of the series
// bindSeries named.
func (h *Histogram) writeSeries(b *bytes.Buffer) {
	if h.bucketPrefixes == nil {
		panic("ops: histogram written before bindSeries")
	}
	var cumulative uint64
	for i := range h.counts {
		cumulative += h.counts[i].Load()
		writeUintLine(b, h.bucketPrefixes[i], cumulative)
	}
	b.WriteString(h.sumPrefix)
	b.Write(strconv.AppendFloat(b.AvailableBuffer(), float64(h.sumUnits.Load())*h.scale, 'g', -1, 64))
	b.WriteByte('\n')
	writeUintLine(b, h.countPrefix, cumulative)
}

// writeUintLine appends prefix, v and a newline without allocating.
func writeUintLine(b *bytes.Buffer, prefix string, v uint64) {
	b.WriteString(prefix)
	b.Write(strconv.AppendUint(b.AvailableBuffer(), v, 10))
	b.WriteByte('\n')
}

// formatFloat writes v the shortest way that parses back to v ("0.0005",
// "1e+09", "+Inf").
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Bucket layouts. Durations are in nanoseconds, sizes in bytes.
var (
	// requestBoundsNanos spans a stale read served from memory (100µs) to
	// a write that waits out --request-timeout (5s default).
	requestBoundsNanos = nanos(100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10)
	// diskBoundsNanos spans an fsync on NVMe (tens of µs) to a stalled
	// disk (seconds); apply and commit latencies share it.
	diskBoundsNanos = nanos(25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5)
	// batchBoundsEntries: proposals per batch, 1 (idle, or batching off)
	// to 65536 in powers of two; --max-pending (10000) bounds a batch.
	batchBoundsEntries = powers(1, 2, 17)
	// batchBoundsBytes: 256 B (one small write) to 64 MiB (the largest
	// --max-batch-bytes) in powers of four.
	batchBoundsBytes = powers(256, 4, 10)
	// batchWaitBoundsNanos spans no wait (an idle node) to far past the
	// largest sensible --max-batch-delay; 2ms is the default.
	batchWaitBoundsNanos = nanos(10e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 100e-3, 250e-3, 1)
	// snapshotBoundsBytes spans 64KiB to 16GiB in powers of four.
	snapshotBoundsBytes = powers(64<<10, 4, 12)
)

func nanos(seconds ...float64) []uint64 {
	out := make([]uint64, len(seconds))
	for i, s := range seconds {
		out[i] = uint64(math.Round(s * 1e9))
	}
	return out
}

func powers(first, factor uint64, n int) []uint64 {
	out := make([]uint64, n)
	v := first
	for i := range out {
		out[i] = v
		v *= factor
	}
	return out
}
