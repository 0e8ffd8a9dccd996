package stage

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/ebpf/internal/gobuild"
)

func TestStageNames(t *testing.T) {
	want := []string{"received", "proposed", "persisted", "committed", "applied", "answered"}
	if len(want) != NumStages {
		t.Fatalf("NumStages = %d, want %d", NumStages, len(want))
	}
	for i, name := range want {
		if got := Stage(i).String(); got != name {
			t.Errorf("Stage(%d).String() = %q, want %q", i, got, name)
		}
	}
	if got := Stage(NumStages).String(); got != "invalid" {
		t.Errorf("out-of-range stage = %q, want invalid", got)
	}
}

// TestSymbolsMatchEntryPCs checks the contract the tracers rely on, in a
// binary built the way the release is (go test strips its own binaries):
// every Symbol is in the symbol table, at the address EntryPCs reports at
// run time (up to one load bias shared by all, for PIE builds).
func TestSymbolsMatchEntryPCs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the stand-in binary is linux-only; edgekv traces on linux only")
	}
	bin, err := gobuild.Build(t.TempDir(), "github.com/edgekv/edgekv/ebpf/internal/tracetarget")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-pcs").Output()
	if err != nil {
		t.Fatalf("%s -pcs: %v", bin, err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("reading symbols of %s: %v", bin, err)
	}
	byName := make(map[string]uint64, len(syms))
	for _, s := range syms {
		byName[s.Name] = s.Value
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != NumStages {
		t.Fatalf("-pcs printed %d lines, want %d:\n%s", len(lines), NumStages, out)
	}
	var bias uint64
	for i, line := range lines {
		var sym string
		var pc uint64
		if _, err := fmt.Sscanf(line, "%s %x", &sym, &pc); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if want := Symbol(Stage(i)); sym != want {
			t.Fatalf("stage %d: symbol %q, want %q", i, sym, want)
		}
		addr, ok := byName[sym]
		if !ok {
			t.Fatalf("symbol %q not in %s", sym, bin)
		}
		if i == 0 {
			bias = pc - addr
		} else if pc-addr != bias {
			t.Errorf("stage %v: pc %#x, symbol %#x: bias %#x, want %#x", Stage(i), pc, addr, pc-addr, bias)
		}
	}
}

// TestMarkersStartWithNOP5 checks, in this process's memory, the
// instruction the kernel needs to optimize the uprobe into a call (amd64).
func TestMarkersStartWithNOP5(t *testing.T) {
	if !ArgOnStack {
		t.Skip("markers are Go functions on this architecture")
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	want := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3}
	for i, pc := range EntryPCs() {
		code := make([]byte, len(want))
		if _, err := mem.ReadAt(code, int64(pc)); err != nil {
			t.Fatalf("reading code at %#x: %v", pc, err)
		}
		if !bytes.Equal(code, want) {
			t.Errorf("stage %v at %#x begins % x, want % x", Stage(i), pc, code, want)
		}
	}
}

func TestMarkAllStages(t *testing.T) {
	// The markers have no effect to observe without a probe (package ebpf
	// checks the hits); this proves every stage dispatches without panic
	// and that an invalid stage is ignored.
	for i := 0; i <= NumStages; i++ {
		Mark(Stage(i), uint64(i))
	}
}

// BenchmarkMarker measures one marker call with no probe attached (package
// ebpf measures it with a probe attached).
func BenchmarkMarker(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Received(uint64(i))
	}
}

// BenchmarkBatchOfSix is the per-batch cost: all six markers.
func BenchmarkBatchOfSix(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := uint64(i)
		Received(id)
		Proposed(id)
		Persisted(id)
		Committed(id)
		Applied(id)
		Answered(id)
	}
}
