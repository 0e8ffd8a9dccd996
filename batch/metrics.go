package batch

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// Stats is a point-in-time copy of the batcher's counters. Each field is
// read atomically; the snapshot as a whole is not (fields may be a few
// operations apart), which is fine for monitoring and tests that wait for
// quiescence first.
type Stats struct {
	// Accepted counts Submit calls that queued their proposal.
	Accepted uint64
	// Rejected counts refusals, indexed by Reason (ReasonNone is unused).
	Rejected [numReasons]uint64
	// PendingProposals and PendingBytes: queued, not yet in a batch.
	PendingProposals int
	PendingBytes     int64
	// InflightBatches: handed to the proposer, not yet finished or expired.
	InflightBatches int
	// Batches counts batches by Trigger; Entries and Bytes their contents.
	Batches [numTriggers]uint64
	Entries uint64
	Bytes   uint64
	// WaitNanos sums, over batched proposals, the time from Submit to Next.
	WaitNanos uint64
	// Committed, Failed, Forwarded and Expired count how batches left the
	// pipeline; LateFinishes counts Finish calls for already expired
	// batches.
	Committed    uint64
	Failed       uint64
	Forwarded    uint64
	Expired      uint64
	LateFinishes uint64
	// CommitLatencyNanos is the smoothed commit latency driving the hold.
	CommitLatencyNanos int64
}

// TotalBatches is the number of batches of any trigger.
func (s *Stats) TotalBatches() uint64 {
	var n uint64
	for _, c := range s.Batches {
		n += c
	}
	return n
}

// TotalRejected is the number of refusals of any reason.
func (s *Stats) TotalRejected() uint64 {
	var n uint64
	for _, c := range s.Rejected {
		n += c
	}
	return n
}

// AvgBatchEntries is the mean batch size in proposals (0 with no batch).
func (s *Stats) AvgBatchEntries() float64 {
	if n := s.TotalBatches(); n > 0 {
		return float64(s.Entries) / float64(n)
	}
	return 0
}

// Stats returns a snapshot. Safe from any goroutine.
func (b *Batcher) Stats() Stats {
	s := Stats{
		Accepted:           b.queue.Accepted(),
		PendingProposals:   b.queue.Len(),
		PendingBytes:       b.queue.Bytes(),
		InflightBatches:    int(b.inflightBatches.Load()),
		Entries:            b.entries.Load(),
		Bytes:              b.bytes.Load(),
		WaitNanos:          b.waitNanos.Load(),
		Committed:          b.committed.Load(),
		Failed:             b.failed.Load(),
		Forwarded:          b.forwarded.Load(),
		Expired:            b.expired.Load(),
		LateFinishes:       b.lateFinishes.Load(),
		CommitLatencyNanos: b.ewmaNanos.Load(),
	}
	for r := range s.Rejected {
		s.Rejected[r] = b.queue.Rejected(Reason(r))
	}
	for t := range s.Batches {
		s.Batches[t] = b.batches[t].Load()
	}
	return s
}

// registerMetrics puts the batcher's metrics on set. Counters and gauges
// are read from the batcher's atomics at scrape time by one writer
// callback, so the hot path updates nothing but those atomics.
//
//	edgekv_batch_accepted_total                 proposals queued
//	edgekv_batch_rejected_total{reason="..."}   refusals (full_count, full_bytes, too_large, closed)
//	edgekv_batch_pending_proposals              queued, not yet batched
//	edgekv_batch_pending_bytes
//	edgekv_batch_inflight_batches               handed out, not finished
//	edgekv_batch_batches_total{trigger="..."}   batches by why they left (idle, full, delay)
//	edgekv_batch_entries_total                  proposals batched
//	edgekv_batch_bytes_total                    bytes batched
//	edgekv_batch_wait_seconds_total             sum of time proposals spent in the batcher
//	edgekv_batch_finished_total{outcome="..."}  committed, failed, forwarded, expired, late
//	edgekv_batch_commit_latency_seconds         smoothed commit latency (the hold)
//
// The distributions (batch sizes in proposals and bytes, the oldest wait
// of each batch, commit latencies) go to Config.Observer instead: the ops
// package keeps them as Prometheus histograms with `le` buckets.
func (b *Batcher) registerMetrics(set *metrics.Set) {
	var rejectedNames [numReasons]string
	for r := ReasonFullCount; r < numReasons; r++ {
		rejectedNames[r] = `edgekv_batch_rejected_total{reason="` + r.String() + `"}`
	}
	var batchNames [numTriggers]string
	for t := Trigger(0); t < numTriggers; t++ {
		batchNames[t] = `edgekv_batch_batches_total{trigger="` + t.String() + `"}`
	}
	set.RegisterMetricsWriter(func(w io.Writer) {
		s := b.Stats()
		metrics.WriteCounterUint64(w, "edgekv_batch_accepted_total", s.Accepted)
		for r := ReasonFullCount; r < numReasons; r++ {
			metrics.WriteCounterUint64(w, rejectedNames[r], s.Rejected[r])
		}
		metrics.WriteGaugeUint64(w, "edgekv_batch_pending_proposals", uint64(s.PendingProposals))
		metrics.WriteGaugeUint64(w, "edgekv_batch_pending_bytes", uint64(s.PendingBytes))
		metrics.WriteGaugeUint64(w, "edgekv_batch_inflight_batches", uint64(s.InflightBatches))
		for t := Trigger(0); t < numTriggers; t++ {
			metrics.WriteCounterUint64(w, batchNames[t], s.Batches[t])
		}
		metrics.WriteCounterUint64(w, "edgekv_batch_entries_total", s.Entries)
		metrics.WriteCounterUint64(w, "edgekv_batch_bytes_total", s.Bytes)
		metrics.WriteCounterFloat64(w, "edgekv_batch_wait_seconds_total", float64(s.WaitNanos)/1e9)
		metrics.WriteCounterUint64(w, `edgekv_batch_finished_total{outcome="committed"}`, s.Committed)
		metrics.WriteCounterUint64(w, `edgekv_batch_finished_total{outcome="failed"}`, s.Failed)
		metrics.WriteCounterUint64(w, `edgekv_batch_finished_total{outcome="forwarded"}`, s.Forwarded)
		metrics.WriteCounterUint64(w, `edgekv_batch_finished_total{outcome="expired"}`, s.Expired)
		metrics.WriteCounterUint64(w, `edgekv_batch_finished_total{outcome="late"}`, s.LateFinishes)
		metrics.WriteGaugeFloat64(w, "edgekv_batch_commit_latency_seconds", float64(s.CommitLatencyNanos)/1e9)
	})
}

// RegisterMetrics puts a queue's gauges and refusal counters on set under
// prefix (for example "edgekv_batch_reads" for the linearizable-read
// queue): <prefix>_pending, <prefix>_pending_bytes, <prefix>_accepted_total
// and <prefix>_rejected_total{reason="..."}.
func (q *Queue[T]) RegisterMetrics(set *metrics.Set, prefix string) {
	var rejectedNames [numReasons]string
	for r := ReasonFullCount; r < numReasons; r++ {
		rejectedNames[r] = prefix + `_rejected_total{reason="` + r.String() + `"}`
	}
	pending, pendingBytes, accepted := prefix+"_pending", prefix+"_pending_bytes", prefix+"_accepted_total"
	set.RegisterMetricsWriter(func(w io.Writer) {
		metrics.WriteGaugeUint64(w, pending, uint64(q.Len()))
		metrics.WriteGaugeUint64(w, pendingBytes, uint64(q.Bytes()))
		metrics.WriteCounterUint64(w, accepted, q.Accepted())
		for r := ReasonFullCount; r < numReasons; r++ {
			metrics.WriteCounterUint64(w, rejectedNames[r], q.Rejected(r))
		}
	})
}
