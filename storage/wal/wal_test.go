package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/diskerr"
	"github.com/edgekv/edgekv/storage/vfs"
)

func ent(index, term uint64, data string) raftmsg.Entry {
	return raftmsg.Entry{Index: index, Term: term, Type: raftmsg.EntryNormal, RequestID: index * 7, Data: []byte(data)}
}

func mustOpen(t *testing.T, fs vfs.FS, dir string, segBytes int64) (*Log, *Recovered) {
	t.Helper()
	l, rec, err := Open(Options{FS: fs, Dir: dir, SegmentBytes: segBytes})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l, rec
}

func checkEntries(t *testing.T, got []raftmsg.Entry, want ...raftmsg.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || g.RequestID != w.RequestID || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestSaveReopenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l, rec := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	if len(rec.Entries) != 0 || !rec.HardState.IsEmpty() {
		t.Fatalf("fresh log not empty: %+v", rec)
	}
	hs := raftmsg.HardState{Term: 3, Vote: 2, Commit: 2}
	e1 := raftmsg.Entry{Index: 1, Term: 1, Type: raftmsg.EntryConfChange, RequestID: 99, Data: []byte("cc")}
	if err := l.Save(hs, []raftmsg.Entry{e1, ent(2, 3, "b")}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec = mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	defer l.Close()
	if rec.HardState != hs {
		t.Fatalf("hard state %+v, want %+v", rec.HardState, hs)
	}
	checkEntries(t, rec.Entries, e1, ent(2, 3, "b"))
}

func TestOverwriteSuffix(t *testing.T) {
	dir := t.TempDir()
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	for _, batch := range [][]raftmsg.Entry{
		{ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c"), ent(4, 1, "d")},
		{ent(3, 2, "C"), ent(4, 2, "D")}, // replaces 3 and 4
		{ent(4, 3, "x")},                 // replaces 4 again
		{ent(5, 3, "y")},
		{ent(2, 4, "z")}, // replaces 2..5
	} {
		if err := l.Save(raftmsg.HardState{}, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Save(raftmsg.HardState{}, []raftmsg.Entry{ent(4, 4, "gap")}); err == nil {
		t.Fatal("a gap was accepted")
	}
	l.Close()
	l, rec := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	defer l.Close()
	checkEntries(t, rec.Entries, ent(1, 1, "a"), ent(2, 4, "z"))
}

func TestRotationAndSnapshotCompaction(t *testing.T) {
	dir := t.TempDir()
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 1024)
	data := string(bytes.Repeat([]byte("v"), 200))
	for i := uint64(1); i <= 40; i++ {
		if err := l.Save(raftmsg.HardState{Term: 1, Commit: i}, []raftmsg.Entry{ent(i, 1, data)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.Segments()); n < 5 {
		t.Fatalf("only %d segments after 8 KiB into 1 KiB segments", n)
	}
	if err := l.SaveSnapshotRef(SnapshotRef{Index: 30, Term: 1}); err != nil {
		t.Fatal(err)
	}
	before := len(l.Segments())
	removed, err := l.Compact()
	if err != nil {
		t.Fatal(err)
	}
	if removed == 0 || len(l.Segments()) != before-removed {
		t.Fatalf("removed %d of %d segments", removed, before)
	}
	l.Close()
	l, rec := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 1024)
	defer l.Close()
	if rec.Snapshot.Index != 30 || rec.HardState.Commit != 40 {
		t.Fatalf("recovered snapshot %+v hard state %+v", rec.Snapshot, rec.HardState)
	}
	if len(rec.Entries) != 10 || rec.Entries[0].Index != 31 {
		t.Fatalf("recovered %d entries from %v", len(rec.Entries), rec.Entries[:1])
	}
}

func TestSnapshotResetDropsLog(t *testing.T) {
	dir := t.TempDir()
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	if err := l.Save(raftmsg.HardState{Term: 1}, []raftmsg.Entry{ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c")}); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveSnapshotRef(SnapshotRef{Index: 10, Term: 5, Reset: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.Save(raftmsg.HardState{}, []raftmsg.Entry{ent(5, 1, "below")}); err == nil {
		t.Fatal("entry below an installed snapshot accepted")
	}
	if err := l.Save(raftmsg.HardState{Term: 5}, []raftmsg.Entry{ent(11, 5, "k")}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, rec := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	defer l.Close()
	if rec.Snapshot.Index != 10 || rec.Snapshot.Term != 5 {
		t.Fatalf("snapshot %+v", rec.Snapshot)
	}
	checkEntries(t, rec.Entries, ent(11, 5, "k"))
}

func TestGroupCommitConcurrentSavers(t *testing.T) {
	dir := t.TempDir()
	counter := &syncCounter{FS: vfs.OS{}}
	l, _ := mustOpen(t, counter, dir, 64<<10)
	const writers, perWriter = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex // serialises index assignment with submission order
	next := uint64(1)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				done := make(chan error, 1)
				mu.Lock()
				e := ent(next, 1, fmt.Sprint(next))
				next++
				err := l.Submit(raftmsg.HardState{}, []raftmsg.Entry{e}, func(err error) { done <- err })
				mu.Unlock()
				if err == nil {
					err = <-done
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncs := counter.count()
	l.Close()
	if syncs >= writers*perWriter {
		t.Fatalf("%d syncs for %d saves: no group commit", syncs, writers*perWriter)
	}
	t.Logf("%d saves shared %d syncs", writers*perWriter, syncs)
	l, rec := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	defer l.Close()
	if len(rec.Entries) != writers*perWriter {
		t.Fatalf("recovered %d entries", len(rec.Entries))
	}
	for i, e := range rec.Entries {
		if e.Index != uint64(i+1) || string(e.Data) != fmt.Sprint(i+1) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
}

// syncCounter counts file syncs.
type syncCounter struct {
	vfs.FS
	mu    sync.Mutex
	syncs int
}

func (c *syncCounter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.syncs }

func (c *syncCounter) Create(name string) (vfs.File, error) {
	f, err := c.FS.Create(name)
	return &countedFile{File: f, c: c}, err
}

type countedFile struct {
	vfs.File
	c *syncCounter
}

func (f *countedFile) Sync() error {
	f.c.mu.Lock()
	f.c.syncs++
	f.c.mu.Unlock()
	return f.File.Sync()
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	l.Close()
	path := filepath.Join(dir, segmentName(1))
	buf, err := vfs.ReadFile(vfs.OS{}, path, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	hdr := appendRecord(nil, recSegmentHeader, segmentHeaderBytes, func(p []byte) {
		copy(p, segmentMagic[:])
		p[8] = FormatVersion + 1
		p[10] = 1
	})
	copy(buf, hdr)
	f, _ := vfs.OS{}.Create(path)
	f.WriteAt(buf, 0)
	f.Close()
	_, _, err = Open(Options{FS: vfs.OS{}, Dir: dir})
	if !errors.Is(err, diskerr.ErrMetaMismatch) {
		t.Fatalf("newer format: %v", err)
	}
}

func TestTornTailTruncatedAndLogged(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.NewCrashFSWithoutRealSync()
	l, _ := mustOpen(t, fs, dir, 64<<10)
	if err := l.Save(raftmsg.HardState{Term: 1}, []raftmsg.Entry{ent(1, 1, "a"), ent(2, 1, "b")}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// An unsynced batch torn mid-record: a valid entry record, then half of
	// another, no batch end.
	seg := filepath.Join(dir, segmentName(l.segSeq))
	f, err := vfs.OS{}.Open(seg)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	e3, e4 := ent(3, 1, "c"), ent(4, 1, "dddddddd")
	torn := appendEntry(nil, &e3)
	torn = appendEntry(torn, &e4)
	torn = torn[:len(torn)-5]
	end := l.segOff // the writer's offset after the last batch
	f.WriteAt(torn, end)
	f.Close()
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	l2, rec, err := Open(Options{FS: vfs.NewCrashFSWithoutRealSync(), Dir: dir, Logger: logger, SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	checkEntries(t, rec.Entries, ent(1, 1, "a"), ent(2, 1, "b"))
	if rec.TornBytes != int64(len(torn)) {
		t.Fatalf("torn bytes %d, want %d (file was %d)", rec.TornBytes, len(torn), size)
	}
	if want := fmt.Sprintf("bytes=%d", len(torn)); !strings.Contains(logBuf.String(), "torn tail") || !strings.Contains(logBuf.String(), want) {
		t.Fatalf("log does not report the torn tail with %s: %s", want, logBuf.String())
	}
	// The tail is gone for good: a second open finds nothing to drop.
	l2.Close()
	l3, rec, err := Open(Options{FS: vfs.NewCrashFSWithoutRealSync(), Dir: dir})
	if err != nil || rec.TornBytes != 0 {
		t.Fatalf("second open: torn %d, %v", rec.TornBytes, err)
	}
	l3.Close()
}

func TestDamageInSyncedBatchNamesFileAndOffset(t *testing.T) {
	dir := t.TempDir()
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), dir, 64<<10)
	l.Save(raftmsg.HardState{Term: 1}, []raftmsg.Entry{ent(1, 1, "a")})
	l.Save(raftmsg.HardState{Term: 1}, []raftmsg.Entry{ent(2, 1, "b")})
	seq := l.segSeq
	l.Close()
	seg := filepath.Join(dir, segmentName(seq))
	f, _ := vfs.OS{}.Open(seg)
	// Damage the first data batch's entry (just after the header batch).
	off := int64(headerBatchBytes + headerBytes + 3)
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0x10
	f.WriteAt(b, off)
	f.Close()
	_, _, err := Open(Options{FS: vfs.NewCrashFSWithoutRealSync(), Dir: dir})
	var ce *diskerr.CorruptError
	if !errors.As(err, &ce) || ce.File != seg || ce.Offset != headerBatchBytes {
		t.Fatalf("got %v, want corruption in %s at %d", err, seg, headerBatchBytes)
	}
}

// TestSubmitCompletesInOrder pipelines many submissions without waiting:
// callbacks must arrive in submission order, each after its batch is
// durable.
func TestSubmitCompletesInOrder(t *testing.T) {
	l, _ := mustOpen(t, vfs.NewCrashFSWithoutRealSync(), t.TempDir(), 64<<10)
	defer l.Close()
	const n = 500
	got := make(chan int, n)
	for i := 0; i < n; i++ {
		i := i
		if err := l.Submit(raftmsg.HardState{Term: 1, Commit: uint64(i)}, []raftmsg.Entry{ent(uint64(i+1), 1, "x")}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			got <- i
		}); err != nil {
			t.Fatal(err)
		}
	}
	for want := 0; want < n; want++ {
		select {
		case i := <-got:
			if i != want {
				t.Fatalf("completion %d arrived in place of %d", i, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("completion %d never arrived", want)
		}
	}
}

// TestOutOfOrderTornLastBatch: a last batch whose batch end reached the
// disk but one of its earlier sectors did not (still zero) is torn, not
// damage; the same batch with a flipped bit instead is refused.
func TestOutOfOrderTornLastBatch(t *testing.T) {
	build := func() []byte {
		seg := appendSegmentHeader(nil, 1)
		seg = appendHardState(seg, raftmsg.HardState{})
		seg = appendSnapshotRef(seg, SnapshotRef{})
		seg = appendBatchEnd(seg, int64(len(seg)))
		e1 := ent(1, 1, "first")
		seg = appendEntry(seg, &e1)
		seg = appendBatchEnd(seg, int64(len(seg)))
		for i := uint64(2); i <= 4; i++ {
			e := ent(i, 1, string(bytes.Repeat([]byte{'x'}, 700)))
			seg = appendEntry(seg, &e)
		}
		seg = appendBatchEnd(seg, int64(len(seg)))
		return append(seg, make([]byte, 1024)...)
	}
	torn := build()
	clear(torn[1024:1536]) // a sector of the last batch never written
	st := &replayState{}
	res, err := st.scanSegment(torn, "seg", 1, true)
	if err != nil {
		t.Fatalf("out-of-order torn batch refused: %v", err)
	}
	if len(st.entries) != 1 || res.tornBytes == 0 {
		t.Fatalf("kept %d entries, torn %d bytes", len(st.entries), res.tornBytes)
	}
	rotten := build()
	rotten[1300] ^= 0x08
	if _, err := (&replayState{}).scanSegment(rotten, "seg", 1, true); !errors.Is(err, diskerr.ErrCorrupt) {
		t.Fatalf("bit flip in the last synced batch: %v", err)
	}
	if _, err := (&replayState{}).scanSegment(torn, "seg", 1, false); !errors.Is(err, diskerr.ErrCorrupt) {
		t.Fatalf("torn batch in a segment that is not the last: %v", err)
	}
}
