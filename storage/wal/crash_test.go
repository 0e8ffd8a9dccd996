package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/vfs"
)

// recorder is a file system wrapper that remembers, per file, how far data
// was written and how far it was synced, so a test can aim damage at synced
// or unsynced records.
type recorder struct {
	vfs.FS
	mu    sync.Mutex
	files map[string]*extent
}

type extent struct {
	written, synced int64
	lastOff         int64
	lastData        []byte // the last write, to tell whether it reached the disk whole
}

func newRecorder(fs vfs.FS) *recorder { return &recorder{FS: fs, files: make(map[string]*extent)} }

func (r *recorder) extent(name string) *extent {
	e := r.files[name]
	if e == nil {
		e = &extent{}
		r.files[name] = e
	}
	return e
}

func (r *recorder) Create(name string) (vfs.File, error) {
	f, err := r.FS.Create(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	e := &extent{}
	r.files[name] = e
	r.mu.Unlock()
	return &recFile{File: f, r: r, e: e}, nil
}

func (r *recorder) Open(name string) (vfs.File, error) {
	f, err := r.FS.Open(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	e := r.extent(name)
	r.mu.Unlock()
	return &recFile{File: f, r: r, e: e}, nil
}

func (r *recorder) Rename(oldname, newname string) error {
	if err := r.FS.Rename(oldname, newname); err != nil {
		return err
	}
	r.mu.Lock()
	if e, ok := r.files[oldname]; ok {
		r.files[newname] = e
		delete(r.files, oldname)
	}
	r.mu.Unlock()
	return nil
}

type recFile struct {
	vfs.File
	r *recorder
	e *extent // follows the file across renames
}

func (f *recFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.r.mu.Lock()
	e := f.e
	e.written = max(e.written, off+int64(n))
	e.lastOff, e.lastData = off, append([]byte(nil), p[:n]...)
	f.r.mu.Unlock()
	return n, err
}

func (f *recFile) Truncate(size int64) error {
	err := f.File.Truncate(size)
	if err == nil {
		f.r.mu.Lock()
		e := f.e
		e.written = min(e.written, size)
		f.r.mu.Unlock()
	}
	return err
}

func (f *recFile) Sync() error {
	err := f.File.Sync()
	if err == nil {
		f.r.mu.Lock()
		e := f.e
		e.synced = e.written
		e.lastData = nil
		f.r.mu.Unlock()
	}
	return err
}

// modelLog is what the log must hold after a sequence of acknowledged
// operations.
type modelLog struct {
	hs      raftmsg.HardState
	snap    SnapshotRef
	entries []raftmsg.Entry
}

func (m modelLog) clone() modelLog {
	m.entries = append([]raftmsg.Entry(nil), m.entries...)
	return m
}

func (m modelLog) lastIndex() uint64 {
	if n := len(m.entries); n > 0 {
		return m.entries[n-1].Index
	}
	return m.snap.Index
}

func (m modelLog) equal(rec *Recovered) error {
	if rec.HardState != m.hs {
		return fmt.Errorf("hard state %+v, want %+v", rec.HardState, m.hs)
	}
	if rec.Snapshot.Index != m.snap.Index || rec.Snapshot.Term != m.snap.Term {
		return fmt.Errorf("snapshot %+v, want %+v", rec.Snapshot, m.snap)
	}
	if len(rec.Entries) != len(m.entries) {
		return fmt.Errorf("%d entries, want %d", len(rec.Entries), len(m.entries))
	}
	for i, w := range m.entries {
		g := rec.Entries[i]
		if g.Index != w.Index || g.Term != w.Term || g.RequestID != w.RequestID || !bytes.Equal(g.Data, w.Data) {
			return fmt.Errorf("entry %d: got (%d,%d), want (%d,%d)", i, g.Index, g.Term, w.Index, w.Term)
		}
	}
	return nil
}

// oneShotFault fails the first operation of a chosen kind after a chosen
// number of such operations, once.
func oneShotFault(rng *rand.Rand) vfs.Injector {
	ops := []vfs.Op{vfs.OpWrite, vfs.OpWrite, vfs.OpSync, vfs.OpSync, vfs.OpCreate, vfs.OpPreallocate, vfs.OpSyncDir, vfs.OpTruncate}
	target := ops[rng.IntN(len(ops))]
	errno := vfs.ENOSPC
	if rng.IntN(2) == 0 {
		errno = vfs.EIO
	}
	skip := rng.IntN(8)
	partialSeed := rng.Uint64()
	var mu sync.Mutex
	fired := false
	return func(op vfs.Op, name string, sizeBytes int) vfs.Fault {
		mu.Lock()
		defer mu.Unlock()
		if fired || op != target {
			return vfs.Fault{}
		}
		if skip > 0 {
			skip--
			return vfs.Fault{}
		}
		fired = true
		partial := 0
		if sizeBytes > 0 {
			partial = int(partialSeed % uint64(sizeBytes+1))
		}
		return vfs.Fault{Err: errno, PartialBytes: partial}
	}
}

// crashSeeds is how many seeds TestCrashConsistency runs at least
// (-short and -race run fewer) and at most: past the minimum it goes on
// only until every required outcome has happened, since which seeds reach
// the rarer outcomes depends on group-commit timing.
func crashSeeds() (least, most int) {
	if testing.Short() || raceEnabled {
		return 40, 250
	}
	return 250, 250
}

// requiredCrashOutcomes must each happen in some seed, or the test has lost
// its teeth.
var requiredCrashOutcomes = []string{"recovered", "refused-synced-flip", "torn-bytes", "flip-unsynced", "crash-with-inflight", "fault-nospace-or-io", "fault-failed"}

func coveredAll(stats map[string]int) bool {
	for _, must := range requiredCrashOutcomes {
		if stats[must] == 0 {
			return false
		}
	}
	return true
}

// TestCrashConsistency drives the log through random saves, overwrites,
// snapshot references, compactions and injected ENOSPC/EIO faults, then
// crashes it (losing unsynced writes, or letting a torn prefix or all of
// them reach the disk), sometimes flips a bit in a synced or unsynced
// record, and reopens. Recovery must return exactly the state after the
// last acknowledged operation (or after an operation whose sync failed,
// whose data may have reached the disk), or refuse with ErrCorrupt when
// synced data was damaged.
func TestCrashConsistency(t *testing.T) {
	stats := map[string]int{}
	least, most := crashSeeds()
	seeds := 0
	for ; seeds < most && (seeds < least || !coveredAll(stats)); seeds++ {
		runCrashSeed(t, uint64(seeds), stats)
		if t.Failed() {
			t.Fatalf("seed %d failed", seeds)
		}
	}
	t.Logf("%d seeds, outcomes: %v", seeds, stats)
	for _, must := range requiredCrashOutcomes {
		if stats[must] == 0 {
			t.Errorf("no seed exercised %q: the test lost its teeth", must)
		}
	}
}

func runCrashSeed(t *testing.T, seed uint64, stats map[string]int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	dir := t.TempDir()
	crash := vfs.NewCrashFSWithoutRealSync()
	rec := newRecorder(crash)
	faults := vfs.NewFaultFS(rec, nil)
	possible := []modelLog{{}}
	for epoch := 0; epoch < 5; epoch++ {
		rec.files = make(map[string]*extent)
		l, got, err := Open(Options{FS: faults, Dir: dir, SegmentBytes: 1024 + int64(rng.IntN(3000))})
		if err != nil {
			t.Errorf("seed %d epoch %d: open: %v", seed, epoch, err)
			return
		}
		if got.TornBytes > 0 {
			stats["torn-bytes"]++
		}
		var model modelLog
		var matchErr error
		matched := false
		for _, m := range possible {
			if matchErr = m.equal(got); matchErr == nil {
				model, matched = m, true
				break
			}
		}
		if !matched {
			t.Errorf("seed %d epoch %d: recovered state matches none of the %d possible: %v", seed, epoch, len(possible), matchErr)
			l.Close()
			return
		}
		stats["recovered"]++
		possible = []modelLog{model}
		if rng.IntN(3) == 0 {
			faults.SetInjector(oneShotFault(rng))
		}
		nOps := rng.IntN(40)
		for op := 0; op < nOps; op++ {
			next, err := randomOp(l, model, rng)
			if err == nil {
				model = next
				possible = []modelLog{model}
				continue
			}
			if errors.Is(err, diskerr.ErrFailed) {
				stats["fault-failed"]++
				// The batch may or may not have reached the disk.
				possible = append(possible, next)
				break
			}
			if !errors.Is(err, diskerr.ErrNoSpace) && !errors.Is(err, diskerr.ErrIO) {
				t.Errorf("seed %d: unexpected error %v", seed, err)
				return
			}
			stats["fault-nospace-or-io"]++
		}
		faults.SetInjector(nil)
		// Sometimes crash with pipelined submissions in flight: any prefix of
		// them may survive, but never less than the last one acknowledged.
		var inflight []modelLog
		var ackMu sync.Mutex
		lastAcked := -1
		var release chan struct{}
		reached := make(chan struct{})
		if rng.IntN(2) == 0 && len(possible) == 1 {
			if rng.IntN(2) == 0 {
				// Hold the first sync so the crash finds a batch written
				// but not synced.
				release = make(chan struct{})
				var once sync.Once
				faults.SetInjector(func(op vfs.Op, name string, _ int) vfs.Fault {
					if op != vfs.OpSync {
						return vfs.Fault{}
					}
					first := false
					once.Do(func() { first = true })
					if first {
						close(reached)
						<-release
					}
					return vfs.Fault{Err: vfs.EIO}
				})
			}
			for k := 0; k < 1+rng.IntN(4); k++ {
				next, ents, hs := randomSave(model, rng)
				k := k
				err := l.Submit(hs, ents, func(err error) {
					if err == nil {
						ackMu.Lock()
						lastAcked = max(lastAcked, k)
						ackMu.Unlock()
					}
				})
				if err != nil {
					break
				}
				inflight = append(inflight, next)
				model = next
			}
		}
		if release != nil && len(inflight) > 0 {
			select {
			case <-reached:
			case <-time.After(10 * time.Second):
				t.Fatalf("seed %d: the log never synced", seed)
			}
		}
		mode := vfs.CrashMode(rng.IntN(4))
		if _, err := crash.Crash(mode, rng); err != nil {
			t.Fatalf("crash: %v", err)
		}
		if release != nil {
			close(release)
		}
		l.Close() // its handles are stale; this only stops the goroutine
		if len(inflight) > 0 {
			stats["crash-with-inflight"]++
			if lastAcked >= 0 {
				possible = nil
			}
			possible = append(possible, inflight[max(lastAcked, 0):]...)
		}
		hasUnsynced := false
		for _, e := range rec.files {
			hasUnsynced = hasUnsynced || e.written > e.synced
		}
		if rng.IntN(3) == 0 || (hasUnsynced && mode != vfs.CrashDropUnsynced && rng.IntN(3) != 0) {
			expect := flipBit(t, dir, rec, mode, rng)
			switch expect {
			case "synced":
				_, _, err := Open(Options{FS: vfs.NewCrashFSWithoutRealSync(), Dir: dir})
				if !errors.Is(err, diskerr.ErrCorrupt) {
					t.Errorf("seed %d epoch %d: bit flipped in synced data, open returned %v", seed, epoch, err)
					return
				}
				var ce *diskerr.CorruptError
				if !errors.As(err, &ce) || ce.File == "" {
					t.Errorf("corrupt error does not name a file: %v", err)
				}
				stats["refused-synced-flip"]++
				return
			case "unsynced-complete":
				// Indistinguishable from a synced batch: refusing is allowed.
				_, got, err := Open(Options{FS: vfs.NewCrashFSWithoutRealSync(), Dir: dir})
				if errors.Is(err, diskerr.ErrCorrupt) {
					stats["refused-unsynced-complete"]++
					return
				}
				if err != nil {
					t.Errorf("seed %d: %v", seed, err)
					return
				}
				_ = got // the reopen below checks the content
				stats["unsynced-complete-recovered"]++
			case "unsynced":
				stats["flip-unsynced"]++
			}
		}
		crash = vfs.NewCrashFSWithoutRealSync()
		rec = newRecorder(crash)
		faults = vfs.NewFaultFS(rec, nil)
	}
}

// randomOp performs one random operation and returns the model after it.
func randomOp(l *Log, m modelLog, rng *rand.Rand) (modelLog, error) {
	next := m.clone()
	last := m.lastIndex()
	switch r := rng.IntN(20); {
	case r == 0 && last > m.snap.Index: // local snapshot
		idx := m.snap.Index + 1 + uint64(rng.IntN(int(last-m.snap.Index)))
		ref := SnapshotRef{Index: idx, Term: next.entries[idx-m.snap.Index-1].Term}
		next.snap = ref
		next.entries = next.entries[idx-m.snap.Index:]
		if err := l.SaveSnapshotRef(ref); err != nil {
			return next, err
		}
		if _, err := l.Compact(); err != nil && !errors.Is(err, diskerr.ErrNoSpace) {
			// A failed removal is reported but loses nothing.
			return next, nil
		}
		return next, nil
	case r == 1: // snapshot installed from a leader
		ref := SnapshotRef{Index: last + uint64(rng.IntN(5)), Term: m.hs.Term + 1, Reset: true}
		next.snap = SnapshotRef{Index: ref.Index, Term: ref.Term}
		next.entries = nil
		return next, l.SaveSnapshotRef(ref)
	default:
		next, ents, hs := randomSave(m, rng)
		return next, l.Save(hs, ents)
	}
}

// randomSave makes a random Save: new entries, often overwriting a short
// suffix, and a hard state.
func randomSave(m modelLog, rng *rand.Rand) (modelLog, []raftmsg.Entry, raftmsg.HardState) {
	next := m.clone()
	last := m.lastIndex()
	{
		lo := max(m.snap.Index+1, last-min(last, 3))
		first := lo + uint64(rng.IntN(int(last+2-lo)))
		n := 1 + rng.IntN(5)
		if rng.IntN(10) == 0 {
			next.hs.Term++
		}
		hs := raftmsg.HardState{Term: next.hs.Term, Vote: raftmsg.NodeID(rng.IntN(3)), Commit: first - 1}
		ents := make([]raftmsg.Entry, n)
		for i := range ents {
			data := make([]byte, rng.IntN(300))
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			ents[i] = raftmsg.Entry{Index: first + uint64(i), Term: max(next.hs.Term, 1), RequestID: rng.Uint64(), Data: data}
		}
		next.entries = append(next.entries[:first-m.snap.Index-1], ents...)
		if !hs.IsEmpty() {
			next.hs = hs
		}
		return next, ents, hs
	}
}

// flipBit flips one bit of a record in a segment file written this epoch
// and says what kind of data it hit: "synced", "unsynced-complete" (the
// unsynced last batch reached the disk whole) or "unsynced".
func flipBit(t *testing.T, dir string, rec *recorder, mode vfs.CrashMode, rng *rand.Rand) string {
	t.Helper()
	var names []string
	for name := range rec.files {
		if filepath.Ext(name) == segmentSuffix {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slicesSort(names)
	name := names[rng.IntN(len(names))]
	if mode != vfs.CrashDropUnsynced && rng.IntN(3) != 0 {
		for _, n := range names {
			if e := rec.files[n]; e.written > e.synced {
				name = n
			}
		}
	}
	e := rec.files[name]
	buf, err := vfs.ReadFile(vfs.OS{}, name, 1<<30)
	if err != nil {
		return "" // removed by compaction
	}
	unsynced := mode != vfs.CrashDropUnsynced && e.written > e.synced && rng.IntN(3) != 0
	var off int64
	kind := "synced"
	if unsynced {
		off = e.synced + rng.Int64N(e.written-e.synced)
		kind = "unsynced"
		// When the last write's batch end reached the disk (all of the write
		// in prefix modes, perhaps not all with scattered sectors), damage
		// before it looks like damage to a synced batch: refusal is allowed.
		end := e.lastOff + int64(len(e.lastData))
		if len(e.lastData) >= batchEndRecordBytes && end <= int64(len(buf)) &&
			bytes.Equal(buf[end-batchEndRecordBytes:end], e.lastData[len(e.lastData)-batchEndRecordBytes:]) {
			kind = "unsynced-complete"
		}
	} else {
		if e.synced == 0 {
			return ""
		}
		off = rng.Int64N(e.synced)
	}
	if off >= int64(len(buf)) {
		if kind == "synced" {
			t.Fatalf("synced offset %d beyond %s's %d bytes", off, name, len(buf))
		}
		return ""
	}
	buf[off] ^= 1 << rng.IntN(8)
	f, err := vfs.OS{}.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf[off:off+1], off); err != nil {
		t.Fatal(err)
	}
	return kind
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
