//go:build linux && amd64

package ebpf

import (
	"reflect"
	"testing"

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
	for i := 0; b.Loop(); i++ {
		stage.Received(uint64(i))
	}
}

// BenchmarkBatchAttached: the six markers of one batch, probes attached,
// each pairing with the previous stage; ns/hit = ns/op / 6. For a batch of
// N requests the tracing cost per request is ns/op / N.
func BenchmarkBatchAttached(b *testing.B) {
	attachOrSkip(b, Options{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := uint64(i)
		stage.Received(id)
		stage.Proposed(id)
		stage.Persisted(id)
		stage.Committed(id)
		stage.Applied(id)
		stage.Answered(id)
	}
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
	l, err := ex.UprobeMulti(nil, tr.objs.OnMarker, &link.UprobeMultiOptions{
		Addresses: []uint64{off}, Cookies: []uint64{0}, PID: uint32(tr.PID()),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		sink += ordinaryGoMarker(uint64(i))
	}
	if sink == 0 {
		b.Fatal("no calls")
	}
}
