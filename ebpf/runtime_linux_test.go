//go:build linux && amd64

package ebpf

import (
	"testing"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/edgekv/edgekv/ebpf/stage"
)

// TestProgramRuntime: with kernel BPF statistics on, the tracer's
// programs count their runs and time; one marker hit is at least one run.
func TestProgramRuntime(t *testing.T) {
	tr := attachOrSkip(t, Options{StagesOnly: true})
	stats, err := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling BPF statistics (needs CAP_SYS_ADMIN, as root): %v", err)
	}
	defer stats.Close()
	runs0, total0, err := tr.ProgramRuntime()
	if err != nil {
		t.Fatal(err)
	}
	const hits = 100
	for id := uint64(1); id <= hits; id++ {
		stage.Received(id)
	}
	runs1, total1, err := tr.ProgramRuntime()
	if err != nil {
		t.Fatal(err)
	}
	// Exactly: StagesOnly loads the marker program alone, and only this
	// test's goroutine hits the markers.
	if runs1-runs0 != hits || total1 <= total0 {
		t.Fatalf("after %d hits: %d more runs, runtime %v -> %v", hits, runs1-runs0, total0, total1)
	}
	t.Logf("marker program: %v per run", (total1-total0)/hits)
	tr.Close()
	if _, _, err := tr.ProgramRuntime(); err == nil {
		t.Fatal("ProgramRuntime after Close: no error")
	}
}
