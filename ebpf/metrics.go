package ebpf

import (
	"bytes"
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgekv/edgekv/ebpf/hist"
	"github.com/edgekv/edgekv/ebpf/stage"
)

// Metric families WritePrometheus writes.
const (
	metricStageSeconds   = "edgekv_trace_stage_seconds"
	metricBatchSeconds   = "edgekv_trace_batch_seconds"
	metricStageHits      = "edgekv_trace_stage_hits_total"
	metricUnpaired       = "edgekv_trace_unpaired_total"
	metricSyscallSeconds = "edgekv_trace_syscall_seconds"
	metricRunQueue       = "edgekv_trace_runqueue_seconds"
)

// WritePrometheus writes s in the Prometheus text format:
//
//	edgekv_trace_stage_seconds{from="received",to="proposed"}  histogram, only pairs seen
//	edgekv_trace_batch_seconds                                 histogram, received -> answered
//	edgekv_trace_stage_hits_total{stage="..."}                 counter
//	edgekv_trace_unpaired_total{reason="..."}                  counter
//	edgekv_trace_syscall_seconds{syscall="fdatasync"}          histogram, every traced syscall
//	edgekv_trace_runqueue_seconds                              histogram
//
// Histogram buckets are the fixed powers of two of hist.WritePrometheus.
func (s *Snapshot) WritePrometheus(w io.Writer) error {
	var b bytes.Buffer
	metrics.WriteMetadataIfNeeded(&b, metricStageSeconds, "histogram")
	for from := range s.Stages {
		for to := range s.Stages[from] {
			h := &s.Stages[from][to]
			if h.Count() == 0 {
				continue
			}
			labels := fmt.Sprintf(`from=%q,to=%q`, stage.Stage(from).String(), stage.Stage(to).String())
			if err := hist.WritePrometheus(&b, metricStageSeconds, labels, h); err != nil {
				return err
			}
		}
	}
	metrics.WriteMetadataIfNeeded(&b, metricBatchSeconds, "histogram")
	if err := hist.WritePrometheus(&b, metricBatchSeconds, "", &s.Batch); err != nil {
		return err
	}
	metrics.WriteMetadataIfNeeded(&b, metricStageHits, "counter")
	for i, n := range s.StageHits {
		fmt.Fprintf(&b, "%s{stage=%q} %d\n", metricStageHits, stage.Stage(i).String(), n)
	}
	metrics.WriteMetadataIfNeeded(&b, metricUnpaired, "counter")
	for i, n := range s.Unpaired {
		fmt.Fprintf(&b, "%s{reason=%q} %d\n", metricUnpaired, unpairedNames[i], n)
	}
	metrics.WriteMetadataIfNeeded(&b, metricSyscallSeconds, "histogram")
	for i := range s.Syscalls {
		if err := hist.WritePrometheus(&b, metricSyscallSeconds, fmt.Sprintf("syscall=%q", syscallNames[i]), &s.Syscalls[i]); err != nil {
			return err
		}
	}
	metrics.WriteMetadataIfNeeded(&b, metricRunQueue, "histogram")
	if err := hist.WritePrometheus(&b, metricRunQueue, "", &s.RunQueue); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
