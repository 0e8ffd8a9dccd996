package main

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/edgekv/edgekv/loadgen"
)

const (
	sysEtcd   = "etcd"
	sysEdgekv = "edgekv"
)

// metric is one figure of a row in the table.
type metric struct {
	name string
	// higherIsBetter decides the direction of the gain column, so that a
	// gain above 1 always means edgekv did better.
	higherIsBetter bool
	get            func(sample) float64
	// sameByDesign marks a figure both systems are given (the open-loop
	// rate): a gain there would mean nothing.
	sameByDesign bool
}

func rowMetrics(spec rowSpec) []metric {
	cpuName := "server CPU µs/op"
	tput := metric{name: "ops/s", higherIsBetter: true, get: func(s sample) float64 { return s.OKPerSec }}
	if spec.Workload == loadgen.WorkloadBatch {
		cpuName = "server CPU µs/key"
		tput = metric{name: "keys/s", higherIsBetter: true, get: func(s sample) float64 { return s.KeysPerSec }}
	}
	if spec.openLoop() {
		tput = metric{name: "rate asked/s", get: func(s sample) float64 { return s.RateAsked }, sameByDesign: true}
	}
	return []metric{
		tput,
		{name: "p50 ms", get: func(s sample) float64 { return s.P50Us / 1e3 }},
		{name: "p99 ms", get: func(s sample) float64 { return s.P99Us / 1e3 }},
		{name: cpuName, get: func(s sample) float64 { return s.ServerCPUUsPerOp }},
	}
}

// gain is edgekv's advantage: edgekv/etcd for figures where higher is
// better, etcd/edgekv otherwise; NaN when either side is missing or zero.
func gain(etcd, edgekv float64, higherIsBetter bool) float64 {
	if math.IsNaN(etcd) || math.IsNaN(edgekv) || etcd <= 0 || edgekv <= 0 {
		return math.NaN()
	}
	if higherIsBetter {
		return edgekv / etcd
	}
	return etcd / edgekv
}

// formatFigure prints a figure with enough digits to read, "-" when absent.
func formatFigure(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatGain(g float64) string {
	if math.IsNaN(g) || math.IsInf(g, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", g)
}

// medianOf returns a system's median figure for a row, NaN when the system
// has no samples there.
func medianOf(r reportRow, system string, m metric) float64 {
	sr := r.Systems[system]
	if sr == nil || len(sr.Samples) == 0 {
		return math.NaN()
	}
	return m.get(sr.Median)
}

// writeTable prints the one comparison table: every row, every figure,
// both systems and the gain.
func writeTable(w io.Writer, rows []reportRow, repeats int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "medians of %d repetition%s; gain = edgekv/etcd for throughput, etcd/edgekv for latency and CPU (above 1: edgekv better)\n", repeats, plural(repeats))
	fmt.Fprintf(&b, "%-36s %-18s %12s %12s %9s\n", "row", "figure", sysEtcd, sysEdgekv, "gain")
	for _, r := range rows {
		for i, m := range rowMetrics(r.Spec) {
			label := ""
			if i == 0 {
				label = r.Spec.Label
			}
			e, k := medianOf(r, sysEtcd, m), medianOf(r, sysEdgekv, m)
			g := gain(e, k, m.higherIsBetter)
			if m.sameByDesign {
				g = math.NaN()
			}
			fmt.Fprintf(&b, "%-36s %-18s %12s %12s %9s\n", label, m.name, formatFigure(e), formatFigure(k), formatGain(g))
		}
	}
	for _, r := range rows {
		for _, sys := range []string{sysEtcd, sysEdgekv} {
			sr := r.Systems[sys]
			switch {
			case sr == nil:
			case sr.Note != "":
				fmt.Fprintf(&b, "note: %s, %s: %s\n", r.Spec.Label, sys, sr.Note)
			case sr.Median.Errors > 0:
				fmt.Fprintf(&b, "note: %s, %s: %d failed requests over all repetitions (see the JSON)\n", r.Spec.Label, sys, sr.Median.Errors)
			}
			if sr != nil && (sr.Median.Late > 0 || sr.Median.Skipped > 0) {
				fmt.Fprintf(&b, "note: %s, %s: open loop sent %d requests late and skipped %d (latency counts from the schedule)\n", r.Spec.Label, sys, sr.Median.Late, sr.Median.Skipped)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
