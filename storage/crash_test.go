package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/snapfile"
	"github.com/edgekv/edgekv/storage/vfs"
)

// facadeModel is the durable state the storage must recover.
type facadeModel struct {
	snap    raftmsg.SnapshotMeta
	entries []raftmsg.Entry
}

func (m facadeModel) last() uint64 {
	if n := len(m.entries); n > 0 {
		return m.entries[n-1].Index
	}
	return m.snap.Index
}

func snapPayload(index uint64) []byte { return []byte(fmt.Sprintf("state-at-%d", index)) }

// checkSnapshotPayload reads the recovered snapshot's payload (once).
func checkSnapshotPayload(rec *Recovered) error {
	if rec.Snapshot == nil {
		return nil
	}
	payload, err := io.ReadAll(rec.Snapshot.Payload)
	if err != nil || !bytes.Equal(payload, snapPayload(rec.Snapshot.Meta.Index)) {
		return fmt.Errorf("snapshot %d payload %q (%v)", rec.Snapshot.Meta.Index, payload, err)
	}
	return nil
}

func (m facadeModel) matches(rec *Recovered) error {
	var snapIndex, snapTerm uint64
	if rec.Snapshot != nil {
		snapIndex, snapTerm = rec.Snapshot.Meta.Index, rec.Snapshot.Meta.Term
	}
	if snapIndex != m.snap.Index || snapTerm != m.snap.Term {
		return fmt.Errorf("snapshot %d/%d, want %d/%d", snapIndex, snapTerm, m.snap.Index, m.snap.Term)
	}
	if len(rec.Entries) != len(m.entries) {
		return fmt.Errorf("%d entries, want %d", len(rec.Entries), len(m.entries))
	}
	for i, w := range m.entries {
		if g := rec.Entries[i]; g.Index != w.Index || g.Term != w.Term || !bytes.Equal(g.Data, w.Data) {
			return fmt.Errorf("entry %d: (%d,%d) want (%d,%d)", i, g.Index, g.Term, w.Index, w.Term)
		}
	}
	return nil
}

// TestFacadeCrashConsistency runs random saves (with overwrites), local
// snapshots and installed snapshots, with a one-shot ENOSPC/EIO fault,
// crashes (dropping, tearing or keeping unsynced writes) and reopens, many
// seeds: every reopen must recover exactly the state after the last
// successful operation, or after the failed one.
func TestFacadeCrashConsistency(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := uint64(0); seed < uint64(seeds); seed++ {
		if !facadeCrashSeed(t, seed) {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

func facadeCrashSeed(t *testing.T, seed uint64) bool {
	rng := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	possible := []facadeModel{{}}
	for epoch := 0; epoch < 4; epoch++ {
		crash := vfs.NewCrashFSWithoutRealSync()
		faults := vfs.NewFaultFS(crash, nil)
		s, rec, err := Open(dir, Options{Identity: testID, FS: faults, SegmentBytes: 2048 + int64(rng.IntN(4096)), SnapshotKeep: 1 + rng.IntN(2)})
		if err != nil {
			t.Errorf("seed %d epoch %d: open: %v", seed, epoch, err)
			return false
		}
		if err := checkSnapshotPayload(rec); err != nil {
			t.Errorf("seed %d epoch %d: %v", seed, epoch, err)
			return false
		}
		var model facadeModel
		var mismatch error
		ok := false
		for _, m := range possible {
			if mismatch = m.matches(rec); mismatch == nil {
				model, ok = m, true
				break
			}
		}
		if rec.Snapshot != nil {
			rec.Snapshot.Close()
		}
		if !ok {
			t.Errorf("seed %d epoch %d: recovered state matches none of %d: %v", seed, epoch, len(possible), mismatch)
			s.Close()
			return false
		}
		possible = []facadeModel{model}
		if rng.IntN(2) == 0 {
			var mu sync.Mutex
			skip := rng.IntN(30)
			ops := []vfs.Op{vfs.OpWrite, vfs.OpSync, vfs.OpRename, vfs.OpSyncDir, vfs.OpCreate, vfs.OpRemove}
			target := ops[rng.IntN(len(ops))]
			errno := []error{vfs.ENOSPC, vfs.EIO}[rng.IntN(2)]
			faults.SetInjector(func(op vfs.Op, _ string, n int) vfs.Fault {
				mu.Lock()
				defer mu.Unlock()
				if op != target || skip < 0 {
					return vfs.Fault{}
				}
				if skip--; skip >= 0 {
					return vfs.Fault{}
				}
				return vfs.Fault{Err: errno, PartialBytes: n / 2}
			})
		}
		for op := 0; op < 25; op++ {
			next, err := facadeOp(s, model, rng)
			if err == nil {
				model = next
				possible = []facadeModel{model}
				continue
			}
			possible = []facadeModel{model, next}
			break
		}
		crash.Crash(vfs.CrashMode(rng.IntN(4)), rng)
		s.Close()
	}
	return true
}

func facadeOp(s *Storage, m facadeModel, rng *rand.Rand) (facadeModel, error) {
	next := facadeModel{snap: m.snap, entries: append([]raftmsg.Entry(nil), m.entries...)}
	last := m.last()
	switch r := rng.IntN(12); {
	case r == 0 && last > m.snap.Index:
		idx := m.snap.Index + 1 + uint64(rng.IntN(int(last-m.snap.Index)))
		term := next.entries[idx-m.snap.Index-1].Term
		next.snap = raftmsg.SnapshotMeta{Index: idx, Term: term}
		next.entries = next.entries[idx-m.snap.Index:]
		return next, s.SaveSnapshot(next.snap, nil, payloadWriter(snapPayload(idx)))
	case r == 1:
		meta := raftmsg.SnapshotMeta{Index: last + 1 + uint64(rng.IntN(5)), Term: 50 + uint64(rng.IntN(5))}
		var buf bytes.Buffer
		if _, err := snapfile.Write(&buf, meta, nil, CompressionSnappy, payloadWriter(snapPayload(meta.Index))); err != nil {
			panic(err)
		}
		next.snap, next.entries = meta, nil
		_, err := s.InstallSnapshot(&buf)
		return next, err
	default:
		lo := max(m.snap.Index+1, last-min(last, 2))
		first := lo + uint64(rng.IntN(int(last+2-lo)))
		term := uint64(1 + rng.IntN(3))
		if n := len(next.entries); n > 0 {
			term = max(term, next.entries[n-1].Term)
		}
		ents := make([]raftmsg.Entry, 1+rng.IntN(6))
		for i := range ents {
			idx := first + uint64(i)
			ents[i] = raftmsg.Entry{Index: idx, Term: term, Data: bytes.Repeat([]byte{byte(idx), byte(term)}, rng.IntN(200))}
		}
		next.entries = append(next.entries[:first-m.snap.Index-1], ents...)
		err := s.Save(raftmsg.HardState{Term: term, Commit: first - 1}, ents)
		if err != nil && !errors.Is(err, ErrNoSpace) && !errors.Is(err, ErrIO) && !errors.Is(err, ErrFailed) {
			panic(fmt.Sprintf("untyped save error: %v", err))
		}
		return next, err
	}
}
