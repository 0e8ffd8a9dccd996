package node

import (
	"log/slog"

	"github.com/edgekv/edgekv/ebpf"
	"github.com/edgekv/edgekv/ops"
)

// startTracing is --trace ebpf: it attaches the built-in eBPF tracer to
// this process (the write path's stage markers, its I/O syscalls and its
// threads' run-queue waits) and exports the histograms on m's /metrics.
// A host that cannot trace (no kernel BTF, no CAP_BPF/CAP_PERFMON,
// lockdown, not linux/amd64) gets one log line saying what is missing and
// a nil Tracer: tracing never stops a node from starting.
func startTracing(m *ops.Metrics, log *slog.Logger) *ebpf.Tracer {
	tr, err := ebpf.Attach(ebpf.Options{})
	if err != nil {
		log.Warn("--trace ebpf: running untraced", "reason", err)
		return nil
	}
	tr.RegisterMetrics(m.Set())
	log.Info("--trace ebpf: tracing this process; histograms on /metrics (edgekv_trace_*)", "pid", tr.PID())
	return tr
}
