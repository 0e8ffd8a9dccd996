package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/storage"
)

// putEntry is one kv put as a committed log entry.
func putEntry(t testing.TB, index, term uint64, key, value string) raftmsg.Entry {
	t.Helper()
	cmd := kv.NewPut([]byte(key), []byte(value), kv.CondNone, 0)
	data, err := kv.AppendCommand(nil, &cmd, kv.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raftmsg.Entry{Index: index, Term: term, Type: raftmsg.EntryNormal, Data: data}
}

// machineWith applies n puts k000..k(n-1) = v0.. and returns the machine.
func machineWith(t testing.TB, n int) *kv.Machine {
	t.Helper()
	m, err := kv.NewMachine(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ents := []raftmsg.Entry{{Index: 1, Term: 1, Type: raftmsg.EntryNoop}}
	for i := 0; i < n; i++ {
		ents = append(ents, putEntry(t, uint64(i+2), 1, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)))
	}
	if _, err := m.ApplyEntries(ents, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

func backupBytes(t testing.TB, v *kv.View, members []snapshotMember) []byte {
	t.Helper()
	blob, err := encodeMembershipBlob(members)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := writeBackup(&buf, v, 3, raftmsg.ConfState{Voters: []raftmsg.NodeID{1, 2}}, blob)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("writeBackup: %d bytes of %d, %v", n, buf.Len(), err)
	}
	return buf.Bytes()
}

func sameState(t testing.TB, got, want *kv.View) {
	t.Helper()
	if got.AppliedIndex() != want.AppliedIndex() {
		t.Fatalf("applied index %d, want %d", got.AppliedIndex(), want.AppliedIndex())
	}
	sameData(t, got, want)
}

// sameData compares the stores' data (not the applied index).
func sameData(t testing.TB, got, want *kv.View) {
	t.Helper()
	if got.Revision() != want.Revision() || got.Len() != want.Len() || got.SizeBytes() != want.SizeBytes() {
		t.Fatalf("state: applied %d rev %d keys %d size %d; want %d %d %d %d", got.AppliedIndex(), got.Revision(), got.Len(), got.SizeBytes(),
			want.AppliedIndex(), want.Revision(), want.Len(), want.SizeBytes())
	}
	items, _ := want.Range("", "", kv.MaxRangeLimit, nil)
	for _, it := range items {
		v, rev, ok := got.Get(it.Key)
		if !ok || !bytes.Equal(v, it.Value) || rev != it.Revision {
			t.Fatalf("key %q = %q rev %d %v, want %q rev %d", it.Key, v, rev, ok, it.Value, it.Revision)
		}
	}
}

func TestBackupRoundTrip(t *testing.T) {
	m := machineWith(t, 50)
	members := []snapshotMember{{Name: "a", ID: 1, Peer: "127.0.0.1:1"}, {Name: "b", ID: 2, Peer: "127.0.0.1:2", Client: "127.0.0.1:3"}}
	raw := backupBytes(t, m.View(), members)
	b, err := ReadBackup(bytes.NewReader(raw), int64(len(raw)), kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Meta.Index != m.View().AppliedIndex() || b.Meta.Term != 3 || len(b.Meta.Conf.Voters) != 2 {
		t.Fatalf("meta %+v", b.Meta)
	}
	if len(b.Members) != 2 || b.Members[1] != members[1] {
		t.Fatalf("members %+v", b.Members)
	}
	sameState(t, b.Machine.View(), m.View())
}

// TestBadBackupsAreRefusedClearly: every kind of damage is an error that
// wraps ErrBadBackup and says what is wrong.
func TestBadBackupsAreRefusedClearly(t *testing.T) {
	raw := backupBytes(t, machineWith(t, 20).View(), nil)
	flip := func(off int) []byte {
		b := bytes.Clone(raw)
		b[off] ^= 0x40
		return b
	}
	for _, c := range []struct {
		name, mention string
		data          []byte
	}{
		{"empty", "shorter than its header", nil},
		{"garbage", "not a snapshot file", bytes.Repeat([]byte("not a backup "), 20)},
		{"cut short", "trailer missing", raw[:len(raw)-5]},
		{"cut in half", "trailer", raw[:len(raw)/2]},
		{"header bit", "header checksum", flip(14)},
		{"payload bit", "checksum mismatch", flip(len(raw) / 2)},
		{"trailing garbage", "trailer", append(bytes.Clone(raw), "xyz"...)},
	} {
		_, err := ReadBackup(bytes.NewReader(c.data), int64(len(c.data)), kv.Config{})
		if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: %v, want ErrBadBackup mentioning %q", c.name, err, c.mention)
		}
	}
}

func FuzzReadBackup(f *testing.F) {
	raw := backupBytes(f, machineWith(f, 5).View(), []snapshotMember{{Name: "a", ID: 1, Peer: "p"}})
	f.Add(raw)
	f.Add(raw[:len(raw)-1])
	f.Add([]byte{})
	f.Add([]byte("edgekvSN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBackup(bytes.NewReader(data), int64(len(data)), kv.Config{})
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("an error about the content must wrap ErrBadBackup: %v", err)
			}
			return
		}
		// Accepted: the state is what the header says, and it backs up
		// to a file that reads back the same.
		v := b.Machine.View()
		if v.AppliedIndex() != b.Meta.Index {
			t.Fatalf("state at %d, header %d", v.AppliedIndex(), b.Meta.Index)
		}
		again := backupBytes(t, v, b.Members)
		b2, err := ReadBackup(bytes.NewReader(again), int64(len(again)), kv.Config{})
		if err != nil {
			t.Fatalf("re-encoded backup refused: %v", err)
		}
		sameState(t, b2.Machine.View(), v)
	})
}

func testNodeConfig(t *testing.T, name, dir string) config.Config {
	t.Helper()
	cfg, _, err := config.Parse([]string{"--name", name, "--data-dir", dir, "--listen-peer", "127.0.0.1:7390", "--listen-client", "127.0.0.1:7391"}, nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startFromDataDir opens dir the way Server.Start does and runs the member
// alone on an in-memory network; it returns the member and a stop func.
func startFromDataDir(t *testing.T, cfg config.Config) (*Node, func()) {
	t.Helper()
	store, rec, err := storage.Open(cfg.DataDir, storage.Options{Identity: storage.Identity{ClusterID: cfg.ClusterID(), NodeName: cfg.Name}})
	if err != nil {
		t.Fatal(err)
	}
	state, found, err := readState(cfg, rec.Meta.MemberID)
	if err != nil || !found {
		t.Fatalf("state file: found %v, %v", found, err)
	}
	members := map[raftmsg.NodeID]string{}
	for _, m := range state.Members {
		members[m.ID] = m.Name
	}
	recovered, closeSnap := recoveredOf(rec)
	disk, err := NewDiskStore(store, cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{
		ID: rec.Meta.MemberID, Name: cfg.Name, Members: members,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, RequestTimeout: 3 * time.Second,
		BootEpoch: 1, RandSeed: 1, Store: disk, Recovered: recovered, KV: kvConfig(cfg),
	})
	closeSnap()
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	n.Start(NewMemNetwork().Join(n.ID(), n))
	return n, func() {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		store.Close()
	}
}

func waitLeader(t *testing.T, n *Node) {
	t.Helper()
	waitFor(t, "the member to lead", n.IsLeader)
}

func getStale(n *Node, key string) (string, uint64, error) {
	g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(key), Consistency: httpapi.Linearizable})
	return string(g.Value), g.KeyRevision, err
}

// TestRestoreBuildsANewSingleVoterCluster: a backup restored into a new
// data dir starts as a leader holding every key at its revision, and
// takes writes after the backup's revision; a non-empty dir is refused.
func TestRestoreBuildsANewSingleVoterCluster(t *testing.T) {
	src := machineWith(t, 30)
	raw := backupBytes(t, src.View(), []snapshotMember{{Name: "old1", ID: 77, Peer: "10.0.0.1:7380"}})
	file := filepath.Join(t.TempDir(), "backup.snap")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	cfg := testNodeConfig(t, "fresh", dir)
	res, err := Restore(RestoreOptions{From: file, Node: cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 30 || res.Index != src.View().AppliedIndex() || res.MemberID == 0 {
		t.Fatalf("restore result %+v", res)
	}
	if _, err := Restore(RestoreOptions{From: file, Node: cfg}, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty dir: %v", err)
	}
	n, stop := startFromDataDir(t, cfg)
	defer stop()
	waitLeader(t, n)
	for i := 0; i < 30; i++ {
		v, rev, err := getStale(n, fmt.Sprintf("k%03d", i))
		if err != nil || v != fmt.Sprintf("v%d", i) || rev != uint64(i+1) {
			t.Fatalf("k%03d = %q rev %d, %v", i, v, rev, err)
		}
	}
	if r := put(t, n, "after", "x"); r != src.View().Revision()+1 {
		t.Fatalf("first write after restore at revision %d, want %d", r, src.View().Revision()+1)
	}
}

func TestRestoreRefusesABadBackup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backup.snap")
	raw := backupBytes(t, machineWith(t, 3).View(), nil)
	if err := os.WriteFile(file, raw[:len(raw)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	_, err := Restore(RestoreOptions{From: file, Node: testNodeConfig(t, "fresh", dir)}, nil)
	if !errors.Is(err, ErrBadBackup) {
		t.Fatalf("restore of a truncated backup: %v", err)
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a refused restore left %s behind: %v", dir, serr)
	}
}

// TestForceNewClusterKeepsTheWholeLog: a member of a three-member cluster
// whose peers are gone becomes a single voter holding every entry of its
// log, those after its durable commit index included.
func TestForceNewClusterKeepsTheWholeLog(t *testing.T) {
	dir := t.TempDir()
	cfg := testNodeConfig(t, "survivor", dir)
	store, rec, err := storage.Open(dir, storage.Options{Identity: storage.Identity{ClusterID: cfg.ClusterID(), NodeName: cfg.Name}})
	if err != nil {
		t.Fatal(err)
	}
	self := rec.Meta.MemberID
	ents := []raftmsg.Entry{{Index: 1, Term: 2, Type: raftmsg.EntryNoop}}
	for i := 0; i < 10; i++ {
		ents = append(ents, putEntry(t, uint64(i+2), 2, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)))
	}
	// The commit index it learned lags: entries 8..11 may have been
	// acknowledged by the old leader all the same.
	if err := store.Save(raftmsg.HardState{Term: 2, Vote: 99, Commit: 7}, ents); err != nil {
		t.Fatal(err)
	}
	store.Close()
	if err := writeState(dir, stateFile{BootEpoch: 3, Members: []MemberRecord{
		{Name: "survivor", ID: self, Peer: cfg.AdvertisePeer}, {Name: "gone1", ID: 98, Peer: "127.0.0.1:1"}, {Name: "gone2", ID: 99, Peer: "127.0.0.1:2"},
	}}); err != nil {
		t.Fatal(err)
	}
	index, err := ForceNewCluster(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if index != 12 {
		t.Fatalf("snapshot at %d, want 12 (11 entries and a no-op)", index)
	}
	st, _, err := readState(cfg, self)
	if err != nil || len(st.Members) != 1 || st.Members[0].ID != self || st.BootEpoch != 3 {
		t.Fatalf("state after force: %+v, %v", st, err)
	}
	n, stop := startFromDataDir(t, cfg)
	waitLeader(t, n)
	for i := 0; i < 10; i++ {
		v, _, err := getStale(n, fmt.Sprintf("k%03d", i))
		if err != nil || v != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%03d = %q, %v", i, v, err)
		}
	}
	put(t, n, "new", "x")
	stop()
	// A restart without the flag is the same single-voter cluster.
	n, stop = startFromDataDir(t, cfg)
	defer stop()
	waitLeader(t, n)
	if v, _, err := getStale(n, "new"); err != nil || v != "x" {
		t.Fatalf("after restart: new = %q, %v", v, err)
	}
}

func TestForceNewClusterRefusesAnEmptyDataDir(t *testing.T) {
	cfg := testNodeConfig(t, "nobody", t.TempDir())
	if _, err := ForceNewCluster(cfg, nil); err == nil || !strings.Contains(err.Error(), "no data") {
		t.Fatalf("force on an empty data dir: %v", err)
	}
}
