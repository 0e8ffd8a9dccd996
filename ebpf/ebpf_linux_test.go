//go:build linux && amd64

package ebpf

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"github.com/edgekv/edgekv/ebpf/hist"
	"github.com/edgekv/edgekv/ebpf/stage"
)

// attachOrSkip attaches a Tracer, or skips the test with the reason when
// the host cannot trace, unless REQUIRE_EBPF_TESTS=1 (CI as root), where
// that is a failure.
func attachOrSkip(t testing.TB, opts Options) *Tracer {
	t.Helper()
	tr, err := Attach(opts)
	if err == nil {
		t.Cleanup(func() {
			if err := tr.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return tr
	}
	if errors.Is(err, ErrUnavailable) && os.Getenv("REQUIRE_EBPF_TESTS") != "1" {
		t.Skipf("eBPF tracing not possible here (set REQUIRE_EBPF_TESTS=1 to fail instead): %v", err)
	}
	t.Fatalf("Attach(%+v): %v", opts, err)
	return nil
}

// skipUnlessTracingPossible skips (or, under REQUIRE_EBPF_TESTS=1,
// fails) a test before it does expensive setup when Check says this
// process cannot trace.
func skipUnlessTracingPossible(t testing.TB) {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("REQUIRE_EBPF_TESTS") == "1" {
			t.Fatalf("REQUIRE_EBPF_TESTS=1 but: %v", err)
		}
		t.Skipf("eBPF tracing not possible here (set REQUIRE_EBPF_TESTS=1 to fail instead): %v", err)
	}
}

func snapshot(t testing.TB, tr *Tracer) *Snapshot {
	t.Helper()
	s := new(Snapshot)
	if err := tr.Snapshot(s); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

// fdatasyncs writes 4 KiB and fdatasyncs it n times in a file in dir.
func fdatasyncs(t testing.TB, dir string, n int) {
	t.Helper()
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for i := 0; i < n; i++ {
		if _, err := f.Write(block); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
	}
}

// pingPong makes two OS threads wake each other n times, so that the
// process's threads pass through the run queue.
func pingPong(n int) {
	a, b := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := 0; i < n; i++ {
			a <- struct{}{}
			<-b
		}
	}()
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := 0; i < n; i++ {
			<-a
			b <- struct{}{}
		}
	}()
	wg.Wait()
}

// maxSlot returns the highest non-empty slot of h, or -1.
func maxSlot(h *hist.Log2) int {
	last := -1
	for i, c := range h.Slots {
		if c > 0 {
			last = i
		}
	}
	return last
}

// checkBatches checks that exactly n batches went through all six stages
// in order during d, each consecutive pair paired, nothing else.
func checkBatches(t *testing.T, d *Snapshot, n uint64) {
	t.Helper()
	for i, hits := range d.StageHits {
		if hits != n {
			t.Errorf("stage %v: %d hits, want %d", stage.Stage(i), hits, n)
		}
	}
	for from := range d.Stages {
		for to := range d.Stages[from] {
			got := d.Stages[from][to].Count()
			var want uint64
			if to == from+1 {
				want = n
			}
			if got != want {
				t.Errorf("stage %v -> %v: count %d, want %d", stage.Stage(from), stage.Stage(to), got, want)
			}
		}
	}
	if got := d.Batch.Count(); got != n {
		t.Errorf("batch received -> answered: count %d, want %d", got, n)
	}
	// A whole batch takes at least as long as any of its steps and, here,
	// far less than a second.
	if last := maxSlot(&d.Batch); last >= 30 {
		t.Errorf("batch latency slot %d (>= 1.07s) implausible", last)
	}
	if d.Batch.SumNs < d.Stages[0][1].SumNs {
		t.Errorf("batch total %dns below its first step %dns", d.Batch.SumNs, d.Stages[0][1].SumNs)
	}
}

// TestAttachSelf traces this process the way `--trace ebpf` does (by
// marker address) and checks that every histogram fills with exactly the
// events the test made.
func TestAttachSelf(t *testing.T) {
	tr := attachOrSkip(t, Options{})
	if tr.PID() != os.Getpid() {
		t.Fatalf("PID() = %d, want %d", tr.PID(), os.Getpid())
	}
	before := snapshot(t, tr)

	const batches = 300
	for id := uint64(1); id <= batches; id++ {
		stage.Received(id)
		stage.Proposed(id)
		stage.Persisted(id)
		stage.Committed(id)
		stage.Applied(id)
		stage.Answered(id)
	}
	const syncs = 40
	fdatasyncs(t, t.TempDir(), syncs)
	pingPong(2000)

	after := snapshot(t, tr)
	d := after.Sub(before)
	checkBatches(t, &d, batches)
	if d.Unpaired != [NumUnpaired]uint64{} {
		t.Errorf("unpaired hits %v, want none", d.Unpaired)
	}

	fsync := &d.Syscalls[1]
	if SyscallName(1) != "fdatasync" {
		t.Fatalf("SyscallName(1) = %q", SyscallName(1))
	}
	if got := fsync.Count(); got != syncs {
		t.Errorf("fdatasync count %d, want %d", got, syncs)
	}
	if fsync.SumNs == 0 {
		t.Error("fdatasync latency sum is 0")
	}
	if last := maxSlot(fsync); last >= 30 {
		t.Errorf("fdatasync latency slot %d (>= 1.07s) implausible", last)
	}
	if got := d.Syscalls[3].Count(); got < syncs {
		t.Errorf("write count %d, want >= %d", got, syncs)
	}
	if d.RunQueue.Count() == 0 {
		t.Error("run queue histogram empty after 2000 thread wakeups")
	}
	if last := maxSlot(&d.RunQueue); last >= 30 {
		t.Errorf("run queue latency slot %d (>= 1.07s) implausible", last)
	}
	t.Logf("fdatasync mean %v, run queue count %d mean %v, batch mean %v",
		fsync.Mean(), d.RunQueue.Count(), d.RunQueue.Mean(), d.Batch.Mean())
}

// TestPairsByIDAcrossThreads marks the stages of each batch on different
// OS threads and interleaves batches: pairing must follow the id.
func TestPairsByIDAcrossThreads(t *testing.T) {
	tr := attachOrSkip(t, Options{})
	before := snapshot(t, tr)

	const batches = 200
	ids := make(chan uint64, batches)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for id := range ids {
			stage.Committed(id)
			stage.Applied(id)
			stage.Answered(id)
		}
	}()
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		// Open every batch first, so that up to 200 are in flight at once.
		base := uint64(time.Now().UnixNano())
		for i := uint64(0); i < batches; i++ {
			stage.Received(base + i)
		}
		for i := uint64(0); i < batches; i++ {
			stage.Proposed(base + i)
			stage.Persisted(base + i)
			ids <- base + i
		}
		close(ids)
	}()
	<-done

	d := snapshot(t, tr).Sub(before)
	checkBatches(t, &d, batches)

	// Unpaired hits are counted, not paired with anything.
	before = snapshot(t, tr)
	stage.Committed(1 << 62) // never received
	stage.Received(1<<62 + 1)
	stage.Proposed(1<<62 + 1)
	stage.Proposed(1<<62 + 1) // again: out of order
	d = snapshot(t, tr).Sub(before)
	if d.Unpaired[UnpairedOrphan] != 1 || d.Unpaired[UnpairedOutOfOrder] != 1 {
		t.Errorf("unpaired %v, want orphan 1, out of order 1", d.Unpaired)
	}
	if got := d.Stages[0][1].Count(); got != 1 {
		t.Errorf("received -> proposed count %d, want 1", got)
	}
}

// TestCloseDetaches checks that after Close nothing is counted and the
// tracer refuses reads, and that Close is idempotent.
func TestCloseDetaches(t *testing.T) {
	tr := attachOrSkip(t, Options{})
	stage.Received(7)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var s Snapshot
	if err := tr.Snapshot(&s); err == nil {
		t.Fatal("Snapshot after Close succeeded")
	}
	// A second tracer sees only its own events: the first left nothing
	// attached that would double-count.
	tr2 := attachOrSkip(t, Options{})
	before := snapshot(t, tr2)
	stage.Received(8)
	stage.Proposed(8)
	d := snapshot(t, tr2).Sub(before)
	if d.StageHits[0] != 1 || d.StageHits[1] != 1 {
		t.Fatalf("hits %v, want one received and one proposed", d.StageHits)
	}
}

// TestRegisterMetrics scrapes a metrics.Set holding a real tracer.
func TestRegisterMetrics(t *testing.T) {
	tr := attachOrSkip(t, Options{})
	set := metrics.NewSet()
	tr.RegisterMetrics(set)
	base := uint64(time.Now().UnixNano())
	for i := uint64(0); i < 10; i++ {
		for s := 0; s < stage.NumStages; s++ {
			stage.Mark(stage.Stage(s), base+i)
		}
	}
	fdatasyncs(t, t.TempDir(), 5)
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	samples := checkPrometheusText(t, buf.String())
	for series, want := range map[string]string{
		`edgekv_trace_stage_seconds_count{from="received",to="proposed"}`: "10",
		`edgekv_trace_stage_seconds_count{from="applied",to="answered"}`:  "10",
		`edgekv_trace_batch_seconds_count`:                                "10",
		`edgekv_trace_stage_hits_total{stage="persisted"}`:                "10",
		`edgekv_trace_syscall_seconds_count{syscall="fdatasync"}`:         "5",
		`edgekv_trace_read_errors_total`:                                  "0",
	} {
		if got, ok := samples[series]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", series, got, ok, want)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	set.WritePrometheus(&buf)
	if strings.Contains(buf.String(), "edgekv_trace") {
		t.Errorf("closed tracer still exported:\n%s", buf.String())
	}
}

// TestScrapeWhileClosing scrapes and snapshots from several goroutines
// while the tracer is closed under them (run it with -race): every read
// either succeeds or reports the tracer closed, none touches freed maps.
func TestScrapeWhileClosing(t *testing.T) {
	tr := attachOrSkip(t, Options{StagesOnly: true})
	set := metrics.NewSet()
	tr.RegisterMetrics(set)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var s Snapshot
			var buf bytes.Buffer
			for i := 0; i < 50; i++ {
				if err := tr.Snapshot(&s); err != nil && !strings.Contains(err.Error(), "closed") {
					t.Errorf("Snapshot: %v", err)
					return
				}
				buf.Reset()
				set.WritePrometheus(&buf)
				stage.Received(uint64(i))
			}
		}()
	}
	close(start)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestTwoTracersIndependent: the node's own tracer and an `edgekv trace`
// on the same process each count every hit, in their own maps.
func TestTwoTracersIndependent(t *testing.T) {
	a := attachOrSkip(t, Options{})
	b := attachOrSkip(t, Options{StagesOnly: true})
	beforeA, beforeB := snapshot(t, a), snapshot(t, b)
	base := uint64(time.Now().UnixNano())
	for i := uint64(0); i < 25; i++ {
		for s := 0; s < stage.NumStages; s++ {
			stage.Mark(stage.Stage(s), base+i)
		}
	}
	dA, dB := snapshot(t, a).Sub(beforeA), snapshot(t, b).Sub(beforeB)
	checkBatches(t, &dA, 25)
	checkBatches(t, &dB, 25)
	fdatasyncs(t, t.TempDir(), 3)
	if got := snapshot(t, b).Syscalls[1].Count(); got != 0 {
		t.Errorf("StagesOnly tracer counted %d fdatasyncs, want 0", got)
	}
	if got := snapshot(t, a).Syscalls[1].Count(); got != 3 {
		t.Errorf("full tracer counted %d fdatasyncs, want 3", got)
	}
}

// TestSingleUprobesFallback takes the attach path of kernels without
// uprobe_multi (before 6.6): one classic perf-event uprobe per marker,
// by address for this process and by symbol for another.
func TestSingleUprobesFallback(t *testing.T) {
	t.Run("self", func(t *testing.T) {
		tr := attachOrSkip(t, Options{singleUprobes: true})
		before := snapshot(t, tr)
		base := uint64(time.Now().UnixNano())
		for i := uint64(0); i < 100; i++ {
			for s := 0; s < stage.NumStages; s++ {
				stage.Mark(stage.Stage(s), base+i)
			}
		}
		fdatasyncs(t, t.TempDir(), 4)
		d := snapshot(t, tr).Sub(before)
		checkBatches(t, &d, 100)
		if got := d.Syscalls[1].Count(); got != 4 {
			t.Errorf("fdatasync count %d, want 4", got)
		}
	})
	t.Run("other process", func(t *testing.T) {
		skipUnlessTracingPossible(t)
		tg := startTarget(t)
		tr := attachOrSkip(t, Options{PID: tg.pid, singleUprobes: true, StagesOnly: true})
		before := snapshot(t, tr)
		tg.do(t, "batches 60")
		d := snapshot(t, tr).Sub(before)
		checkBatches(t, &d, 60)
	})
}
