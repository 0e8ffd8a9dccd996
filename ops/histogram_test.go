package ops

import (
	"bytes"
	"math"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"
)

// TestHistogramBuckets: `le` is inclusive, values above the last bound go
// to +Inf, and the written buckets are cumulative with _count = +Inf.
func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]uint64{10, 20, 40}, 1)
	h.bindSeries("x_bytes", `k="v"`)
	for _, v := range []uint64{0, 10, 11, 20, 40, 41, 1 << 63} {
		h.Observe(v)
	}
	var b bytes.Buffer
	h.writeSeries(&b)
	want := strings.Join([]string{
		`x_bytes_bucket{k="v",le="10"} 2`,
		`x_bytes_bucket{k="v",le="20"} 4`,
		`x_bytes_bucket{k="v",le="40"} 5`,
		`x_bytes_bucket{k="v",le="+Inf"} 7`,
		`x_bytes_sum{k="v"} 9.223372036854776e+18`,
		`x_bytes_count{k="v"} 7`,
		``,
	}, "\n")
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if h.Count() != 7 {
		t.Fatalf("Count %d", h.Count())
	}
	h2 := newHistogram(nanos(0.5, 1), 1e-9)
	h2.bindSeries("y_seconds", "")
	h2.ObserveNanos(-5) // a clock step backwards counts as zero
	h2.ObserveNanos(500_000_000)
	b.Reset()
	h2.writeSeries(&b)
	if want := "y_seconds_bucket{le=\"0.5\"} 2\ny_seconds_bucket{le=\"1\"} 2\ny_seconds_bucket{le=\"+Inf\"} 2\ny_seconds_sum 0.5\ny_seconds_count 2\n"; b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestHistogramRejectsBadBounds(t *testing.T) {
	for _, bounds := range [][]uint64{nil, {1, 1}, {2, 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("bounds %v accepted", bounds)
				}
			}()
			newHistogram(bounds, 1)
		}()
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := newHistogram(requestBoundsNanos, 1e-9)
	b.ReportAllocs()
	var v uint64
	for b.Loop() {
		v += 7919
		h.Observe(v % 20_000_000)
	}
}

func TestRuntimeHistogramConversion(t *testing.T) {
	inf := math.Inf(1)
	h := &rtmetrics.Float64Histogram{
		Buckets: []float64{math.Inf(-1), 0, 1e-3, 1e-2, 0.1, 1, 10, inf},
		Counts:  []uint64{0, 1, 2, 3, 4, 5, 6},
	}
	var b bytes.Buffer
	writeRuntimeHistogram(&b, "z_seconds", h)
	want := "z_seconds_bucket{le=\"0.001\"} 1\nz_seconds_bucket{le=\"0.01\"} 3\nz_seconds_bucket{le=\"0.1\"} 6\nz_seconds_bucket{le=\"1\"} 10\nz_seconds_bucket{le=\"+Inf\"} 21\nz_seconds_count 21\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}

	// A runtime-sized histogram is thinned to at most maxRuntimeBuckets
	// finite bounds, still cumulative and ending at 1s.
	m := NewMetrics()
	b.Reset()
	m.WritePrometheus(&b)
	fams, err := parseExposition(b.String())
	if err != nil {
		t.Fatal(err)
	}
	f := fams["go_sched_latencies_seconds"]
	finite, top := 0, 0.0
	for _, s := range f.samples {
		if s.name == "go_sched_latencies_seconds_bucket" && s.labels["le"] != "+Inf" {
			finite++
			le, _ := strconv.ParseFloat(s.labels["le"], 64)
			top = max(top, le)
		}
	}
	if finite == 0 || finite > maxRuntimeBuckets {
		t.Fatalf("%d finite buckets, want 1..%d", finite, maxRuntimeBuckets)
	}
	if top < 0.1 || top > 1 {
		t.Fatalf("largest finite bound %v, want in [0.1, 1]", top)
	}
}
