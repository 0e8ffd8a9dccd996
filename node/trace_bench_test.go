//go:build linux

package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/ebpf"
	"github.com/edgekv/edgekv/ebpf/stage"
	"github.com/edgekv/edgekv/httpapi"
)

// BenchmarkStageMarksPerBatch is what the write path pays per batch for
// its stage marks with no probe attached: the six marker calls and the
// ledger's push and four walks (stages.go).
func BenchmarkStageMarksPerBatch(b *testing.B) {
	var l stageLedger
	var persisted, committed, applied, answered uint64
	b.ReportAllocs()
	for i := uint64(1); b.Loop(); i++ {
		stage.Received(i)
		stage.Proposed(i)
		l.push(i, i)
		l.markUpTo(&persisted, i, stage.Persisted)
		l.markUpTo(&committed, i, stage.Committed)
		l.markUpTo(&applied, i, stage.Applied)
		l.markUpTo(&answered, i, stage.Answered)
	}
}

// BenchmarkTracedWrites is the cost of --trace ebpf on write throughput:
// one in-process single-member Server on a real data dir (WAL fsyncs),
// written to by 64 concurrent writers through its Backend, in rounds of
// three sub-benchmarks: the tracer detached, attached with StagesOnly
// (the marker uprobes alone), and attached as --trace ebpf attaches it
// (plus raw_syscalls and scheduler programs). The rounds alternate within
// one run, so that a host's changing load hits every mode alike:
//
//	go test -run '^$' -bench TracedWrites -v ./node/
//
// With -v it ends with the median writes/s and CPU ns per write of each
// mode over the rounds, and their ratio to detached. Attached
// sub-benchmarks also report the marker hits per write they caused (six
// per batch) and bpf-ns/write, the kernel's count of the time the
// tracer's programs ran (host-wide) per write, which does not depend on
// how loaded the host is; the uprobe and tracepoint dispatch around the
// programs is not in it. Without tracing support they skip (fail under
// REQUIRE_EBPF_TESTS=1); the detached ones still run.
func BenchmarkTracedWrites(b *testing.B) {
	const rounds = 8
	srv := startBenchServer(b)
	n := srv.node
	var seq atomic.Uint64
	value := bytes.Repeat([]byte("v"), 128)
	// results[mode] collects each round's writes/s and CPU ns per write:
	// last holds the latest call's (a sub-benchmark's function runs once
	// per b.N tried; the last run is the one reported).
	type result struct{ perSec, cpuNs, bpfNs float64 }
	results := map[string][]result{}
	var last result
	writes := func(b *testing.B) {
		b.SetParallelism(32) // x GOMAXPROCS writers
		b.ReportAllocs()
		start, cpuStart := time.Now(), processCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			key := make([]byte, 0, 32)
			for pb.Next() {
				key = fmt.Appendf(key[:0], "k%d", seq.Add(1)%100000)
				if _, err := n.Backend().Put(context.Background(), httpapi.PutRequest{Key: key, Value: value}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		last = result{perSec: float64(b.N) / time.Since(start).Seconds(), cpuNs: float64(processCPU(b)-cpuStart) / float64(b.N)}
		b.ReportMetric(last.perSec, "writes/s")
		b.ReportMetric(last.cpuNs, "cpu-ns/write")
	}
	attached := func(opts ebpf.Options) func(b *testing.B) {
		return func(b *testing.B) {
			tr := attachTracer(b, opts) // detached after each run of b.N
			// Kernel BPF statistics (while stats is open) give the time the
			// tracer's programs ran, host-wide, per write: a figure the
			// host's load does not blur. Needs CAP_SYS_ADMIN.
			stats, statsErr := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if statsErr == nil {
				defer stats.Close()
			}
			var before, after ebpf.Snapshot
			if err := tr.Snapshot(&before); err != nil {
				b.Fatal(err)
			}
			_, bpf0, _ := tr.ProgramRuntime()
			writes(b)
			_, bpf1, _ := tr.ProgramRuntime()
			if err := tr.Snapshot(&after); err != nil {
				b.Fatal(err)
			}
			d := after.Sub(&before)
			var hits uint64
			for _, h := range d.StageHits {
				hits += h
			}
			b.ReportMetric(float64(hits)/float64(b.N), "hits/write")
			if statsErr == nil {
				last.bpfNs = float64((bpf1 - bpf0).Nanoseconds()) / float64(b.N)
				b.ReportMetric(last.bpfNs, "bpf-ns/write")
			}
		}
	}
	run := func(r int, mode string, f func(*testing.B)) {
		last = result{}
		if b.Run(fmt.Sprintf("round=%d/%s", r, mode), f) && last.perSec > 0 {
			results[mode] = append(results[mode], last)
		}
	}
	for r := 1; r <= rounds; r++ {
		run(r, "detached", writes)
		run(r, "stages-only", attached(ebpf.Options{StagesOnly: true}))
		run(r, "attached", attached(ebpf.Options{}))
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v) == 0 {
			return math.NaN()
		}
		return v[len(v)/2]
	}
	perSec := func(r result) float64 { return r.perSec }
	cpuNs := func(r result) float64 { return r.cpuNs }
	base, baseCPU := median(results["detached"], perSec), median(results["detached"], cpuNs)
	for _, m := range []string{"detached", "stages-only", "attached"} {
		ps, cpu := median(results[m], perSec), median(results[m], cpuNs)
		b.Logf("%-11s median of %d rounds: %.0f writes/s (x%.3f), %.0f cpu-ns/write (x%.3f), %.0f bpf-ns/write", m, len(results[m]), ps, ps/base, cpu, cpu/baseCPU,
			median(results[m], func(r result) float64 { return r.bpfNs }))
	}
}

// processCPU is this process's CPU time (user+system, every thread): on a
// host shared with other work, CPU per write is steadier than wall-clock
// throughput, and the kernel's time in the BPF programs run for this
// process's syscalls and uprobe hits is part of it.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startBenchServer starts a single-member Server in a temporary data dir
// on loopback ports, untraced, and waits until it leads.
func startBenchServer(b *testing.B) *Server {
	b.Helper()
	args := []string{
		"--data-dir", b.TempDir(), "--listen-client", freeLoopbackAddr(b), "--listen-peer", freeLoopbackAddr(b),
		"--log-level", "error",
	}
	cfg, _, err := config.Parse(args, nil, &bytes.Buffer{})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Close(); err != nil {
			b.Error(err)
		}
	})
	waitFor(b, "the single member to lead", srv.node.IsLeader)
	return srv
}

func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
