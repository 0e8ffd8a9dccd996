package wal

import (
	"errors"
	"runtime"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
)

func sampleSegment() []byte {
	b := appendSegmentHeader(nil, 1)
	b = appendHardState(b, raftmsg.HardState{Term: 1})
	b = appendSnapshotRef(b, SnapshotRef{})
	b = appendBatchEnd(b, int64(len(b)))
	e := raftmsg.Entry{Index: 1, Term: 1, Data: []byte("hello")}
	b = appendEntry(b, &e)
	b = appendHardState(b, raftmsg.HardState{Term: 1, Commit: 1})
	b = appendBatchEnd(b, int64(len(b)))
	return append(b, make([]byte, 64)...)
}

// FuzzDecodeRecord: arbitrary bytes frame as a record or give an error,
// never panic, and a framed record never claims more than the input holds.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(sampleSegment())
	f.Add(make([]byte, 9))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, size, err := decodeRecord(b)
		if err != nil {
			return
		}
		if size > len(b) || len(payload) != size-headerBytes {
			t.Fatalf("record of size %d (payload %d) from %d bytes", size, len(payload), len(b))
		}
		switch typ {
		case recEntry:
			decodeEntry(payload)
		case recHardState:
			decodeHardState(payload)
		case recSnapshotRef:
			decodeSnapshotRef(payload)
		case recSegmentHeader:
			decodeSegmentHeader(payload)
		case recBatchEnd:
			checkBatchEnd(payload, 0)
		}
	})
}

// FuzzScanSegment: recovery of an arbitrary segment returns entries or a
// typed error, never panics, and never returns more entry bytes than the
// segment holds.
func FuzzScanSegment(f *testing.F) {
	f.Add(sampleSegment(), true)
	f.Add(sampleSegment()[:40], false)
	f.Fuzz(func(t *testing.T, b []byte, isLast bool) {
		st := &replayState{}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := st.scanSegment(b, "seg", 1, isLast)
		runtime.ReadMemStats(&after)
		// Entry copies plus slice headers: bounded by the input.
		if grown := after.TotalAlloc - before.TotalAlloc; grown > uint64(8*len(b))+64<<10 {
			t.Fatalf("scanning %d bytes allocated %d", len(b), grown)
		}
		if err != nil {
			if !errors.Is(err, diskerr.ErrCorrupt) && !errors.Is(err, diskerr.ErrMetaMismatch) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		total := 0
		for _, e := range st.entries {
			total += len(e.Data)
		}
		if total > len(b) {
			t.Fatalf("%d entry bytes from a %d-byte segment", total, len(b))
		}
	})
}

// FuzzReplayFramed frames fuzzer-chosen records with valid checksums (so
// the fuzzer explores replay, not the CRC): each record is a type byte, a
// length byte and that many payload bytes; type 5 gets a batch end at its
// true offset when the length byte is even. Replay must never panic and
// must return entries that are contiguous and follow the snapshot.
func FuzzReplayFramed(f *testing.F) {
	f.Add([]byte{2, 25, 0}, true)
	f.Add(append([]byte{2, 30}, make([]byte, 30)...), false)
	f.Fuzz(func(t *testing.T, spec []byte, isLast bool) {
		seg := appendSegmentHeader(nil, 1)
		seg = appendBatchEnd(seg, int64(len(seg)))
		for len(spec) >= 2 {
			typ, n := spec[0], int(spec[1])
			spec = spec[2:]
			if typ == recBatchEnd && n%2 == 0 {
				seg = appendBatchEnd(seg, int64(len(seg)))
				continue
			}
			n = min(n, len(spec))
			payload := spec[:n]
			spec = spec[n:]
			seg = appendRecord(seg, typ, len(payload), func(p []byte) { copy(p, payload) })
		}
		st := &replayState{}
		if _, err := st.scanSegment(seg, "seg", 1, isLast); err != nil {
			return
		}
		if err := st.finish("dir"); err != nil {
			return
		}
		for i, e := range st.entries {
			if e.Index != st.snap.Index+1+uint64(i) {
				t.Fatalf("entry %d has index %d after snapshot %d", i, e.Index, st.snap.Index)
			}
		}
	})
}
