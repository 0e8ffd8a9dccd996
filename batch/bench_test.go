package batch

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkSubmitCollect measures the whole submission path: producers
// Acquire a waiter, Submit, and Wait; one proposer goroutine batches and a
// fake cluster commits each batch after the given latency, completing the
// waiters. Reported: ops/s, mean batch size, allocations per operation.
//
//	go test -run '^$' -bench SubmitCollect -benchmem ./batch/
//
// batching=off (MaxBatchBytes 1: one proposal per batch) against a cluster
// with latency gives the adaptive/off ratio; with zero latency the
// pipeline is always idle, so batches are single anyway and the figure is
// the raw cost of the path.
func BenchmarkSubmitCollect(b *testing.B) {
	for _, latency := range []time.Duration{0, 200 * time.Microsecond} {
		for _, batching := range []string{"adaptive", "off"} {
			if latency == 0 && batching == "off" {
				continue
			}
			for _, producers := range []int{1, 16, 64, 256} {
				b.Run(fmt.Sprintf("latency=%v/batching=%s/producers=%d", latency, batching, producers), func(b *testing.B) {
					cfg := Config{}
					if batching == "off" {
						cfg.MaxBatchBytes = 1
					}
					benchSubmitCollect(b, cfg, producers, latency)
				})
			}
		}
	}
}

func benchSubmitCollect(b *testing.B, cfg Config, producers int, latency time.Duration) {
	bt, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := NewRegistry[uint64](2*DefaultMaxPending, 1)
	if err != nil {
		b.Fatal(err)
	}
	p := startTestProposer(b, bt, reg, latency)
	b.ReportAllocs()
	var start time.Time
	refused := runClosedLoop(b, bt, reg, producers, int64(b.N), func() {
		b.ResetTimer()
		start = time.Now()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	p.close()
	s := bt.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(s.AvgBatchEntries(), "entries/batch")
	b.ReportMetric(float64(refused)/float64(b.N), "refused/op")
}

// BenchmarkSubmitOnly measures Submit alone against a draining proposer:
// the cost a handler pays to enqueue (open loop: refusals are retried).
func BenchmarkSubmitOnly(b *testing.B) {
	for _, producers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			bt, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			reg, _ := NewRegistry[uint64](1, 1)
			startTestProposer(b, bt, reg, 0)
			b.ReportAllocs()
			b.SetParallelism((producers + 1) / 2)
			payload := make([]byte, 100)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					for bt.Submit(Proposal{RequestID: 0, Data: payload}) != ReasonNone {
						runtime.Gosched() // full: let the proposer drain
					}
				}
			})
			b.StopTimer()
			s := bt.Stats()
			b.ReportMetric(s.AvgBatchEntries(), "entries/batch")
		})
	}
}
