package node

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/kv"
)

// newSnapCluster is an in-process cluster whose members snapshot every
// snapshotEntries applied entries.
func newSnapCluster(t *testing.T, size int, snapshotEntries uint64) *cluster {
	t.Helper()
	c := newClusterWith(t, 0, 3*time.Second, 30)
	for i := 1; i <= size; i++ {
		id := raftmsg.NodeID(i)
		c.members[id] = fmt.Sprintf("n%d", i)
		c.stores[id] = NewMemStore()
	}
	for id := range c.members {
		startSnap(c, id, snapshotEntries)
	}
	return c
}

// startSnap is cluster.start with snapshots enabled.
func startSnap(c *cluster, id raftmsg.NodeID, snapshotEntries uint64) *Node {
	c.t.Helper()
	c.boots[id]++
	members := make([]MemberRecord, 0, len(c.members))
	for mid, name := range c.members {
		members = append(members, MemberRecord{Name: name, ID: mid, Peer: "mem"})
	}
	n, err := New(Config{
		ID: id, Name: c.members[id], Members: c.members,
		TickInterval: 10 * time.Millisecond, ElectionTicks: c.electionTicks, Ticks: c.ticks(id),
		RequestTimeout: c.timeout, BootEpoch: c.boots[id], RandSeed: uint64(id),
		Store: c.stores[id], Recovered: c.stores[id].Recovered(),
		Batch: c.batch, SnapshotEntries: snapshotEntries, MembershipBlob: membershipBlobFunc(members),
	})
	if err != nil {
		c.t.Fatalf("New(%d): %v", id, err)
	}
	n.Start(c.net.Join(id, n))
	c.nodes[id] = n
	return n
}

func snapshotIndex(s *MemStore) uint64 {
	meta, _, _, _ := s.SnapshotStats()
	return meta.Index
}

// TestFollowerCatchesUpBySnapshot: a follower cut off while the leader
// compacts its log past the follower's last entry catches up from the
// leader's snapshot, ends with the same state, and follows the log after.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newSnapCluster(t, 3, 20)
	lead := c.leader()
	f := c.follower()
	put(t, lead, "before", "cut")
	waitFor(t, "the follower to apply the first write", func() bool { return f.View().Revision() >= 1 })
	behind := f.View().AppliedIndex()
	c.net.Isolate(f.ID(), true)
	for i := 0; i < 120; i++ {
		put(t, lead, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	ls := c.stores[lead.ID()]
	waitFor(t, "the leader to compact past the follower", func() bool { return snapshotIndex(ls) > behind+40 })
	if _, _, installs, _ := c.stores[f.ID()].SnapshotStats(); installs != 0 {
		t.Fatalf("the cut-off follower installed %d snapshots", installs)
	}
	c.net.Isolate(f.ID(), false)
	waitFor(t, "the follower to catch up", func() bool { return f.View().AppliedIndex() >= lead.View().AppliedIndex() })
	if _, _, installs, _ := c.stores[f.ID()].SnapshotStats(); installs == 0 {
		t.Fatal("the follower caught up without installing a snapshot: the test did not test anything")
	}
	sameState(t, f.View(), lead.View())
	r := put(t, lead, "after", "snapshot")
	c.readEverywhere("after", "snapshot", r)
	c.readEverywhere("k119", "v119", r-1)
	// Its store holds the snapshot and the log after it: a restart of the
	// follower recovers the same state.
	c.stop(f.ID())
	f = startSnap(c, f.ID(), 20)
	c.leader()
	waitFor(t, "the restarted follower to apply", func() bool { return f.View().AppliedIndex() >= lead.View().AppliedIndex() })
	sameState(t, f.View(), lead.View())
}

// TestRestartFromSnapshot: a member whose log was compacted restarts from
// its snapshot plus the entries after it, with every key at its revision.
func TestRestartFromSnapshot(t *testing.T) {
	c := newSnapCluster(t, 1, 10)
	n := c.leader()
	revs := map[string]uint64{}
	for i := 0; i < 55; i++ {
		k := fmt.Sprintf("k%02d", i)
		revs[k] = put(t, n, k, "v"+k)
	}
	st := c.stores[n.ID()]
	waitFor(t, "a snapshot", func() bool { return snapshotIndex(st) >= 40 })
	// Settled: no snapshot is due or being written once fewer than 10
	// entries follow the newest; then one more write leaves entries after
	// it for the restart to replay.
	waitFor(t, "snapshots to settle", func() bool { return n.View().AppliedIndex()-snapshotIndex(st) < 10 })
	if n.View().AppliedIndex()-snapshotIndex(st) <= 8 {
		revs["tail"] = put(t, n, "tail", "vtail")
	}
	rec := st.Recovered()
	if rec.Snapshot.IsEmpty() || len(rec.Entries) == 0 || rec.Entries[0].Index != rec.Snapshot.Index+1 {
		t.Fatalf("recovered snapshot %+v and %d entries (first %v): want both, contiguous", rec.Snapshot, len(rec.Entries), rec.Entries)
	}
	before := n.View()
	c.stop(n.ID())
	n = startSnap(c, n.ID(), 10)
	c.leader()
	waitFor(t, "the restarted member to apply its log", func() bool { return n.View().AppliedIndex() >= before.AppliedIndex() })
	sameData(t, n.View(), before)
	for k, rev := range revs {
		g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(k)})
		if err != nil || string(g.Value) != "v"+k || g.KeyRevision != rev {
			t.Fatalf("%s = %q rev %d, %v; want rev %d", k, g.Value, g.KeyRevision, err, rev)
		}
	}
	if r := put(t, n, "new", "x"); r != before.Revision()+1 {
		t.Fatalf("first write after the restart at revision %d, want %d", r, before.Revision()+1)
	}
}

// TestStaleSnapshotIsNotInstalled: a snapshot older than the follower's
// commit index (a delayed duplicate) must not replace its log: that would
// drop committed entries. The follower answers it and keeps its state.
func TestStaleSnapshotIsNotInstalled(t *testing.T) {
	c := newSnapCluster(t, 3, 10)
	lead := c.leader()
	// The follower takes no snapshots of its own: then only the core's
	// rule stands between a stale snapshot and its log (its store would
	// accept any snapshot newer than its own).
	f := c.follower()
	c.stop(f.ID())
	f = startSnap(c, f.ID(), 0)
	lead = c.leader()
	for i := 0; i < 15; i++ {
		put(t, lead, fmt.Sprintf("a%02d", i), "x")
	}
	ls := c.stores[lead.ID()]
	waitFor(t, "a first snapshot", func() bool { return snapshotIndex(ls) > 0 })
	old, err := ls.OpenSnapshotFile()
	if err != nil || old == nil {
		t.Fatalf("snapshot file: %v", err)
	}
	oldBytes, err := io.ReadAll(io.NewSectionReader(old, 0, old.Size()))
	if err != nil {
		t.Fatal(err)
	}
	oldMeta := old.Meta()
	for i := 0; i < 30; i++ {
		put(t, lead, fmt.Sprintf("b%02d", i), "y")
	}
	waitFor(t, "the follower to apply everything", func() bool { return f.View().AppliedIndex() >= lead.View().AppliedIndex() })
	fs := c.stores[f.ID()]
	_, _, installsBefore, _ := fs.SnapshotStats()
	want := f.View()
	msg := raftmsg.Message{Type: raftmsg.MsgSnap, From: lead.ID(), To: f.ID(), Term: lead.term.Load(), Snapshot: oldMeta}
	if err := f.ReceiveSnapshot(msg, bytes.NewReader(oldBytes)); err != nil {
		t.Fatalf("stale snapshot: %v (the core answers it; it is not an error)", err)
	}
	if _, _, installs, _ := fs.SnapshotStats(); installs != installsBefore {
		t.Fatalf("a snapshot at %d was installed over commit index %d", oldMeta.Index, f.commit.Load())
	}
	sameState(t, f.View(), want)
	r := put(t, lead, "later", "z")
	c.readEverywhere("later", "z", r)
	// A file that is not the one the message names is refused.
	msg.Snapshot.Index++
	if err := f.ReceiveSnapshot(msg, bytes.NewReader(oldBytes)); err == nil {
		t.Fatal("a snapshot file that does not match its message was accepted")
	}
	if err := f.ReceiveSnapshot(msg, bytes.NewReader(oldBytes[:len(oldBytes)-3])); err == nil {
		t.Fatal("a truncated snapshot file was accepted")
	}
}

// TestMemStoreSnapshotCompactsTheLog checks the in-memory store's
// snapshot rules.
func TestMemStoreSnapshotCompactsTheLog(t *testing.T) {
	s := NewMemStore()
	var ents []raftmsg.Entry
	for i := 1; i <= 10; i++ {
		ents = append(ents, raftmsg.Entry{Index: uint64(i), Term: 1, Type: raftmsg.EntryNoop})
	}
	if err := s.Save(raftmsg.HardState{Term: 1, Commit: 10}, ents); err != nil {
		t.Fatal(err)
	}
	m, _ := kv.NewMachine(kv.Config{})
	if _, err := m.ApplyEntries(ents[:6], nil); err != nil {
		t.Fatal(err)
	}
	meta := raftmsg.SnapshotMeta{Index: 6, Term: 1, Conf: raftmsg.ConfState{Voters: []raftmsg.NodeID{1}}}
	if err := s.SaveSnapshot(meta, nil, m.View().WriteSnapshot); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(meta, nil, m.View().WriteSnapshot); err == nil {
		t.Fatal("a snapshot not newer than the current one was accepted")
	}
	rec := s.Recovered()
	if rec.Snapshot.Index != 6 || len(rec.Entries) != 4 || rec.Entries[0].Index != 7 {
		t.Fatalf("recovered %+v, %d entries", rec.Snapshot, len(rec.Entries))
	}
	if err := s.Save(raftmsg.HardState{}, []raftmsg.Entry{{Index: 5, Term: 1}}); err == nil {
		t.Fatal("an entry covered by the snapshot was accepted")
	}
	if err := s.Save(raftmsg.HardState{}, []raftmsg.Entry{{Index: 9, Term: 2}}); err != nil {
		t.Fatal(err)
	}
	if rec := s.Recovered(); len(rec.Entries) != 3 || rec.Entries[2].Term != 2 {
		t.Fatalf("truncation after a snapshot: %+v", rec.Entries)
	}
}
