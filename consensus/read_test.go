package consensus

import (
	"errors"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Thesis §6.4 step 1: "If the leader has not yet marked an entry from its
// current term committed, it waits until it has done so."
func TestReadIndexWaitsForTermCommit(t *testing.T) {
	c := newCluster(t, 3)
	c.cut = func(m raftmsg.Message) bool { return m.Type == raftmsg.MsgAppResp }
	c.elect(1) // elected, but its no-op cannot commit
	if err := c.nodes[1].ReadIndex(7); !errors.Is(err, ErrNotReady) || RejectReasonOf(err) != raftmsg.RejectNotReady {
		t.Fatalf("read before the no-op committed: %v", err)
	}
	c.cut = nil
	c.tick(1, 1)
	c.settle()
	if err := c.nodes[1].ReadIndex(7); err != nil {
		t.Fatalf("read after the no-op committed: %v", err)
	}
}

// Thesis §6.4 steps 2-3: the leader records its commit index, then confirms
// leadership with a round of heartbeats acknowledged by a majority; reads
// arriving together share one round.
func TestReadIndexConfirmsWithOneRound(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	n := c.nodes[1]
	commit := n.HardState().Commit
	for id := uint64(1); id <= 3; id++ {
		if err := n.ReadIndex(id); err != nil {
			t.Fatal(err)
		}
	}
	rd := n.Ready()
	hbs := msgsOfType(rd.Messages, raftmsg.MsgHeartbeat)
	if len(hbs) != 2 || len(rd.ReadStates) != 0 {
		t.Fatalf("%d heartbeats and %d read states before any answer; want one round of 2 and none", len(hbs), len(rd.ReadStates))
	}
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	// One follower's answer makes a majority with the leader.
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, From: 2, To: 1, Term: hbs[0].Term, Context: hbs[0].Context}); err != nil {
		t.Fatal(err)
	}
	rd = n.Ready()
	if len(rd.ReadStates) != 3 {
		t.Fatalf("read states %+v, want all three", rd.ReadStates)
	}
	for _, rs := range rd.ReadStates {
		if rs.Index != commit {
			t.Fatalf("read state %+v, want index %d", rs, commit)
		}
	}
	// A read arriving after the round left needs a new round: an answer
	// to the old one does not confirm it.
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	if err := n.ReadIndex(4); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, From: 3, To: 1, Term: hbs[0].Term, Context: hbs[0].Context}); err != nil {
		t.Fatal(err)
	}
	if rd := n.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("read confirmed by an older round: %+v", rd.ReadStates)
	}
}

// A follower asks the leader for the read index (thesis §6.4: "followers
// could ... request the current readIndex from the leader").
func TestReadIndexFromFollower(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	if err := c.propose(1, 5); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if err := c.nodes[2].ReadIndex(77); err != nil {
		t.Fatal(err)
	}
	c.settle()
	got := c.reads[2]
	if len(got) != 1 || got[0].RequestID != 77 || got[0].Index != c.nodes[1].HardState().Commit {
		t.Fatalf("follower read states %+v, leader commit %d", got, c.nodes[1].HardState().Commit)
	}
}

// A leader that loses leadership refuses its pending reads.
func TestReadIndexAbortedOnStepDown(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	n := c.nodes[1]
	if err := n.ReadIndex(3); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: 50}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.ReadStates) != 0 || len(rd.RejectedReads) != 1 || rd.RejectedReads[0] != (RejectedRead{RequestID: 3, Reason: raftmsg.RejectNoLeader}) {
		t.Fatalf("after stepping down: states %+v rejected %+v", rd.ReadStates, rd.RejectedReads)
	}
	if err := n.ReadIndex(4); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("read without a leader: %v", err)
	}
}
