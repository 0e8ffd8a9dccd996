package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/snapfile"
	"github.com/edgekv/edgekv/storage/vfs"
)

var testID = Identity{ClusterID: 0xc1, NodeName: "n1"}

// open opens dir; a nil fs means a CrashFS without real syncs (fast on a
// loaded disk; these tests simulate crashes themselves where they need to).
func open(t *testing.T, dir string, fs vfs.FS) (*Storage, *Recovered) {
	t.Helper()
	if fs == nil {
		fs = vfs.NewCrashFSWithoutRealSync()
	}
	s, rec, err := Open(dir, Options{Identity: testID, FS: fs, SegmentBytes: 4096, SnapshotKeep: 2})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s, rec
}

func entries(from, to, term uint64) []raftmsg.Entry {
	var out []raftmsg.Entry
	for i := from; i <= to; i++ {
		out = append(out, raftmsg.Entry{Index: i, Term: term, Data: []byte(fmt.Sprintf("entry-%d-%d", i, term))})
	}
	return out
}

func payloadWriter(data []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(data); return err }
}

func readAll(t *testing.T, snap *Snapshot) []byte {
	t.Helper()
	b, err := io.ReadAll(snap.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetaFileChecks(t *testing.T) {
	dir := t.TempDir()
	s, rec := open(t, dir, nil)
	if !rec.Created || rec.Meta.MemberID == 0 || rec.Meta.NodeName != "n1" || rec.Meta.FormatVersion != MetaFormatVersion {
		t.Fatalf("new dir meta: %+v", rec)
	}
	id := rec.Meta.MemberID
	s.Close()
	s, rec = open(t, dir, nil)
	if rec.Created || rec.Meta.MemberID != id {
		t.Fatalf("reopen changed identity: %+v", rec.Meta)
	}
	s.Close()
	for name, ident := range map[string]Identity{
		"other name":    {ClusterID: 0xc1, NodeName: "n2"},
		"other cluster": {ClusterID: 0xc2, NodeName: "n1"},
		"other member":  {ClusterID: 0xc1, NodeName: "n1", MemberID: id + 1},
	} {
		_, _, err := Open(dir, Options{Identity: ident})
		if !errors.Is(err, ErrMetaMismatch) {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	metaPath := filepath.Join(dir, metaFileName)
	buf, _ := os.ReadFile(metaPath)
	os.WriteFile(metaPath, bytes.Replace(buf, []byte(`"format_version": 1`), []byte(`"format_version": 2`), 1), 0o644)
	if _, _, err := Open(dir, Options{Identity: testID, SegmentBytes: 4096}); !errors.Is(err, ErrMetaMismatch) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer format: %v", err)
	}
	os.Remove(metaPath)
	if _, _, err := Open(dir, Options{Identity: testID, SegmentBytes: 4096}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing meta with data: %v", err)
	}
}

func TestSnapshotSaveRecoverPruneCompact(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	var payloads [][]byte
	for round := uint64(0); round < 4; round++ {
		if err := s.Save(raftmsg.HardState{Term: 2, Commit: (round + 1) * 50}, entries(round*50+1, (round+1)*50, 2)); err != nil {
			t.Fatal(err)
		}
		p := bytes.Repeat([]byte(fmt.Sprintf("state-%d;", round)), 1000)
		payloads = append(payloads, p)
		meta := raftmsg.SnapshotMeta{Index: (round+1)*50 - 10, Term: 2, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1}}}
		if err := s.SaveSnapshot(meta, []byte("members"), payloadWriter(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 100, Term: 2}, nil, payloadWriter(nil)); err == nil {
		t.Fatal("older snapshot accepted")
	}
	names, _ := os.ReadDir(filepath.Join(dir, snapDirName))
	if len(names) != 2 {
		t.Fatalf("%d snapshot files kept, want 2", len(names))
	}
	segs := s.log.Segments()
	s.Close()
	s, rec := open(t, dir, nil)
	defer s.Close()
	if rec.Snapshot == nil || rec.Snapshot.Meta.Index != 190 || string(rec.Snapshot.Membership) != "members" {
		t.Fatalf("recovered snapshot %+v", rec.Snapshot)
	}
	defer rec.Snapshot.Close()
	if !bytes.Equal(readAll(t, rec.Snapshot), payloads[3]) {
		t.Fatal("snapshot payload differs")
	}
	if len(rec.Entries) != 10 || rec.Entries[0].Index != 191 || rec.HardState.Commit != 200 {
		t.Fatalf("recovered %d entries from %d, hs %+v", len(rec.Entries), rec.Entries[0].Index, rec.HardState)
	}
	if segs[0] == 1 {
		t.Fatalf("no segment was compacted: %v", segs)
	}
}

func TestInstallSnapshotFromLeader(t *testing.T) {
	leader, _ := open(t, t.TempDir(), nil)
	defer leader.Close()
	if err := leader.Save(raftmsg.HardState{Term: 3, Commit: 30}, entries(1, 30, 3)); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("kv"), 5000)
	if err := leader.SaveSnapshot(raftmsg.SnapshotMeta{Index: 30, Term: 3}, []byte("m"), payloadWriter(payload)); err != nil {
		t.Fatal(err)
	}
	rc, size, meta, err := leader.SnapshotFile()
	if err != nil || meta.Index != 30 {
		t.Fatal(meta, err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if int64(len(raw)) != size {
		t.Fatalf("read %d of %d bytes", len(raw), size)
	}

	dir := t.TempDir()
	f, _ := open(t, dir, nil)
	// A follower with a conflicting log of an old term.
	if err := f.Save(raftmsg.HardState{Term: 2}, entries(1, 40, 2)); err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(raw)
	damaged[len(damaged)/2] ^= 4
	if _, err := f.InstallSnapshot(bytes.NewReader(damaged)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged snapshot: %v", err)
	}
	if _, err := f.InstallSnapshot(bytes.NewReader(raw[:len(raw)-1])); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated snapshot: %v", err)
	}
	got, err := f.InstallSnapshot(bytes.NewReader(raw))
	if err != nil || got.Index != 30 || got.Term != 3 {
		t.Fatal(got, err)
	}
	if err := f.Save(raftmsg.HardState{Term: 3, Commit: 31}, entries(31, 31, 3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, rec := open(t, dir, nil)
	defer f.Close()
	defer rec.Snapshot.Close()
	if rec.Snapshot.Meta.Index != 30 || !bytes.Equal(readAll(t, rec.Snapshot), payload) {
		t.Fatalf("snapshot %+v", rec.Snapshot.Meta)
	}
	if len(rec.Entries) != 1 || rec.Entries[0].Index != 31 || rec.Entries[0].Term != 3 {
		t.Fatalf("entries after install: %+v", rec.Entries)
	}
}

func TestDamagedSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	s.Save(raftmsg.HardState{Term: 1}, entries(1, 5, 1))
	if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 5, Term: 1}, nil, payloadWriter([]byte("payload"))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, snapDirName, fmt.Sprintf("%016x-%016x.snap", 5, 1))
	b, _ := os.ReadFile(path)
	b[40] ^= 1
	os.WriteFile(path, b, 0o644)
	_, _, err := Open(dir, Options{Identity: testID, SegmentBytes: 4096})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != path {
		t.Fatalf("damaged snapshot: %v", err)
	}
	os.Remove(path)
	if _, _, err := Open(dir, Options{Identity: testID, SegmentBytes: 4096}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing snapshot: %v", err)
	}
}

func TestNoSpaceThenResume(t *testing.T) {
	dir := t.TempDir()
	faults := vfs.NewFaultFS(vfs.OS{}, nil)
	s, _ := open(t, dir, faults)
	if err := s.Save(raftmsg.HardState{Term: 1}, entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	faults.SetInjector(func(op vfs.Op, _ string, n int) vfs.Fault {
		if op == vfs.OpWrite {
			return vfs.Fault{Err: vfs.ENOSPC, PartialBytes: n / 2}
		}
		return vfs.Fault{}
	})
	if err := s.Save(raftmsg.HardState{}, entries(4, 6, 1)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("full disk: %v", err)
	}
	if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 3, Term: 1}, nil, payloadWriter(make([]byte, 100))); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("snapshot on a full disk: %v", err)
	}
	faults.SetInjector(nil) // space returns
	if err := s.Save(raftmsg.HardState{}, entries(4, 6, 1)); err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	s.Close()
	s, rec := open(t, dir, nil)
	defer s.Close()
	if len(rec.Entries) != 6 {
		t.Fatalf("recovered %d entries", len(rec.Entries))
	}
}

func TestSyncFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	faults := vfs.NewFaultFS(vfs.OS{}, nil)
	s, _ := open(t, dir, faults)
	s.Save(raftmsg.HardState{Term: 1}, entries(1, 3, 1))
	faults.SetInjector(func(op vfs.Op, _ string, _ int) vfs.Fault {
		if op == vfs.OpSync {
			return vfs.Fault{Err: vfs.EIO}
		}
		return vfs.Fault{}
	})
	if err := s.Save(raftmsg.HardState{}, entries(4, 4, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("failed sync: %v", err)
	}
	faults.SetInjector(nil)
	if err := s.Save(raftmsg.HardState{}, entries(4, 4, 1)); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after a failed sync: %v", err)
	}
	s.Close()
	s, rec := open(t, dir, nil)
	defer s.Close()
	if n := len(rec.Entries); n != 3 && n != 4 {
		t.Fatalf("recovered %d entries", n)
	}
}

// TestSnapshotCrashAtEveryStep fails the k-th file-system operation of
// SaveSnapshot / InstallSnapshot (for every k), then simulates a power cut
// with a random outcome for unsynced data. The data dir must reopen with
// every acknowledged entry either in the log or covered by the snapshot it
// recovers, and that snapshot's payload intact.
func TestSnapshotCrashAtEveryStep(t *testing.T) {
	for _, install := range []bool{false, true} {
		for k := 0; k < 40; k++ {
			for _, mode := range []vfs.CrashMode{vfs.CrashDropUnsynced, vfs.CrashTearUnsynced, vfs.CrashScatterUnsynced, vfs.CrashKeepUnsynced} {
				if done := snapshotCrashCase(t, install, k, mode); done && mode == vfs.CrashKeepUnsynced {
					goto next
				}
			}
		}
	next:
	}
}

// snapshotCrashCase returns true when the k-th operation was past the end
// of the snapshot steps (the snapshot completed).
func snapshotCrashCase(t *testing.T, install bool, k int, mode vfs.CrashMode) bool {
	dir := t.TempDir()
	crash := vfs.NewCrashFSWithoutRealSync()
	faults := vfs.NewFaultFS(crash, nil)
	s, _ := open(t, dir, faults)
	payloadA := bytes.Repeat([]byte("A"), 3000)
	if err := s.Save(raftmsg.HardState{Term: 1, Commit: 20}, entries(1, 20, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 10, Term: 1}, nil, payloadWriter(payloadA)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(raftmsg.HardState{Term: 1, Commit: 40}, entries(21, 40, 1)); err != nil {
		t.Fatal(err)
	}
	payloadB := bytes.Repeat([]byte("B"), 3000)
	var incoming []byte
	if install {
		var buf bytes.Buffer
		if _, err := snapfile.Write(&buf, raftmsg.SnapshotMeta{Index: 60, Term: 5}, nil, CompressionZstd, payloadWriter(payloadB)); err != nil {
			t.Fatal(err)
		}
		incoming = buf.Bytes()
	}
	var mu sync.Mutex
	count := 0
	faults.SetInjector(func(op vfs.Op, name string, _ int) vfs.Fault {
		mu.Lock()
		defer mu.Unlock()
		count++
		if count-1 == k {
			return vfs.Fault{Err: vfs.EIO}
		}
		return vfs.Fault{}
	})
	var err error
	if install {
		_, err = s.InstallSnapshot(bytes.NewReader(incoming))
	} else {
		err = s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 35, Term: 1}, nil, payloadWriter(payloadB))
	}
	completed := err == nil
	crash.Crash(mode, rand.New(rand.NewPCG(uint64(k), 1)))
	s.Close()
	s2, rec, err := Open(dir, Options{Identity: testID, FS: vfs.NewCrashFSWithoutRealSync()})
	if err != nil {
		t.Fatalf("install=%v k=%d mode=%d: reopen: %v", install, k, mode, err)
	}
	defer s2.Close()
	if rec.Snapshot == nil {
		t.Fatalf("install=%v k=%d: no snapshot recovered", install, k)
	}
	defer rec.Snapshot.Close()
	payload := readAll(t, rec.Snapshot)
	idx := rec.Snapshot.Meta.Index
	switch {
	case idx == 10 && bytes.Equal(payload, payloadA):
		if completed {
			t.Fatalf("install=%v k=%d: completed snapshot lost", install, k)
		}
	case (idx == 35 || idx == 60) && bytes.Equal(payload, payloadB):
	default:
		t.Fatalf("install=%v k=%d: recovered snapshot %d with a wrong payload", install, k, idx)
	}
	want := uint64(40)
	if idx == 60 {
		want = 60
	}
	last := idx
	if n := len(rec.Entries); n > 0 {
		last = rec.Entries[n-1].Index
	}
	if last != want {
		t.Fatalf("install=%v k=%d: log ends at %d, want %d", install, k, last, want)
	}
	return completed
}

func TestLostLogRefused(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, nil)
	s.Save(raftmsg.HardState{Term: 1}, entries(1, 5, 1))
	if err := s.SaveSnapshot(raftmsg.SnapshotMeta{Index: 5, Term: 1}, nil, payloadWriter([]byte("p"))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	os.RemoveAll(filepath.Join(dir, walDirName))
	if _, _, err := Open(dir, Options{Identity: testID, SegmentBytes: 4096}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("lost log: %v", err)
	}
}
