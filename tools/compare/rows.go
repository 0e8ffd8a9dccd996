package main

import (
	"fmt"
	"math"

	"github.com/edgekv/edgekv/loadgen"
)

// rowSpec is one line of the comparison: a workload both systems run.
type rowSpec struct {
	ID        string `json:"id"`
	Label     string `json:"label"`
	Workload  string `json:"workload"` // loadgen.WorkloadPut, Get or Batch
	Clients   int    `json:"clients"`
	BatchSize int    `json:"batch_size,omitempty"`
	// OpenFraction > 0 makes the row open loop, at this fraction of etcd's
	// maximum measured put rate.
	OpenFraction float64 `json:"open_fraction,omitempty"`
}

// batchRowSize is the puts per atomic batch of the batch row.
const batchRowSize = 100

func (r rowSpec) openLoop() bool { return r.OpenFraction > 0 }

// comparisonRows are the rows of issue 10, in the order they run.
func comparisonRows(openFraction float64, openClients int) []rowSpec {
	rows := []rowSpec{}
	for _, c := range []int{1, 16, 64, 256} {
		rows = append(rows, rowSpec{ID: fmt.Sprintf("put-c%d", c), Label: fmt.Sprintf("put, %d client%s", c, plural(c)), Workload: loadgen.WorkloadPut, Clients: c})
	}
	rows = append(rows,
		rowSpec{ID: "get-c64", Label: "linearizable get, 64 clients", Workload: loadgen.WorkloadGet, Clients: 64},
		rowSpec{ID: "batch100-c16", Label: "batch of 100 puts, 16 clients", Workload: loadgen.WorkloadBatch, Clients: 16, BatchSize: batchRowSize},
		rowSpec{ID: "open-put", Label: fmt.Sprintf("open-loop put at %g%% of etcd max", openFraction*100), Workload: loadgen.WorkloadPut, Clients: openClients, OpenFraction: openFraction},
	)
	return rows
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// sample is one repetition of one row on one system.
type sample struct {
	OKPerSec   float64 `json:"ok_per_second"`
	KeysPerSec float64 `json:"keys_per_second"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
	// ServerCPUUsPerOp is the CPU time of all the system's server
	// processes during the measured phase, divided by successful requests
	// (by keys for batch rows).
	ServerCPUUsPerOp float64 `json:"server_cpu_us_per_op"`
	// LoadgenCPUUsPerOp is the generator process's own CPU per request.
	LoadgenCPUUsPerOp float64 `json:"loadgen_cpu_us_per_op"`
	RateAsked         float64 `json:"rate_asked,omitempty"`
	OK                uint64  `json:"ok"`
	Errors            uint64  `json:"errors"`
	Late              uint64  `json:"late,omitempty"`
	Skipped           uint64  `json:"skipped,omitempty"`
	// Statuses and TransportErrors are kept when the run had errors.
	Statuses        map[string]uint64 `json:"statuses,omitempty"`
	TransportErrors map[string]uint64 `json:"transport_errors,omitempty"`
	ErrorSamples    map[string]string `json:"error_samples,omitempty"`
}

// sampleFrom reduces a run's result and the servers' CPU time over it.
func sampleFrom(spec rowSpec, res *loadgen.Result, serverCPUSec float64) sample {
	all := res.Latency["all"]
	s := sample{
		OKPerSec:          res.OKPerSec,
		KeysPerSec:        res.KeysPerSec,
		P50Us:             all.P50Us,
		P99Us:             all.P99Us,
		LoadgenCPUUsPerOp: res.CPU.PerRequestUs,
		RateAsked:         res.Rate,
		OK:                res.OK,
		Errors:            res.Errors,
		ServerCPUUsPerOp:  math.NaN(),
	}
	per := float64(res.OK)
	if spec.Workload == loadgen.WorkloadBatch {
		per *= float64(spec.BatchSize)
	}
	if per > 0 {
		s.ServerCPUUsPerOp = serverCPUSec * 1e6 / per
	}
	if res.OpenLoop != nil {
		s.Late, s.Skipped = res.OpenLoop.Late, res.OpenLoop.Skipped
	}
	return s
}

// medianSample takes the median of every figure independently.
func medianSample(ss []sample) sample {
	pick := func(f func(sample) float64) float64 {
		xs := make([]float64, len(ss))
		for i, s := range ss {
			xs[i] = f(s)
		}
		return median(xs)
	}
	var m sample
	m.OKPerSec = pick(func(s sample) float64 { return s.OKPerSec })
	m.KeysPerSec = pick(func(s sample) float64 { return s.KeysPerSec })
	m.P50Us = pick(func(s sample) float64 { return s.P50Us })
	m.P99Us = pick(func(s sample) float64 { return s.P99Us })
	m.ServerCPUUsPerOp = pick(func(s sample) float64 { return s.ServerCPUUsPerOp })
	m.LoadgenCPUUsPerOp = pick(func(s sample) float64 { return s.LoadgenCPUUsPerOp })
	m.RateAsked = pick(func(s sample) float64 { return s.RateAsked })
	for _, s := range ss {
		m.OK += s.OK
		m.Errors += s.Errors
		m.Late += s.Late
		m.Skipped += s.Skipped
	}
	return m
}

// systemRow is what one system did on one row over all repetitions.
type systemRow struct {
	Median  sample   `json:"median"`
	Samples []sample `json:"samples"`
	// Note says why the row has no samples (skipped, failed).
	Note string `json:"note,omitempty"`
}

// reportRow is one row with both systems.
type reportRow struct {
	Spec    rowSpec               `json:"row"`
	Systems map[string]*systemRow `json:"systems"`
}

// maxPutRate is the highest median put throughput over the closed-loop put
// rows of a system: the base of the open-loop row.
func maxPutRate(rows []reportRow, system string) float64 {
	best := 0.0
	for _, r := range rows {
		if r.Spec.Workload != loadgen.WorkloadPut || r.Spec.openLoop() {
			continue
		}
		if sr := r.Systems[system]; sr != nil && len(sr.Samples) > 0 && sr.Median.OKPerSec > best {
			best = sr.Median.OKPerSec
		}
	}
	return best
}
