package consensus

import (
	"errors"
	"slices"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// addNode starts a node joining the cluster (thesis §4.2.1): it is given
// the bootstrap voters as its base configuration and no state; the log it
// receives makes it a member.
func (c *cluster) addNode(id raftmsg.NodeID) *Node {
	c.t.Helper()
	n := mustNew(c.t, testConfig(id, 1, 2, 3))
	c.nodes[id] = n
	return n
}

func confChange(typ raftmsg.ConfChangeType, id raftmsg.NodeID) raftmsg.ConfChange {
	return raftmsg.ConfChange{Type: typ, NodeID: id, Context: []byte("name")}
}

// mustChange proposes cc on the leader and settles the cluster.
func (c *cluster) mustChange(leader raftmsg.NodeID, typ raftmsg.ConfChangeType, id raftmsg.NodeID) {
	c.t.Helper()
	if err := c.nodes[leader].ProposeConfChange(confChange(typ, id), 1000+uint64(id)); err != nil {
		c.t.Fatalf("%v %d on %d: %v", typ, id, leader, err)
	}
	c.settle()
}

func ids(v ...raftmsg.NodeID) []raftmsg.NodeID { return v }

func wantConf(t *testing.T, n *Node, voters, learners []raftmsg.NodeID) {
	t.Helper()
	cs := n.ConfState()
	if !slices.Equal(cs.Voters, voters) || !slices.Equal(cs.Learners, learners) {
		t.Fatalf("node %d conf %+v, want voters %v learners %v", n.ID(), cs, voters, learners)
	}
	if err := n.CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
}

// Thesis §4.1: "Raft restricts the types of change that are allowed: only
// one server can be added or removed from the cluster at a time", and a
// change may start only once the previous one committed (here: applied)
// and the leader has committed an entry in its term. Every refusal is
// immediate and distinct.
func TestConfChangeRefusals(t *testing.T) {
	// A new leader whose no-op has not committed: ErrNotReady.
	solo := mustNew(t, testConfig(1, 1))
	for i := 0; i < 100 && solo.SoftState().Role == RoleFollower; i++ {
		solo.Tick()
	}
	// A sole voter leads once its term and vote are durable.
	if err := solo.Advance(solo.Ready()); err != nil {
		t.Fatal(err)
	}
	if r := solo.SoftState().Role; r != RoleLeader {
		t.Fatalf("sole voter after its vote is durable: %v", r)
	}
	if err := solo.ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 2), 1); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before the no-op commits: %v", err)
	}
	rd := solo.Ready()
	if err := solo.Advance(rd); err != nil {
		t.Fatal(err)
	}
	solo.Advance(solo.Ready())
	if err := solo.ProposeConfChange(confChange(raftmsg.ConfChangeRemove, 1), 1); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("removing the only voter: %v", err)
	}

	c := newCluster(t, 3)
	c.elect(1)
	leader := c.nodes[1]
	if err := c.nodes[2].ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 4), 1); !errors.Is(err, ErrNotLeader) || RejectReasonOf(err) != raftmsg.RejectNoLeader {
		t.Fatalf("on a follower: %v", err)
	}
	for name, tc := range map[string]struct {
		cc   raftmsg.ConfChange
		want error
	}{
		"bad type":         {raftmsg.ConfChange{Type: 0, NodeID: 4}, ErrInvalidProposal},
		"node zero":        {raftmsg.ConfChange{Type: raftmsg.ConfChangeAddLearner}, ErrInvalidProposal},
		"add a voter":      {confChange(raftmsg.ConfChangeAddLearner, 2), ErrMemberExists},
		"promote a voter":  {confChange(raftmsg.ConfChangePromote, 2), ErrMemberExists},
		"promote stranger": {confChange(raftmsg.ConfChangePromote, 9), ErrUnknownMember},
		"remove stranger":  {confChange(raftmsg.ConfChangeRemove, 9), ErrUnknownMember},
	} {
		if err := leader.ProposeConfChange(tc.cc, 1); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	last := leader.LastIndex()
	c.addNode(4)
	if err := leader.ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 4), 1); err != nil {
		t.Fatal(err)
	}
	// One at a time: the second change waits for the first to apply.
	if err := leader.ProposeConfChange(confChange(raftmsg.ConfChangePromote, 4), 2); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change while one is pending: %v", err)
	}
	if err := leader.ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 4), 2); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change while one is pending: %v", err)
	}
	if leader.LastIndex() != last+1 {
		t.Fatalf("refusals appended entries: last %d, was %d", leader.LastIndex(), last)
	}
	c.settle()
	if err := leader.ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 4), 2); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("adding a learner twice: %v", err)
	}
	// During a leadership transfer: ErrTransferring.
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	if err := leader.TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if err := leader.ProposeConfChange(confChange(raftmsg.ConfChangePromote, 4), 3); !errors.Is(err, ErrTransferring) || RejectReasonOf(err) != raftmsg.RejectTransferring {
		t.Fatalf("during a transfer: %v", err)
	}
}

// Thesis §4.2.1: a learner (non-voting member) receives the log but is
// not counted in majorities, never votes and never campaigns.
func TestLearnerReplicatedButNeverCounts(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.addNode(4)
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
	for _, id := range ids(1, 2, 3, 4) {
		wantConf(t, c.nodes[id], ids(1, 2, 3), ids(4))
	}
	if err := c.propose(1, 7); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.requestIDs(4); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("learner applied %v", got)
	}
	// The learner's acknowledgement never makes a majority with the leader.
	c.cut = func(m raftmsg.Message) bool { return m.To == 2 || m.To == 3 }
	commit := c.nodes[1].HardState().Commit
	if err := c.propose(1, 8); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.nodes[1].HardState().Commit; got != commit {
		t.Fatalf("committed %d with the leader and a learner only", got)
	}
	if m := c.nodes[4].LastIndex(); m != c.nodes[1].LastIndex() {
		t.Fatalf("learner log %d, leader's %d", m, c.nodes[1].LastIndex())
	}
	// ReadIndex is not confirmed by the learner alone.
	if err := c.nodes[1].ReadIndex(99); !errors.Is(err, nil) {
		t.Fatal(err)
	}
	c.tick(1, 1)
	c.settle()
	if len(c.reads[1]) != 0 {
		t.Fatalf("read confirmed by leader and learner: %v", c.reads[1])
	}
	// Check-quorum: the learner's answers do not keep the leader in place.
	for i := 0; i < 3*c.nodes[1].cfg.ElectionTicks && c.nodes[1].SoftState().Role == RoleLeader; i++ {
		c.tick(1, 1)
		c.tick(4, 1)
		c.settle()
	}
	if r := c.nodes[1].SoftState().Role; r == RoleLeader {
		t.Fatalf("leader heard only by a learner kept leading")
	}
	// The learner never campaigns, however long it waits.
	c.cut = func(m raftmsg.Message) bool { return true }
	c.tick(4, 10*c.nodes[4].cfg.ElectionTicks)
	if r := c.nodes[4].SoftState().Role; r != RoleFollower {
		t.Fatalf("learner became %v", r)
	}
	if rd := drainReady(c.nodes[4]); len(msgsOfType(rd.Messages, raftmsg.MsgPreVote)) > 0 {
		t.Fatalf("learner asked for pre-votes")
	}
	// A learner's vote is not counted: a candidate of voters {1,2,3}
	// granted by the learner alone stays a (pre-)candidate.
	c.cut = nil
	n2 := c.nodes[2]
	for n2.SoftState().Role != RolePreCandidate {
		n2.Tick()
	}
	if err := n2.Step(raftmsg.Message{Type: raftmsg.MsgPreVoteResp, From: 4, To: 2, Term: n2.SoftState().Term + 1}); err != nil {
		t.Fatal(err)
	}
	if r := n2.SoftState().Role; r != RolePreCandidate {
		t.Fatalf("a learner's pre-vote made node 2 %v", r)
	}
}

// Thesis §4.2.1 (catch-up): a learner is promoted only once its log is
// close to the leader's; then it counts, and the quorum grows.
func TestPromoteOnlyCaughtUpLearner(t *testing.T) {
	c := newCluster(t, 3)
	for _, n := range c.nodes {
		n.cfg.MaxLearnerLagEntries = 3
	}
	c.elect(1)
	c.addNode(4).cfg.MaxLearnerLagEntries = 3
	c.cut = func(m raftmsg.Message) bool { return m.To == 4 }
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
	for r := uint64(1); r <= 5; r++ {
		if err := c.propose(1, r); err != nil {
			t.Fatal(err)
		}
	}
	c.settle()
	err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangePromote, 4), 5)
	if !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promoting a learner 8 entries behind: %v", err)
	}
	st := c.nodes[1].Status()
	var seen bool
	for _, p := range st.Peers {
		if p.ID == 4 {
			seen = true
			if !p.Learner || p.Match != 0 {
				t.Fatalf("learner status %+v", p)
			}
		}
	}
	if !seen {
		t.Fatalf("learner missing from status %+v", st.Peers)
	}
	c.cut = nil
	c.tick(1, 1)
	c.settle()
	c.mustChange(1, raftmsg.ConfChangePromote, 4)
	for _, id := range ids(1, 2, 3, 4) {
		wantConf(t, c.nodes[id], ids(1, 2, 3, 4), nil)
	}
	// Four voters: a majority is three, so leader plus one does not commit.
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.To == 4 }
	commit := c.nodes[1].HardState().Commit
	if err := c.propose(1, 9); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.nodes[1].HardState().Commit; got != commit {
		t.Fatalf("committed %d on 2 of 4 voters", got)
	}
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	c.tick(1, 1)
	c.settle()
	if got := c.nodes[1].HardState().Commit; got == commit {
		t.Fatalf("did not commit on 3 of 4 voters")
	}
}

// Thesis §4.2.2: "the leader [...] steps down once the Cnew entry is
// committed"; meanwhile it "does not count itself in majorities".
func TestLeaderRemovesItself(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	if err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangeRemove, 1), 77); err != nil {
		t.Fatal(err)
	}
	c.settle()
	// Append-time: the leader manages a configuration without itself.
	wantConf(t, c.nodes[1], ids(2, 3), nil)
	if ss := c.nodes[1].SoftState(); ss.Role != RoleLeader || ss.Removed {
		t.Fatalf("leader with its removal uncommitted: %+v", ss)
	}
	// Leader and node 2 hold it, but the leader does not count: {2,3}
	// needs both.
	if got, idx := c.nodes[1].HardState().Commit, c.nodes[1].LastIndex(); got >= idx {
		t.Fatalf("removal committed at %d (last %d) without node 3", got, idx)
	}
	c.cut = nil
	c.tick(1, 1)
	c.settle()
	ss := c.nodes[1].SoftState()
	if ss.Role != RoleFollower || !ss.Removed {
		t.Fatalf("removed leader after commit: %+v", ss)
	}
	found := false
	for _, e := range c.applied[1] {
		found = found || e.Type == raftmsg.EntryConfChange && e.RequestID == 77
	}
	if !found {
		t.Fatalf("the removal did not come back in CommittedEntries")
	}
	// It handed over: one of 2 and 3 leads at once (TimeoutNow).
	c.settle()
	l := c.nodes[2].SoftState().Leader
	if l != 2 && l != 3 {
		t.Fatalf("no new leader after the old one stepped down: %+v", c.nodes[2].SoftState())
	}
	// The removed node never campaigns again.
	c.tick(1, 10*c.nodes[1].cfg.ElectionTicks)
	if r := c.nodes[1].SoftState().Role; r != RoleFollower {
		t.Fatalf("removed node became %v", r)
	}
	if err := c.propose(l, 5); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.requestIDs(l); !slices.Contains(got, 5) {
		t.Fatalf("new leader did not commit: %v", got)
	}
}

// A removed follower learns that its removal committed (SoftState.Removed)
// because the leader keeps sending it the log until it acknowledged a
// commit index covering the removal; then the leader forgets it.
func TestRemovedFollowerLearnsItAndIsForgotten(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.mustChange(1, raftmsg.ConfChangeRemove, 3)
	for i := 0; i < 3; i++ {
		c.tick(1, 1)
		c.settle()
	}
	if ss := c.nodes[3].SoftState(); !ss.Removed {
		t.Fatalf("removed follower: %+v", ss)
	}
	if ss := c.nodes[2].SoftState(); ss.Removed {
		t.Fatalf("remaining follower: %+v", ss)
	}
	if i := c.nodes[1].pos(3); i >= 0 {
		t.Fatalf("leader still tracks the removed node as %d", c.nodes[1].kinds[i])
	}
	wantConf(t, c.nodes[3], ids(1, 2), nil)
	c.tick(3, 10*c.nodes[3].cfg.ElectionTicks)
	if rd := drainReady(c.nodes[3]); len(msgsOfType(rd.Messages, raftmsg.MsgPreVote)) > 0 {
		t.Fatalf("removed node campaigns")
	}
	// Two voters now: both must acknowledge.
	c.cut = func(m raftmsg.Message) bool { return m.To == 2 }
	commit := c.nodes[1].HardState().Commit
	if err := c.propose(1, 5); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if c.nodes[1].HardState().Commit != commit {
		t.Fatalf("committed alone in a two-voter cluster")
	}
}

// Thesis §4.1: "a server always uses the latest configuration in its log,
// regardless of whether the entry is committed", and falls back when a
// conflicting leader removes the entry. Ready.ConfState reports each
// change once.
func TestUncommittedChangeRevertsOnTruncation(t *testing.T) {
	c := newCluster(t, 5)
	c.elect(1)
	// Only node 2 gets the change.
	c.cut = func(m raftmsg.Message) bool { return m.From == 1 && m.To != 2 || m.To == 1 }
	if err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangeAddLearner, 9), 1); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.confs[1]; len(got) != 1 || !slices.Equal(got[0].Learners, ids(9)) {
		t.Fatalf("leader's Ready.ConfState after the change: %+v", got)
	}
	wantConf(t, c.nodes[2], ids(1, 2, 3, 4, 5), ids(9))
	wantConf(t, c.nodes[3], ids(1, 2, 3, 4, 5), nil)
	// Nodes 3, 4, 5 elect a leader of a new term without the change...
	c.cut = func(m raftmsg.Message) bool { return m.To <= 2 || m.From <= 2 }
	var leader raftmsg.NodeID
	for i := 0; i < 100 && leader == 0; i++ {
		for _, id := range ids(3, 4, 5) {
			c.tick(id, 1)
			c.settle()
			if c.nodes[id].SoftState().Role == RoleLeader {
				leader = id
			}
		}
	}
	if leader == 0 {
		t.Fatalf("no leader among 3, 4, 5")
	}
	// ...which overwrites node 2's uncommitted change: node 2 falls back.
	c.cut = func(m raftmsg.Message) bool { return m.To == 1 || m.From == 1 }
	c.tick(leader, 1)
	c.settle()
	wantConf(t, c.nodes[2], ids(1, 2, 3, 4, 5), nil)
	got := c.confs[2]
	if len(got) != 2 || !slices.Equal(got[0].Learners, ids(9)) || len(got[1].Learners) != 0 {
		t.Fatalf("node 2's Ready.ConfState history: %+v", got)
	}
}

// The configuration in force after a restart is the base (bootstrap
// voters, or the snapshot's) plus every conf-change entry in the log.
func TestConfRecoveredAfterRestart(t *testing.T) {
	enc := func(typ raftmsg.ConfChangeType, id raftmsg.NodeID) []byte {
		return raftmsg.AppendConfChange(nil, confChange(typ, id))
	}
	ents := []raftmsg.Entry{
		{Index: 1, Term: 1, Type: raftmsg.EntryNoop},
		{Index: 2, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangeAddLearner, 4)},
		{Index: 3, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangePromote, 4)},
		{Index: 4, Term: 1, Type: raftmsg.EntryConfChange, Data: enc(raftmsg.ConfChangeRemove, 2)},
		{Index: 5, Term: 1, Type: raftmsg.EntryNormal},
	}
	cfg := testConfig(2, 1, 2, 3)
	cfg.HardState = raftmsg.HardState{Term: 1, Commit: 3}
	cfg.Entries = ents
	n := mustNew(t, cfg)
	wantConf(t, n, ids(1, 3, 4), nil)
	if n.SoftState().Removed {
		t.Fatalf("removed although the removal (4) is not committed (3)")
	}
	if cs, ok := n.confAt(2); !ok || !slices.Equal(cs.Voters, ids(1, 2, 3)) || !slices.Equal(cs.Learners, ids(4)) {
		t.Fatalf("conf at 2: %+v %v", cs, ok)
	}
	if cs, _ := n.confAt(0); !slices.Equal(cs.Voters, ids(1, 2, 3)) {
		t.Fatalf("conf at 0: %+v", cs)
	}
	cfg.HardState.Commit = 4
	if n := mustNew(t, cfg); !n.SoftState().Removed {
		t.Fatalf("restarted after its committed removal: %+v", n.SoftState())
	}
	// From a snapshot at 3: its conf is the base, Voters is ignored.
	cfg = testConfig(2, 7)
	cfg.Snapshot = raftmsg.SnapshotMeta{Index: 3, Term: 1, Conf: raftmsg.ConfState{Voters: ids(4, 1, 3, 2)}}
	cfg.HardState = raftmsg.HardState{Term: 1, Commit: 3}
	cfg.Applied = 3
	cfg.Entries = ents[3:]
	n = mustNew(t, cfg)
	wantConf(t, n, ids(1, 3, 4), nil)
	if _, ok := n.confAt(2); ok {
		t.Fatalf("conf before the snapshot claimed known")
	}
	if cs, _ := n.confAt(3); !slices.Equal(cs.Voters, ids(1, 2, 3, 4)) {
		t.Fatalf("conf at the snapshot: %+v", cs)
	}
	n.compactConf(4)
	wantConf(t, n, ids(1, 3, 4), nil)
	if cs, ok := n.confAt(4); !ok || !slices.Equal(cs.Voters, ids(1, 3, 4)) || len(n.confLog) != 0 {
		t.Fatalf("after compacting to 4: %+v %v %v", cs, ok, n.confLog)
	}
	// A malformed conf-change entry in the recovered log is refused.
	cfg.Entries = slices.Clone(cfg.Entries)
	cfg.Entries[0].Data = []byte{9}
	if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("garbage conf change: %v", err)
	}
	// A bad snapshot configuration is refused.
	cfg.Entries = nil
	cfg.Snapshot.Conf = raftmsg.ConfState{Learners: ids(1)}
	if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("snapshot without voters: %v", err)
	}
}

// Thesis §4.2.1: a new server joins with an empty log; the leader brings
// it up to date; after promotion it can be elected, and the original
// members can be removed one at a time, the leader last, leaving a
// working cluster of new members only.
func TestReplaceEveryMember(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	for _, id := range ids(4, 5, 6) {
		c.addNode(id)
		c.mustChange(1, raftmsg.ConfChangeAddLearner, id)
		c.mustChange(1, raftmsg.ConfChangePromote, id)
	}
	wantConf(t, c.nodes[1], ids(1, 2, 3, 4, 5, 6), nil)
	c.mustChange(1, raftmsg.ConfChangeRemove, 2)
	c.mustChange(1, raftmsg.ConfChangeRemove, 3)
	c.mustChange(1, raftmsg.ConfChangeRemove, 1)
	for i := 0; i < 5; i++ {
		for _, id := range ids(4, 5, 6) {
			c.tick(id, 1)
		}
		c.settle()
	}
	var leader raftmsg.NodeID
	for _, id := range ids(4, 5, 6) {
		wantConf(t, c.nodes[id], ids(4, 5, 6), nil)
		if c.nodes[id].SoftState().Role == RoleLeader {
			leader = id
		}
	}
	if leader == 0 {
		t.Fatalf("no leader among the new members")
	}
	for _, id := range ids(1, 2, 3) {
		if !c.nodes[id].SoftState().Removed {
			t.Fatalf("node %d not told it was removed: %+v", id, c.nodes[id].SoftState())
		}
	}
	if err := c.propose(leader, 42); err != nil {
		t.Fatal(err)
	}
	c.settle()
	for _, id := range ids(4, 5, 6) {
		if got := c.requestIDs(id); !slices.Contains(got, 42) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
}

// Thesis §4.2.2: a leader outside C_new manages the cluster until C_new
// commits. If the leader of voters {1,2} appends its removal, loses
// leadership before node 2 has the entry, node 2 cannot win (node 1's log
// is longer); so node 1, whose removal is uncommitted, campaigns in C_new
// = {2} without counting itself, wins with node 2's vote, commits the
// removal and steps down.
func TestUncommittedSelfRemovalStillCampaigns(t *testing.T) {
	c := newCluster(t, 2)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 2 }
	if err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangeRemove, 1), 5); err != nil {
		t.Fatal(err)
	}
	c.settle()
	// Check-quorum: node 1 hears nobody of {2} and steps down.
	c.tick(1, 2*c.nodes[1].cfg.ElectionTicks)
	c.settle()
	if r := c.nodes[1].SoftState().Role; r == RoleLeader {
		t.Fatalf("node 1 still leads without a quorum")
	}
	c.cut = nil
	for i := 0; i < 100 && !c.nodes[1].SoftState().Removed; i++ {
		c.tick(1, 1)
		c.tick(2, 1)
		c.settle()
	}
	if ss := c.nodes[1].SoftState(); !ss.Removed || ss.Role == RoleLeader {
		t.Fatalf("node 1: %+v", ss)
	}
	wantConf(t, c.nodes[2], ids(2), nil)
	for i := 0; i < 100 && c.nodes[2].SoftState().Role != RoleLeader; i++ {
		c.tick(2, 1)
		c.settle()
	}
	if err := c.propose(2, 9); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.requestIDs(2); !slices.Contains(got, 9) {
		t.Fatalf("node 2 alone did not commit: %v", got)
	}
}

// Thesis §4.2.3: "removed servers (those not in C_new) can disrupt the
// cluster": one that never learns its removal committed times out and
// asks for votes, here with a log as up to date as anyone's. Leader
// stickiness keeps the cluster's term and leader: servers that hear from
// their leader ignore it. The leader stops tracking it after an election
// timeout of silence.
func TestRemovedServerCannotDisrupt(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	if err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangeRemove, 3), 1); err != nil {
		t.Fatal(err)
	}
	// Node 3 gets the entry, but never hears that it committed.
	for _, m := range c.collect() {
		if err := c.nodes[m.To].Step(m); err != nil {
			t.Fatal(err)
		}
	}
	c.cut = func(m raftmsg.Message) bool {
		return m.From == 1 && m.To == 3 && (m.Type == raftmsg.MsgApp || m.Type == raftmsg.MsgHeartbeat)
	}
	c.settle()
	wantConf(t, c.nodes[1], ids(1, 2), nil)
	wantConf(t, c.nodes[3], ids(1, 2), nil)
	if c.nodes[3].SoftState().Removed || c.nodes[1].HardState().Commit != c.nodes[3].LastIndex() {
		t.Fatalf("node 3 %+v, leader commit %d, node 3 last %d", c.nodes[3].SoftState(), c.nodes[1].HardState().Commit, c.nodes[3].LastIndex())
	}
	term := c.nodes[1].SoftState().Term
	var asked bool
	for i := 0; i < 5*c.nodes[3].cfg.ElectionTicks; i++ {
		c.tick(3, 1)
		c.tick(1, 1)
		for _, m := range c.collect() {
			asked = asked || m.From == 3 && m.Type == raftmsg.MsgPreVote
			if !c.cut(m) {
				if err := c.nodes[m.To].Step(m); err != nil {
					t.Fatal(err)
				}
			}
		}
		c.settle()
	}
	if !asked {
		t.Fatalf("the removed server never asked for votes: nothing was tested")
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleLeader || ss.Term != term {
		t.Fatalf("the removed server disrupted the leader: %+v (term was %d)", ss, term)
	}
	if ss := c.nodes[2].SoftState(); ss.Leader != 1 || ss.Term != term {
		t.Fatalf("the removed server disrupted follower 2: %+v", ss)
	}
	if i := c.nodes[1].pos(3); i >= 0 {
		t.Fatalf("leader still tracks the silent removed node")
	}
	if err := c.nodes[1].CheckInvariants(true); err != nil {
		t.Fatal(err)
	}
}

// A member whose removal reaches it only inside a snapshot (the entry was
// compacted away) still learns it was removed; a joiner given a snapshot
// taken before its addition does not think so.
func TestRemovedThroughSnapshot(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.From == 3 }
	c.mustChange(1, raftmsg.ConfChangeRemove, 3)
	leader := c.nodes[1]
	meta, err := leader.SnapshotMeta(leader.Status().Applied)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(meta.Conf.Voters, ids(1, 2)) {
		t.Fatalf("snapshot conf %+v", meta.Conf)
	}
	f := c.nodes[3]
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 3, Term: leader.SoftState().Term, Snapshot: meta}); err != nil {
		t.Fatal(err)
	}
	if ss := f.SoftState(); !ss.Removed {
		t.Fatalf("node 3 after a snapshot without it: %+v", ss)
	}
	// A joiner (not a member of its starting configuration) is not
	// "removed" by a snapshot that predates its addition.
	j := mustNew(t, testConfig(9, 1, 2))
	if err := j.Step(raftmsg.Message{Type: raftmsg.MsgSnap, From: 1, To: 9, Term: leader.SoftState().Term, Snapshot: meta}); err != nil {
		t.Fatal(err)
	}
	if ss := j.SoftState(); ss.Removed {
		t.Fatalf("joiner after an older snapshot: %+v", ss)
	}
	wantConf(t, j, ids(1, 2), nil)
}

// Paper §5.3 (Log Matching) with a sole voter and a learner: the voter
// wins on its own vote, but sends nothing as leader until its term and
// vote are durable. Otherwise it could crash, restart in the old term,
// win that term again and send the learner a different entry under the
// same index and term.
func TestSoleVoterLeadsOnlyOnceItsTermIsDurable(t *testing.T) {
	c := newCluster(t, 1)
	c.elect(1)
	c.nodes[2] = mustNew(t, testConfig(2, 1))
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 2)
	// Restart node 1 from what it persisted (everything: Advance), then
	// let it campaign.
	st := c.nodes[1].Status()
	cfg := testConfig(1, 1)
	cfg.HardState = c.nodes[1].HardState()
	for i := uint64(1); i <= st.LastIndex; i++ {
		var e raftmsg.Entry
		for _, a := range c.applied[1] {
			if a.Index == i {
				e = a
			}
		}
		cfg.Entries = append(cfg.Entries, e)
	}
	cfg.Applied = st.Applied
	n := mustNew(t, cfg)
	for i := 0; i < 100 && n.SoftState().Role == RoleFollower; i++ {
		n.Tick()
	}
	rd := n.Ready()
	if rd.HardState.Term != cfg.HardState.Term+1 || rd.HardState.Vote != 1 {
		t.Fatalf("campaign's hard state %+v", rd.HardState)
	}
	if len(rd.Messages) != 0 || len(rd.Entries) != 0 || n.SoftState().Role == RoleLeader {
		t.Fatalf("sole voter acted as leader before its term was durable: %+v, %v", rd.Messages, n.SoftState())
	}
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	if n.SoftState().Role != RoleLeader {
		t.Fatalf("not leader once its term is durable: %+v", n.SoftState())
	}
	rd = n.Ready()
	if apps := msgsOfType(rd.Messages, raftmsg.MsgApp); len(apps) != 1 || apps[0].To != 2 {
		t.Fatalf("leader's first messages %+v", rd.Messages)
	}
}

// A probe is never lost for good (paper §5.3: the leader retries until the
// follower's log matches). A learner added to an idle leader starts with
// Next one past the leader's last entry, so its first probe is an empty
// append; if that append is lost, the learner's next heartbeat answer must
// make the leader probe again, with no new proposal needed.
func TestLostFirstProbeToLearnerIsResent(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.addNode(4)
	dropped := 0
	c.cut = func(m raftmsg.Message) bool {
		if m.To == 4 && m.Type == raftmsg.MsgApp && dropped == 0 {
			dropped++
			return true
		}
		return false
	}
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
	if dropped != 1 {
		t.Fatalf("dropped %d appends to the learner, want the first one", dropped)
	}
	for i := 0; i < 5 && c.nodes[4].LastIndex() != c.nodes[1].LastIndex(); i++ {
		c.tick(1, c.nodes[1].cfg.HeartbeatTicks)
		c.settle()
	}
	if got, want := c.nodes[4].LastIndex(), c.nodes[1].LastIndex(); got != want {
		t.Fatalf("learner's log ends at %d after 5 heartbeats, leader's at %d", got, want)
	}
}

// Thesis §3.10 with §4.2.1: leadership moves only to a voter of the
// configuration in force. A learner is refused as a target (here, and
// ignored when forwarded), and so is a voter whose removal is appended
// (append-time); the transfer then goes to a voter of C_new.
func TestTransferOnlyToVoters(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.addNode(4)
	c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
	if err := c.nodes[1].TransferLeadership(4); !errors.Is(err, ErrBadTransfer) {
		t.Fatalf("transfer to a learner: %v", err)
	}
	// Forwarded by a follower that still thinks 4 is a voter: ignored.
	if err := c.nodes[1].Step(raftmsg.Message{Type: raftmsg.MsgTransferLeader, From: 2, To: 1, Term: c.nodes[1].SoftState().Term, Hint: 4}); err != nil {
		t.Fatal(err)
	}
	if err := c.propose(1, 1); err != nil {
		t.Fatalf("proposal after a refused transfer: %v", err)
	}
	c.settle()
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	if err := c.nodes[1].ProposeConfChange(confChange(raftmsg.ConfChangeRemove, 3), 2); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[1].TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[1].TransferLeadership(3); !errors.Is(err, ErrBadTransfer) {
		t.Fatalf("transfer to a node removed (uncommitted): %v", err)
	}
	c.settle()
	if ss := c.nodes[2].SoftState(); ss.Role != RoleLeader {
		t.Fatalf("transfer to voter 2 of {1,2}: %+v", ss)
	}
	wantConf(t, c.nodes[2], ids(1, 2), ids(4))
}
