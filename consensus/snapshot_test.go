package consensus

// Snapshot and log compaction rules: Raft paper §7 ("Log compaction",
// InstallSnapshot RPC of Figure 13) and thesis §5.1-5.4.

import (
	"errors"
	"slices"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// snapCluster is a 3-node cluster led by 1 in which node 3 was cut off
// while entries 2..k+1 committed; everything committed is applied.
func snapCluster(t *testing.T, k int) *cluster {
	t.Helper()
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.From == 3 }
	for i := 0; i < k; i++ {
		if err := c.propose(1, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
		c.settle()
	}
	if got := c.nodes[1].HardState().Commit; got != uint64(k)+1 {
		t.Fatalf("commit %d, want %d", got, k+1)
	}
	return c
}

// compactAt snapshots node id at index and compacts its log.
func compactAt(t *testing.T, n *Node, index uint64) raftmsg.SnapshotMeta {
	t.Helper()
	meta, err := n.SnapshotMeta(index)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Compact(meta); err != nil {
		t.Fatal(err)
	}
	if err := n.CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
	return meta
}

// Paper §7: "Each server takes snapshots independently, covering just the
// committed entries in its log"; the snapshot includes "the last included
// index ... the last included term" and (thesis §5.1) "the latest
// configuration as of the last included index".
func TestSnapshotMetaAndCompact(t *testing.T) {
	c := snapCluster(t, 5)
	n := c.nodes[1]
	if _, err := n.SnapshotMeta(7); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("meta beyond applied 6: %v", err)
	}
	meta, err := n.SnapshotMeta(4)
	if err != nil {
		t.Fatal(err)
	}
	term, _ := n.LogTerm(4)
	if meta.Index != 4 || meta.Term != term || !slices.Equal(meta.Conf.Voters, three) || len(meta.Conf.Learners) != 0 {
		t.Fatalf("meta %+v, want 4/%d voters %v", meta, term, three)
	}
	bad := meta
	bad.Term++
	if err := n.Compact(bad); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("compact with a wrong term: %v", err)
	}
	bad = meta
	bad.Conf = raftmsg.ConfState{Voters: ids(1, 2)}
	if err := n.Compact(bad); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("compact with a wrong configuration: %v", err)
	}
	if st := n.Status(); st.SnapshotIndex != 0 || st.FirstIndex != 1 {
		t.Fatalf("refused compactions changed the log: %+v", st)
	}
	compactAt(t, n, 4)
	if _, ok := n.LogTerm(3); ok {
		t.Fatal("entry 3 still in memory after compacting to 4")
	}
	if got, ok := n.LogTerm(4); !ok || got != term {
		t.Fatalf("term at the snapshot index: %d %v", got, ok)
	}
	if st := n.Status(); st.SnapshotIndex != 4 || st.FirstIndex != 5 || st.LastIndex != 6 {
		t.Fatalf("status %+v, want snapshot 4, first 5, last 6", st)
	}
	if err := n.Compact(meta); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("compacting to the same index again: %v", err)
	}
	if _, err := n.SnapshotMeta(3); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("meta below the snapshot: %v", err)
	}
	if got, err := n.SnapshotMeta(4); err != nil || got.Index != 4 || got.Term != term {
		t.Fatalf("meta at the snapshot: %+v %v", got, err)
	}
	// The leader keeps working on the compacted log.
	if err := c.propose(1, 99); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := n.HardState().Commit; got != 7 {
		t.Fatalf("commit after compaction %d, want 7", got)
	}
}

// Paper §7: "the leader must occasionally send snapshots to followers that
// lag behind ... when it has already discarded the next log entry that it
// needs to send to a follower". The follower discards its log (Figure 13,
// rule 7), answers only once the snapshot is durable, and then continues
// with entries after it.
func TestSnapshotCatchesUpLaggingFollower(t *testing.T) {
	c := snapCluster(t, 5)
	leader, f := c.nodes[1], c.nodes[3]
	meta := compactAt(t, leader, 5)
	c.cut = nil

	// Let the leader notice node 3: heartbeats until it sends a snapshot.
	var snap raftmsg.Message
	for round := 0; round < 20 && snap.Type == 0; round++ {
		leader.Tick()
		for _, m := range c.collect() {
			if m.Type == raftmsg.MsgSnap && m.To == 3 {
				snap = m
				continue
			}
			if err := c.nodes[m.To].Step(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if snap.Type == 0 {
		t.Fatal("no snapshot sent to the lagging follower")
	}
	if snap.Snapshot.Index != meta.Index || snap.Snapshot.Term != meta.Term || !slices.Equal(snap.Snapshot.Conf.Voters, three) {
		t.Fatalf("sent %+v, want %+v", snap.Snapshot, meta)
	}
	if pr := leader.prs[leader.pos(3)]; pr.State != tracker.StateSnapshot || pr.PendingSnapshot != 5 {
		t.Fatalf("progress of 3: %v", pr)
	}
	// While the snapshot is in flight the leader sends 3 no appends, even
	// for new entries.
	if err := c.propose(1, 77); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.collect() {
		if m.To == 3 && m.Type == raftmsg.MsgApp {
			t.Fatalf("append to 3 while its snapshot is in flight: %+v", m)
		}
		if m.To != 3 {
			if err := c.nodes[m.To].Step(m); err != nil {
				t.Fatal(err)
			}
		}
	}

	if err := f.Step(snap); err != nil {
		t.Fatal(err)
	}
	if err := f.CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
	rd := f.Ready()
	if rd.Snapshot.Index != 5 || rd.Snapshot.Term != meta.Term || !slices.Equal(rd.Snapshot.Conf.Voters, three) {
		t.Fatalf("Ready.Snapshot %+v, want %+v", rd.Snapshot, meta)
	}
	if rd.HardState.Commit != 5 || len(rd.CommittedEntries) != 0 || len(rd.Entries) != 0 {
		t.Fatalf("after install: hard state %+v, %d committed, %d entries", rd.HardState, len(rd.CommittedEntries), len(rd.Entries))
	}
	if len(msgsOfType(rd.Messages, raftmsg.MsgAppResp)) != 0 {
		t.Fatal("the snapshot was acknowledged before it is durable")
	}
	acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp)
	if len(acks) != 1 || acks[0].Index != 5 || acks[0].Reject {
		t.Fatalf("acknowledgements after persist %+v, want one of index 5", acks)
	}
	if st := f.Status(); st.SnapshotIndex != 5 || st.LastIndex != 5 || st.Applied != 5 || st.Commit != 5 {
		t.Fatalf("follower status %+v", st)
	}
	if _, ok := f.LogTerm(2); ok {
		t.Fatal("the follower kept entries the snapshot replaced")
	}
	acks = slices.Clone(acks)
	if err := f.Advance(rd); err != nil {
		t.Fatal(err)
	}
	c.applied[3] = nil
	leader.ReportSnapshot(3, true)
	for _, m := range acks {
		if err := leader.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	c.settle()
	if pr := leader.prs[leader.pos(3)]; pr.State != tracker.StateReplicate || pr.Match != leader.LastIndex() {
		t.Fatalf("progress of 3 after the snapshot: %v, leader last %d", pr, leader.LastIndex())
	}
	// Entries after the snapshot are applied on top of it.
	got := c.applied[3]
	if len(got) == 0 || got[0].Index != 6 || got[len(got)-1].RequestID != 77 {
		t.Fatalf("follower applied %+v after the snapshot, want 6..%d ending with request 77", got, leader.LastIndex())
	}
	if err := f.CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
}

// Committed entries must never be lost: a snapshot at or below the
// follower's commit index is stale (a duplicate or delayed
// InstallSnapshot, thesis §5.4.2) and is not installed; the follower
// answers as for an append at its commit index, after persisting.
func TestSnapshotOlderThanCommitRefused(t *testing.T) {
	n := recovered(t, 2, three, 3, 1, 1, 2, 2, 3, 3)
	n.log.committed = 5
	before := n.Status()
	for _, idx := range []uint64{3, 5} {
		m := raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Term: 3,
			Snapshot: raftmsg.SnapshotMeta{Index: idx, Term: 2, Conf: raftmsg.ConfState{Voters: three}}}
		if idx == 5 {
			m.Snapshot.Term = 3
		}
		if err := n.Step(m); err != nil {
			t.Fatal(err)
		}
		rd := n.Ready()
		if !rd.Snapshot.IsEmpty() {
			t.Fatalf("stale snapshot at %d installed: %+v", idx, rd.Snapshot)
		}
		if len(msgsOfType(rd.Messages, raftmsg.MsgAppResp)) != 0 {
			t.Fatal("answer before persist")
		}
		acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp)
		if len(acks) != 1 || acks[0].Index != 5 || acks[0].Reject {
			t.Fatalf("answer to a stale snapshot %+v, want an acknowledgement of the commit index 5", acks)
		}
		if err := n.Advance(rd); err != nil {
			t.Fatal(err)
		}
	}
	after := n.Status()
	if after.SnapshotIndex != 0 || after.LastIndex != before.LastIndex || after.Commit != 5 {
		t.Fatalf("status %+v after stale snapshots, before %+v", after, before)
	}
}

// Figure 13, rule 6: "If existing log entry has same index and term as
// snapshot's last included entry, retain log entries following it and
// reply." The snapshot proves that index committed.
func TestSnapshotMatchingLogRetained(t *testing.T) {
	n := recovered(t, 2, three, 3, 1, 1, 2, 2, 3, 3)
	n.log.committed = 2
	m := raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Term: 3,
		Snapshot: raftmsg.SnapshotMeta{Index: 4, Term: 2, Conf: raftmsg.ConfState{Voters: three}}}
	if err := n.Step(m); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if !rd.Snapshot.IsEmpty() {
		t.Fatalf("installed %+v over a log that holds its last entry", rd.Snapshot)
	}
	if rd.HardState.Commit != 4 || n.LastIndex() != 6 {
		t.Fatalf("commit %d last %d, want commit 4 and the log kept to 6", rd.HardState.Commit, n.LastIndex())
	}
	if acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp); len(acks) != 1 || acks[0].Index != 4 {
		t.Fatalf("acks %+v", acks)
	}
	if len(rd.CommittedEntries) != 4 || rd.CommittedEntries[3].Index != 4 {
		t.Fatalf("committed entries %+v, want 1..4", rd.CommittedEntries)
	}
}

// Figure 13, rule 7: "Discard the entire log" when it conflicts with the
// snapshot; the follower's term does not go below the message's, and what
// it had pipelined to disk of the old log cannot push its durable index
// past the snapshot.
func TestSnapshotReplacesConflictingLog(t *testing.T) {
	n := recovered(t, 2, three, 2, 1, 1, 2, 2, 2, 2, 2, 2)
	// An append of the old log in flight to disk, not yet acknowledged.
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 3, To: 2, Term: 2, Index: 8, LogTerm: 2,
		Entries: []raftmsg.Entry{{Index: 9, Term: 2}, {Index: 10, Term: 2}}}); err != nil {
		t.Fatal(err)
	}
	inflight := n.Ready()
	m := raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Term: 4,
		Snapshot: raftmsg.SnapshotMeta{Index: 7, Term: 3, Conf: raftmsg.ConfState{Voters: three}}}
	if err := n.Step(m); err != nil {
		t.Fatal(err)
	}
	if ss := n.SoftState(); ss.Term != 4 || ss.Leader != 1 || ss.Role != RoleFollower {
		t.Fatalf("soft state %+v, want follower of 1 in term 4", ss)
	}
	rd := n.Ready()
	if rd.Snapshot.Index != 7 || rd.HardState.Term != 4 || rd.HardState.Commit != 7 || n.LastIndex() != 7 {
		t.Fatalf("snapshot %+v hard state %+v last %d", rd.Snapshot, rd.HardState, n.LastIndex())
	}
	if err := n.AckPersisted(inflight.Seq); err != nil {
		t.Fatal(err)
	}
	if err := n.CheckInvariants(true); err != nil {
		t.Fatalf("after the old log's persistence was acknowledged: %v", err)
	}
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	// An acknowledgement of applying entries handed out before the
	// snapshot, arriving late, is harmless.
	if err := n.AckApplied(0); err != nil {
		t.Fatal(err)
	}
	// The follower continues right after the snapshot.
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 4, Index: 7, LogTerm: 3,
		Entries: []raftmsg.Entry{{Index: 8, Term: 4}}, Commit: 8}); err != nil {
		t.Fatal(err)
	}
	rd = n.Ready()
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 8 || !rd.Snapshot.IsEmpty() {
		t.Fatalf("entries %+v snapshot %+v after the snapshot", rd.Entries, rd.Snapshot)
	}
	if acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp); len(acks) != 1 || acks[0].Index != 8 || acks[0].Reject {
		t.Fatalf("acks %+v", acks)
	}
}

// A MsgSnap of a stale term is refused like a stale append (paper Figure 2:
// "Reply immediately if term < currentTerm"), and the stale leader learns
// the term; a snapshot without a configuration or with a term above the
// message's is malformed (thesis §5.1: it must carry the configuration).
func TestSnapshotValidation(t *testing.T) {
	n := recovered(t, 2, three, 5, 1, 1)
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Term: 4,
		Snapshot: raftmsg.SnapshotMeta{Index: 9, Term: 4, Conf: raftmsg.ConfState{Voters: three}}}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if !rd.Snapshot.IsEmpty() || n.LastIndex() != 2 {
		t.Fatalf("stale-term snapshot installed: %+v", rd.Snapshot)
	}
	if rs := msgsOfType(rd.Messages, raftmsg.MsgAppResp); len(rs) != 1 || rs[0].Term != 5 {
		t.Fatalf("answer to a stale leader %+v, want one carrying term 5", rs)
	}
	for name, meta := range map[string]raftmsg.SnapshotMeta{
		"no configuration":      {Index: 9, Term: 5},
		"term above message":    {Index: 9, Term: 6, Conf: raftmsg.ConfState{Voters: three}},
		"zero index":            {Term: 5, Conf: raftmsg.ConfState{Voters: three}},
		"zero term":             {Index: 9, Conf: raftmsg.ConfState{Voters: three}},
		"repeated voter":        {Index: 9, Term: 5, Conf: raftmsg.ConfState{Voters: ids(1, 1)}},
		"learners but no voter": {Index: 9, Term: 5, Conf: raftmsg.ConfState{Learners: three}},
	} {
		err := n.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 2, Term: 5, Snapshot: meta})
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v, want an invalid-message error", name, err)
		}
	}
	if n.HasReady() || n.LastIndex() != 2 {
		t.Fatal("a refused snapshot changed the node")
	}
}

// Failed transfers are retried, paced by the follower's signs of life;
// ReportUnreachable sends a pipelining follower back to probing.
func TestReportSnapshotAndUnreachable(t *testing.T) {
	c := snapCluster(t, 3)
	leader := c.nodes[1]
	compactAt(t, leader, 4)
	i := leader.pos(3)
	pr := leader.prs[i]
	pr.BecomeProbe()
	pr.Next = 2
	if !leader.maybeSendAppend(i, false) || pr.State != tracker.StateSnapshot {
		t.Fatalf("no snapshot for a follower needing entry 2: %v", pr)
	}
	leader.ReportSnapshot(2, false) // not waiting for one: ignored
	if leader.prs[leader.pos(2)].State != tracker.StateReplicate {
		t.Fatalf("progress of 2 changed by a stray report: %v", leader.prs[leader.pos(2)])
	}
	leader.ReportSnapshot(3, false)
	if pr.State != tracker.StateProbe || !pr.ProbeSent {
		t.Fatalf("after a failed transfer: %v (probe sent %v)", pr, pr.ProbeSent)
	}
	drainReady(leader)
	if leader.maybeSendAppend(i, false) {
		t.Fatal("snapshot resent before the follower showed a sign of life")
	}
	if err := leader.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, From: 3, To: 1, Term: leader.term}); err != nil {
		t.Fatal(err)
	}
	rd := drainReady(leader)
	if s := msgsOfType(rd.Messages, raftmsg.MsgSnap); len(s) != 1 || s[0].To != 3 || s[0].Snapshot.Index != 4 {
		t.Fatalf("after the heartbeat answer: %+v, want the snapshot resent", rd.Messages)
	}
	leader.ReportSnapshot(3, true)
	if pr.State != tracker.StateProbe || pr.Next != 5 {
		t.Fatalf("after a finished transfer: %v, want probing from 5", pr)
	}
	rd = drainReady(leader)
	if a := msgsOfType(rd.Messages, raftmsg.MsgApp); len(a) != 1 || a[0].To != 3 || a[0].Index != 4 {
		t.Fatalf("after the transfer: %+v, want an append probing 4", rd.Messages)
	}

	pr2 := leader.prs[leader.pos(2)]
	leader.ReportUnreachable(2)
	if pr2.State != tracker.StateProbe {
		t.Fatalf("unreachable follower still %v", pr2.State)
	}
	if err := leader.CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
}

// Thesis §5.1/§4.1: the configuration travels in the snapshot, and a
// follower installing it puts that configuration in force.
func TestSnapshotCarriesConfiguration(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.addNode(4)
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
	c.mustChange(1, raftmsg.ConfChangePromote, 4)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.From == 3 }
	c.addNode(5)
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 5)
	leader := c.nodes[1]
	applied := leader.Status().Applied
	meta := compactAt(t, leader, applied)
	if !slices.Equal(meta.Conf.Voters, ids(1, 2, 3, 4)) || !slices.Equal(meta.Conf.Learners, ids(5)) {
		t.Fatalf("snapshot configuration %+v", meta.Conf)
	}
	// A node restarted from it recovers the configuration, whatever Voters says.
	cfg := testConfig(3, 7)
	cfg.Snapshot = meta
	cfg.HardState = raftmsg.HardState{Term: meta.Term, Commit: meta.Index}
	cfg.Applied = meta.Index
	r := mustNew(t, cfg)
	wantConf(t, r, ids(1, 2, 3, 4), ids(5))
	// Node 3 was cut off while 5 joined: the snapshot brings it the news.
	f := c.nodes[3]
	wantConf(t, f, ids(1, 2, 3, 4), nil)
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 3, Term: leader.term, Snapshot: meta}); err != nil {
		t.Fatal(err)
	}
	rd := f.Ready()
	if rd.ConfState == nil || !slices.Equal(rd.ConfState.Learners, ids(5)) || rd.Snapshot.Index != meta.Index {
		t.Fatalf("Ready after install: conf %v snapshot %+v", rd.ConfState, rd.Snapshot)
	}
	wantConf(t, f, ids(1, 2, 3, 4), ids(5))
}

// Recovery (thesis §5.1): a node restarts from its snapshot plus the
// entries after it; entries after Applied come back to be applied.
func TestRestartFromSnapshot(t *testing.T) {
	cfg := testConfig(2, 9) // Voters is ignored with a snapshot
	cfg.Snapshot = raftmsg.SnapshotMeta{Index: 10, Term: 2, Conf: raftmsg.ConfState{Voters: three}}
	cfg.Entries = []raftmsg.Entry{{Index: 11, Term: 2}, {Index: 12, Term: 3}, {Index: 13, Term: 3}}
	cfg.HardState = raftmsg.HardState{Term: 3, Vote: 1, Commit: 12}
	cfg.Applied = 10
	n := mustNew(t, cfg)
	if st := n.Status(); st.SnapshotIndex != 10 || st.FirstIndex != 11 || st.LastIndex != 13 || st.Commit != 12 {
		t.Fatalf("status %+v", st)
	}
	rd := n.Ready()
	if !rd.Snapshot.IsEmpty() || len(rd.CommittedEntries) != 2 || rd.CommittedEntries[0].Index != 11 {
		t.Fatalf("ready after restart: snapshot %+v committed %+v", rd.Snapshot, rd.CommittedEntries)
	}
	if meta, err := n.SnapshotMeta(10); err != nil || meta.Index != 10 || meta.Term != 2 || !slices.Equal(meta.Conf.Voters, three) {
		t.Fatalf("meta of the recovered snapshot: %+v %v", meta, err)
	}
	// A crash between making a received snapshot durable and the hard
	// state that names it committed leaves the commit index below it.
	cfg.HardState.Commit = 4
	if n := mustNew(t, cfg); n.HardState().Commit != 10 {
		t.Fatalf("commit %d after restart, want the snapshot's 10", n.HardState().Commit)
	}
	for name, mut := range map[string]func(*Config){
		"snapshot term above hard state": func(c *Config) { c.Snapshot.Term = 4 },
		"snapshot without term":          func(c *Config) { c.Snapshot.Term = 0 },
		"no configuration":               func(c *Config) { c.Snapshot.Conf = raftmsg.ConfState{} },
		"applied below snapshot":         func(c *Config) { c.Applied = 9 },
		"gap after snapshot":             func(c *Config) { c.Entries = c.Entries[1:] },
	} {
		bad := cfg
		bad.Entries = slices.Clone(cfg.Entries)
		mut(&bad)
		if _, err := New(bad); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}

// Thesis §5.1: the snapshot carries the configuration as of its last
// index. A restarted node may be given the member table's current voters
// as its base (doc.go, Membership): its configuration at earlier indexes
// must still come out exact from the conf-change entries after them.
func TestSnapshotConfigurationExactWithCurrentBase(t *testing.T) {
	enc := func(typ raftmsg.ConfChangeType, id raftmsg.NodeID) []byte {
		return raftmsg.AppendConfChange(nil, raftmsg.ConfChange{Type: typ, NodeID: id})
	}
	ents := []raftmsg.Entry{
		{Index: 1, Term: 1, Type: raftmsg.EntryNoop},
		{Index: 2, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangeAddLearner, 4)},
		{Index: 3, Term: 1},
		{Index: 4, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangeRemove, 3)},
		{Index: 5, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangePromote, 4)},
		{Index: 6, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangeAddLearner, 5)},
		{Index: 7, Term: 1},
	}
	want := map[uint64]raftmsg.ConfState{
		1: {Voters: ids(1, 2, 3)},
		3: {Voters: ids(1, 2, 3), Learners: ids(4)},
		4: {Voters: ids(1, 2), Learners: ids(4)},
		5: {Voters: ids(1, 2, 4)},
		7: {Voters: ids(1, 2, 4), Learners: ids(5)},
	}
	for name, base := range map[string][]raftmsg.NodeID{
		"bootstrap base": ids(1, 2, 3),
		"current base":   ids(1, 2, 4), // the table after everything applied
	} {
		cfg := testConfig(1, base...)
		cfg.HardState = raftmsg.HardState{Term: 1, Commit: 7}
		cfg.Entries = ents
		cfg.Applied = 7
		n := mustNew(t, cfg)
		wantConf(t, n, ids(1, 2, 4), ids(5))
		for idx, cs := range want {
			meta, err := n.SnapshotMeta(idx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meta.Conf.Voters, cs.Voters) || !slices.Equal(meta.Conf.Learners, cs.Learners) {
				t.Errorf("%s: configuration at %d %+v, want %+v", name, idx, meta.Conf, cs)
			}
		}
		// Compacting makes the exact one the base; the one in force stays.
		compactAt(t, n, 4)
		wantConf(t, n, ids(1, 2, 4), ids(5))
		if meta, _ := n.SnapshotMeta(5); !slices.Equal(meta.Conf.Voters, ids(1, 2, 4)) || len(meta.Conf.Learners) != 0 {
			t.Errorf("%s: configuration at 5 after compacting to 4: %+v", name, meta.Conf)
		}
	}
}

// A joiner starts with some later configuration as its base and no
// snapshot: it cannot know the configuration at the indexes its log holds
// and refuses to describe a snapshot until it installs one from the leader.
func TestJoinerSnapshotsOnlyAfterInstalling(t *testing.T) {
	n := mustNew(t, testConfig(4, 1, 2, 3))
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 4, Term: 2, Commit: 2,
		Entries: []raftmsg.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 2}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Advance(n.Ready()); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if err := n.Advance(rd); err != nil || n.Status().Applied != 2 {
		t.Fatalf("applied %d: %v", n.Status().Applied, err)
	}
	if _, err := n.SnapshotMeta(2); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("joiner without a snapshot described one: %v", err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 4, Term: 2,
		Snapshot: raftmsg.SnapshotMeta{Index: 5, Term: 2, Conf: raftmsg.ConfState{Voters: three, Learners: ids(4)}}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Advance(n.Ready()); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 4, Term: 2, Index: 5, LogTerm: 2, Commit: 6,
		Entries: []raftmsg.Entry{{Index: 6, Term: 2}}}); err != nil {
		t.Fatal(err)
	}
	for n.HasReady() {
		if err := n.Advance(n.Ready()); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := n.SnapshotMeta(6)
	if err != nil || !slices.Equal(meta.Conf.Voters, three) || !slices.Equal(meta.Conf.Learners, ids(4)) {
		t.Fatalf("after installing: %+v %v", meta, err)
	}
}

// Thesis §5.2: snapshots of a memory-based state machine are written
// concurrently with normal operation. The meta is taken at the applied
// index, the cluster goes on committing and applying while the file is
// written, and Compact then drops exactly the entries the snapshot covers.
func TestCompactAfterConcurrentProgress(t *testing.T) {
	c := snapCluster(t, 3)
	n := c.nodes[1]
	meta, err := n.SnapshotMeta(n.Status().Applied)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < 4; i++ {
		if err := c.propose(1, 50+i); err != nil {
			t.Fatal(err)
		}
		c.settle()
	}
	if err := n.Compact(meta); err != nil {
		t.Fatal(err)
	}
	st := n.Status()
	if st.SnapshotIndex != meta.Index || st.LastIndex != meta.Index+4 || st.Applied != st.LastIndex {
		t.Fatalf("status %+v after compacting to %d", st, meta.Index)
	}
	for i := meta.Index + 1; i <= st.LastIndex; i++ {
		if _, ok := n.LogTerm(i); !ok {
			t.Fatalf("entry %d after the snapshot dropped", i)
		}
	}
	// An older meta, taken before, is now refused.
	if err := n.Compact(raftmsg.SnapshotMeta{Index: meta.Index - 1, Term: 1, Conf: meta.Conf}); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("compacting below the snapshot: %v", err)
	}
}
