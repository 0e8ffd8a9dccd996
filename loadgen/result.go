package loadgen

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is the outcome of a run's measured phase. Its JSON form (field
// tags below) is what comparison tools consume; the field names are part
// of the contract, so add fields rather than renaming them.
type Result struct {
	Workload     string   `json:"workload"`
	Mode         string   `json:"mode"` // "closed" or "open"
	Endpoints    []string `json:"endpoints"`
	Concurrency  int      `json:"concurrency"`
	Rate         float64  `json:"rate,omitempty"` // open loop: requests/s asked for
	Consistency  string   `json:"consistency,omitempty"`
	ReadFraction float64  `json:"read_fraction,omitempty"`
	BatchSize    int      `json:"batch_size,omitempty"`
	ValueBytes   int      `json:"value_bytes"`
	KeySpace     uint64   `json:"key_space"`
	KeyOrder     string   `json:"key_order"`
	Seed         uint64   `json:"seed"`
	WarmupSec    float64  `json:"warmup_seconds"`
	// Interrupted: the run was cancelled; figures cover what was measured.
	Interrupted bool `json:"interrupted,omitempty"`

	// ElapsedSec runs from the start of the measured phase to the last
	// response.
	ElapsedSec float64 `json:"elapsed_seconds"`
	// Requests counts every request sent or attempted: OK + Errors.
	Requests uint64 `json:"requests"`
	// OK counts successes: 200, and 404 for gets (also in NotFound).
	OK       uint64 `json:"ok"`
	NotFound uint64 `json:"not_found"`
	Errors   uint64 `json:"errors"`

	RequestsPerSec float64 `json:"requests_per_second"`
	OKPerSec       float64 `json:"ok_per_second"`
	// KeysPerSec counts keys written or read successfully per second: OK
	// requests times the keys each carries (BatchSize for batches).
	KeysPerSec float64 `json:"keys_per_second"`

	// Latency of successful requests, by operation ("put", "get",
	// "batch") and over all of them ("all").
	Latency map[string]LatencySummary `json:"latency"`
	// Histograms holds the same distributions in full, in HdrHistogram's
	// base64 V2 compressed form (hdrhistogram.Decode reads it; values in
	// nanoseconds), so that a comparison tool can merge runs or read any
	// other percentile.
	Histograms map[string]string `json:"histograms"`

	// Statuses counts responses by HTTP status code, successes included.
	Statuses map[string]uint64 `json:"statuses"`
	// TransportErrors counts requests that got no response, by cause
	// (timeout, connection_refused, connection_reset, connection_closed,
	// dial, bad_response, other); TransportErrorSamples holds one message
	// per cause.
	TransportErrors       map[string]uint64 `json:"transport_errors"`
	TransportErrorSamples map[string]string `json:"transport_error_samples,omitempty"`

	OpenLoop *OpenLoopStats `json:"open_loop,omitempty"`

	// CPU is the generator process's own CPU time during the measured
	// phase (getrusage).
	CPU CPUUsage `json:"loadgen_cpu"`
}

// LatencySummary gives a latency distribution in microseconds.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MinUs  float64 `json:"min_us"`
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P90Us  float64 `json:"p90_us"`
	P99Us  float64 `json:"p99_us"`
	P999Us float64 `json:"p99_9_us"`
	MaxUs  float64 `json:"max_us"`
}

// OpenLoopStats tells how well the generator kept its schedule.
type OpenLoopStats struct {
	// Scheduled = Sent + Skipped.
	Scheduled uint64 `json:"scheduled"`
	Sent      uint64 `json:"sent"`
	// Late requests left more than 1 ms after their scheduled time
	// (their latency still counts from it).
	Late uint64 `json:"late"`
	// Skipped requests were never sent: the schedule plus one --timeout
	// had passed, or the run was cancelled.
	Skipped   uint64  `json:"skipped"`
	MaxLagSec float64 `json:"max_send_lag_seconds"`
}

// CPUUsage is CPU time spent by the generator's process.
type CPUUsage struct {
	UserSec   float64 `json:"user_seconds"`
	SystemSec float64 `json:"system_seconds"`
	// PerRequestUs is (user+system) / Requests, in microseconds.
	PerRequestUs float64 `json:"us_per_request"`
}

func newResult(cfg *Config, m *merged, cpu cpuTime, interrupted bool) (*Result, error) {
	r := &Result{
		Workload:    cfg.Workload,
		Mode:        "closed",
		Endpoints:   cfg.Endpoints,
		Concurrency: cfg.Concurrency,
		ValueBytes:  cfg.ValueBytes,
		KeySpace:    cfg.KeySpace,
		KeyOrder:    cfg.KeyOrder,
		Seed:        cfg.Seed,
		WarmupSec:   cfg.Warmup.Seconds(),
		Interrupted: interrupted,
		ElapsedSec:  m.lastDone.Seconds(),
		Requests:    m.attempts,
		OK:          m.okTotal(),
		NotFound:    m.notFound,
		Latency:     map[string]LatencySummary{},
		Histograms:  map[string]string{},
		Statuses:    map[string]uint64{},

		TransportErrors: map[string]uint64{},
	}
	r.Errors = r.Requests - r.OK
	switch cfg.Workload {
	case WorkloadGet:
		r.Consistency = cfg.Consistency
	case WorkloadMixed:
		r.Consistency, r.ReadFraction = cfg.Consistency, cfg.ReadFraction
	case WorkloadBatch:
		r.BatchSize = cfg.BatchSize
	}
	if r.ElapsedSec > 0 {
		r.RequestsPerSec = float64(r.Requests) / r.ElapsedSec
		r.OKPerSec = float64(r.OK) / r.ElapsedSec
		keys := m.ok[opPut] + m.ok[opGet] + m.ok[opBatch]*uint64(cfg.BatchSize)
		r.KeysPerSec = float64(keys) / r.ElapsedSec
	}
	all := hdr.New(histLowestNanos, histHighestNanos, histDigits)
	named := map[string]*hdr.Histogram{"all": all}
	for op, h := range m.hist {
		if h.TotalCount() == 0 {
			continue
		}
		named[opNames[op]] = h
		if dropped := all.Merge(h); dropped != 0 {
			panic(fmt.Sprintf("loadgen: merging histograms of one geometry dropped %d values", dropped))
		}
	}
	for name, h := range named {
		r.Latency[name] = summarize(h)
		enc, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("encoding the %s latency histogram: %w", name, err)
		}
		r.Histograms[name] = string(enc)
	}
	for status, n := range m.statuses {
		r.Statuses[strconv.Itoa(status)] = n
	}
	for c, n := range m.transport {
		if n == 0 {
			continue
		}
		r.TransportErrors[errClass(c).String()] = n
		if r.TransportErrorSamples == nil {
			r.TransportErrorSamples = map[string]string{}
		}
		r.TransportErrorSamples[errClass(c).String()] = m.firstErr[c]
	}
	if cfg.openLoop() {
		r.Mode, r.Rate = "open", cfg.Rate
		r.OpenLoop = &OpenLoopStats{
			Scheduled: m.scheduled,
			Sent:      m.attempts,
			Late:      m.late,
			Skipped:   m.skipped,
			MaxLagSec: m.maxLag.Seconds(),
		}
	}
	r.CPU = CPUUsage{UserSec: cpu.user.Seconds(), SystemSec: cpu.system.Seconds()}
	if r.Requests > 0 {
		r.CPU.PerRequestUs = float64((cpu.user + cpu.system).Microseconds()) / float64(r.Requests)
	}
	return r, nil
}

func summarize(h *hdr.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	q := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return LatencySummary{
		Count:  uint64(h.TotalCount()),
		MinUs:  us(h.Min()),
		MeanUs: h.Mean() / 1e3,
		P50Us:  us(q[0]),
		P90Us:  us(q[1]),
		P99Us:  us(q[2]),
		P999Us: us(q[3]),
		MaxUs:  us(h.Max()),
	}
}

// WriteText writes the human-readable summary.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := "closed loop"
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %g requests/s", r.Rate)
	}
	what := r.Workload
	switch r.Workload {
	case WorkloadGet:
		what += " (" + r.Consistency + ")"
	case WorkloadMixed:
		what += fmt.Sprintf(" (%.0f%% gets, %s)", r.ReadFraction*100, r.Consistency)
	case WorkloadBatch:
		what += fmt.Sprintf(" (%d puts per PutAll)", r.BatchSize)
	}
	fmt.Fprintf(&b, "workload     %s, %s, %d connections over %d endpoint(s)\n", what, mode, r.Concurrency, len(r.Endpoints))
	fmt.Fprintf(&b, "keys         %d (%s), %d-byte values, seed %d\n", r.KeySpace, r.KeyOrder, r.ValueBytes, r.Seed)
	fmt.Fprintf(&b, "measured     %.3fs after %gs warm-up", r.ElapsedSec, r.WarmupSec)
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "requests     %d: %d ok, %d errors", r.Requests, r.OK, r.Errors)
	if r.NotFound > 0 {
		fmt.Fprintf(&b, " (%d gets found no key)", r.NotFound)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "throughput   %.1f requests/s, %.1f ok/s", r.RequestsPerSec, r.OKPerSec)
	if r.Workload == WorkloadBatch {
		fmt.Fprintf(&b, ", %.1f keys/s", r.KeysPerSec)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "latency (ms) %8s %9s %9s %9s %9s %9s %9s %9s\n", "count", "min", "mean", "p50", "p90", "p99", "p99.9", "max")
	for _, name := range []string{"put", "get", "batch", "all"} {
		l, ok := r.Latency[name]
		if !ok || (name == "all" && len(r.Latency) == 2) {
			continue // "all" repeats the only operation
		}
		fmt.Fprintf(&b, "  %-10s %8d %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, l.Count,
			l.MinUs/1e3, l.MeanUs/1e3, l.P50Us/1e3, l.P90Us/1e3, l.P99Us/1e3, l.P999Us/1e3, l.MaxUs/1e3)
	}
	b.WriteString("statuses    ")
	for _, s := range sortedStringKeys(r.Statuses) {
		fmt.Fprintf(&b, " %s: %d", s, r.Statuses[s])
	}
	if len(r.Statuses) == 0 {
		b.WriteString(" none")
	}
	b.WriteString("\n")
	b.WriteString("transport   ")
	if len(r.TransportErrors) == 0 {
		b.WriteString(" no errors\n")
	} else {
		b.WriteString("\n")
		for _, c := range sortedStringKeys(r.TransportErrors) {
			fmt.Fprintf(&b, "  %-18s %d (e.g. %s)\n", c, r.TransportErrors[c], r.TransportErrorSamples[c])
		}
	}
	if o := r.OpenLoop; o != nil {
		fmt.Fprintf(&b, "schedule     %d scheduled, %d sent, %d late (>1ms), %d skipped, max send lag %s\n",
			o.Scheduled, o.Sent, o.Late, o.Skipped, time.Duration(o.MaxLagSec*1e9).Round(time.Microsecond))
		if o.Late > 0 || o.Skipped > 0 {
			b.WriteString("             (the target or --concurrency could not keep the rate; latency counts from the scheduled time)\n")
		}
	}
	fmt.Fprintf(&b, "loadgen cpu  %.3fs user + %.3fs system = %.1f µs/request\n", r.CPU.UserSec, r.CPU.SystemSec, r.CPU.PerRequestUs)
	_, err := io.WriteString(w, b.String())
	return err
}

func sortedStringKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}
