package ops

import (
	"fmt"
	"io"
	"math"
	rtmetrics "runtime/metrics"
)

// runtimeMetric maps one runtime/metrics sample to a Prometheus family.
type runtimeMetric struct {
	source, family, typ string
}

// runtimeMetricList is what the node exports about the Go runtime: the
// scheduler and mutex contention first (a stalled apply loop shows up
// there before anywhere else), then GC and memory.
var runtimeMetricList = []runtimeMetric{
	{"/sched/goroutines:goroutines", "go_goroutines", "gauge"},
	{"/sched/gomaxprocs:threads", "go_gomaxprocs", "gauge"},
	{"/sched/threads/total:threads", "go_threads", "gauge"},
	{"/sched/latencies:seconds", "go_sched_latencies_seconds", "histogram"},
	{"/sync/mutex/wait/total:seconds", "go_sync_mutex_wait_seconds_total", "counter"},
	{"/sched/pauses/total/gc:seconds", "go_sched_pauses_gc_seconds", "histogram"},
	{"/gc/cycles/total:gc-cycles", "go_gc_cycles_total", "counter"},
	{"/cpu/classes/gc/total:cpu-seconds", "go_gc_cpu_seconds_total", "counter"},
	{"/gc/heap/allocs:bytes", "go_gc_heap_allocs_bytes_total", "counter"},
	{"/gc/heap/live:bytes", "go_gc_heap_live_bytes", "gauge"},
	{"/gc/gomemlimit:bytes", "go_gc_gomemlimit_bytes", "gauge"},
	{"/memory/classes/total:bytes", "go_memory_total_bytes", "gauge"},
}

// runtimeFamilies holds TYPE and HELP of the runtime families; HELP is
// runtime/metrics' own description of the source metric.
var runtimeFamilies = func() map[string]familyDesc {
	descs := make(map[string]string)
	for _, d := range rtmetrics.All() {
		descs[d.Name] = d.Description
	}
	out := make(map[string]familyDesc, len(runtimeMetricList)+1)
	for _, rm := range runtimeMetricList {
		help := descs[rm.source]
		if help == "" {
			help = "Go runtime metric " + rm.source + "."
		}
		if rm.typ == "histogram" {
			help += " Buckets above 1s are folded into +Inf; no _sum (the runtime does not keep one)."
		}
		out[rm.family] = familyDesc{rm.typ, help}
	}
	out[famProcessCPU] = familyDesc{"counter", "User and system CPU time used by the process."}
	return out
}()

const famProcessCPU = "process_cpu_seconds_total"

// maxRuntimeBuckets bounds the buckets written per runtime histogram (the
// runtime keeps ~150).
const maxRuntimeBuckets = 24

// runtimeSampler reads runtime/metrics into a reused sample slice. It is
// owned by Metrics and used under scrapeMu.
type runtimeSampler struct {
	samples []rtmetrics.Sample
}

func (r *runtimeSampler) init() {
	supported := make(map[string]bool)
	for _, d := range rtmetrics.All() {
		supported[d.Name] = true
	}
	for _, rm := range runtimeMetricList {
		if supported[rm.source] {
			r.samples = append(r.samples, rtmetrics.Sample{Name: rm.source})
		}
	}
}

func (r *runtimeSampler) write(w io.Writer) {
	rtmetrics.Read(r.samples)
	for i := range r.samples {
		s := &r.samples[i]
		rm := runtimeMetricFor(s.Name)
		switch s.Value.Kind() {
		case rtmetrics.KindUint64:
			fmt.Fprintf(w, "%s %d\n", rm.family, s.Value.Uint64())
		case rtmetrics.KindFloat64:
			fmt.Fprintf(w, "%s %s\n", rm.family, formatFloat(s.Value.Float64()))
		case rtmetrics.KindFloat64Histogram:
			writeRuntimeHistogram(w, rm.family, s.Value.Float64Histogram())
		default:
			// KindBad: a metric this Go version dropped; init filters
			// those out, so this is only reachable after a runtime change.
		}
	}
	if cpu, ok := processCPUSeconds(); ok {
		fmt.Fprintf(w, "%s %s\n", famProcessCPU, formatFloat(cpu))
	}
}

func runtimeMetricFor(source string) runtimeMetric {
	for _, rm := range runtimeMetricList {
		if rm.source == source {
			return rm
		}
	}
	panic("ops: runtime sample " + source + " not in runtimeMetricList")
}

// writeRuntimeHistogram writes a runtime histogram with cumulative `le`
// buckets: counts[i] covers (buckets[i], buckets[i+1]], so the cumulative
// count through i is exact at le=buckets[i+1]. Bounds above one second
// are folded into +Inf, and at most maxRuntimeBuckets bounds are written.
func writeRuntimeHistogram(w io.Writer, family string, h *rtmetrics.Float64Histogram) {
	counts := h.Counts
	n := len(counts)
	for n > 0 && h.Buckets[n] > 1 {
		n--
	}
	step := (n + maxRuntimeBuckets - 1) / maxRuntimeBuckets
	var cumulative, total uint64
	for _, c := range counts {
		total += c
	}
	for i := 0; i < n; i++ {
		cumulative += counts[i]
		le := h.Buckets[i+1]
		if (i+1)%max(step, 1) != 0 || math.IsInf(le, 0) || le <= 0 {
			continue
		}
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", family, formatFloat(le), cumulative)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_count %d\n", family, total, family, total)
}
