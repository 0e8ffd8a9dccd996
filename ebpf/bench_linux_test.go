//go:build linux && amd64

package ebpf

import (
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf/link"

	"github.com/edgekv/edgekv/ebpf/stage"
)

// The cost of a marker with no probe is BenchmarkMarker in package
// ebpf/stage (no attach needed). These measure it with the probes
// attached; both skip (or fail under REQUIRE_EBPF_TESTS=1) where the host
// cannot trace.

// BenchmarkMarkerAttached: one marker hit with the uprobe attached (the
// hit opens a batch in the kernel's map).
func BenchmarkMarkerAttached(b *testing.B) {
	attachOrSkip(b, Options{})
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		stage.Received(uint64(i))
	}
	cpu.report()
	reportOptimized(b)
}

// BenchmarkMarkerAttachedStagesOnly: as BenchmarkMarkerAttached without
// the raw_syscalls programs, which also run on the syscall an optimized
// uprobe hit makes.
func BenchmarkMarkerAttachedStagesOnly(b *testing.B) {
	attachOrSkip(b, Options{StagesOnly: true})
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		stage.Received(uint64(i))
	}
	cpu.report()
	reportOptimized(b)
}

// BenchmarkMarkerAttachedSingleUprobe: as BenchmarkMarkerAttached on the
// pre-6.6 attach path (classic perf-event uprobes).
func BenchmarkMarkerAttachedSingleUprobe(b *testing.B) {
	attachOrSkip(b, Options{singleUprobes: true})
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		stage.Received(uint64(i))
	}
	cpu.report()
	reportOptimized(b)
}

// BenchmarkOrphanMarkerAttached: a hit that only looks its id up (and
// misses): the kernel's uprobe cost with the cheapest path of the program.
func BenchmarkOrphanMarkerAttached(b *testing.B) {
	attachOrSkip(b, Options{})
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		stage.Committed(uint64(i) | 1<<63)
	}
	cpu.report()
}

// cpuMeter measures the process's CPU time (user+sys) over a benchmark
// loop: on a host shared with other work, wall-clock ns/op also counts
// the time the benchmark waited for a CPU.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuMeter { return cpuMeter{b: b, start: processCPU(b)} }

func (m cpuMeter) report() {
	m.b.ReportMetric(float64((processCPU(m.b)-m.start).Nanoseconds())/float64(m.b.N), "cpu-ns/op")
}

// reportOptimized reports whether the kernel replaced the marker's NOP5
// with a call into its uprobe trampoline (1) or still traps (0).
func reportOptimized(b *testing.B) {
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	code := make([]byte, 1)
	if _, err := mem.ReadAt(code, int64(stage.EntryPCs()[0])); err != nil {
		b.Fatal(err)
	}
	optimized := 0.0
	if code[0] == 0xe8 { // call rel32
		optimized = 1
	}
	b.ReportMetric(optimized, "nop5-optimized")
}

// BenchmarkBatchAttached: the six markers of one batch, probes attached,
// each pairing with the previous stage; ns/hit = ns/op / 6. For a batch of
// N requests the tracing cost per request is ns/op / N.
func BenchmarkBatchAttached(b *testing.B) {
	attachOrSkip(b, Options{})
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		id := uint64(i)
		stage.Received(id)
		stage.Proposed(id)
		stage.Persisted(id)
		stage.Committed(id)
		stage.Applied(id)
		stage.Answered(id)
	}
	cpu.report()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(stage.NumStages), "ns/hit")
}

//go:noinline
func ordinaryGoMarker(id uint64) uint64 { return id + 1 }

// BenchmarkOrdinaryGoFuncAttached is the alternative the stage markers
// avoid: the same program on an ordinary Go function, whose first
// instruction is not a 5-byte NOP, so the kernel traps on every hit.
func BenchmarkOrdinaryGoFuncAttached(b *testing.B) {
	tr := attachOrSkip(b, Options{})
	maps, err := readSelfMaps()
	if err != nil {
		b.Fatal(err)
	}
	off, err := fileOffset(maps, uint64(reflect.ValueOf(ordinaryGoMarker).Pointer()))
	if err != nil {
		b.Fatal(err)
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		b.Fatal(err)
	}
	l, err := ex.UprobeMulti(nil, tr.coll.Programs[traceProgOnMarker], &link.UprobeMultiOptions{
		Addresses: []uint64{off}, Cookies: []uint64{0}, PID: uint32(tr.PID()),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var sink uint64
	cpu := startCPU(b)
	for i := 0; b.Loop(); i++ {
		sink += ordinaryGoMarker(uint64(i))
	}
	cpu.report()
	if sink == 0 {
		b.Fatal("no calls")
	}
}

// BenchmarkPerWrite is the tracing cost per client write for batches of
// N writes: the six markers of one batch per N writes, with the probes
// detached and attached (op = one write).
func BenchmarkPerWrite(b *testing.B) {
	for _, attached := range []bool{false, true} {
		for _, n := range []int{1, 16, 128} {
			name := fmt.Sprintf("detached/batch=%d", n)
			if attached {
				name = fmt.Sprintf("attached/batch=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				if attached {
					attachOrSkip(b, Options{})
				}
				cpu := startCPU(b)
				var id uint64
				for i := 0; b.Loop(); i++ {
					if i%n != 0 {
						continue // a write that joined the open batch
					}
					id++
					stage.Received(id)
					stage.Proposed(id)
					stage.Persisted(id)
					stage.Committed(id)
					stage.Applied(id)
					stage.Answered(id)
				}
				cpu.report()
				b.ReportMetric(float64(stage.NumStages)/float64(n), "hits/write")
			})
		}
	}
}

// BenchmarkHostSyscallOverhead: what a tracer costs the rest of the host.
// It times getppid (not a traced syscall) in this process while a tracer
// is attached to another process: the raw_syscalls programs run on every
// syscall of every process and return after the PID check.
func BenchmarkHostSyscallOverhead(b *testing.B) {
	for _, attached := range []bool{false, true} {
		name := "detached"
		if attached {
			name = "attached-to-other-pid"
		}
		b.Run(name, func(b *testing.B) {
			if attached {
				skipUnlessTracingPossible(b)
				tg := startTarget(b)
				attachOrSkip(b, Options{PID: tg.pid})
			}
			cpu := startCPU(b)
			for b.Loop() {
				unix.Getppid()
			}
			cpu.report()
		})
	}
}
