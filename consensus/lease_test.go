package consensus

import (
	"errors"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Thesis §6.4.1: the lease starts when a heartbeat round that a majority
// answers was sent; the core names the round, the runtime keeps the clock.
func TestLeaseReadNamesTheConfirmedRound(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	n := c.nodes[1]
	if _, _, err := n.LeaseRead(); !errors.Is(err, ErrNotQuorum) {
		t.Fatalf("lease before any answered round: %v", err)
	}
	n.Tick()
	rd := n.Ready()
	hbs := msgsOfType(rd.Messages, raftmsg.MsgHeartbeat)
	if rd.HeartbeatRound == 0 || len(hbs) != 2 || hbs[0].Context != rd.HeartbeatRound {
		t.Fatalf("ready names round %d, heartbeats %+v", rd.HeartbeatRound, hbs)
	}
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, From: 3, To: 1, Term: hbs[0].Term, Context: hbs[0].Context}); err != nil {
		t.Fatal(err)
	}
	index, round, err := n.LeaseRead()
	if err != nil || round != rd.HeartbeatRound || index != n.HardState().Commit {
		t.Fatalf("lease read: index %d round %d err %v; want round %d", index, round, err, rd.HeartbeatRound)
	}
	if _, _, err := c.nodes[2].LeaseRead(); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("lease read on a follower: %v", err)
	}
}

// Thesis §6.4.1 and §3.10: the old leader drops its lease when a transfer
// starts (the transferee's election ignores stickiness).
func TestLeaseDroppedByTransfer(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.tick(1, 1)
	c.settle()
	if _, _, err := c.nodes[1].LeaseRead(); err != nil {
		t.Fatal(err)
	}
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.nodes[1].LeaseRead(); !errors.Is(err, ErrTransferring) {
		t.Fatalf("lease during a transfer: %v", err)
	}
	for i := 0; i < 12; i++ { // the transfer aborts, the lease stays gone
		c.tick(1, 1)
		c.settle()
	}
	if _, _, err := c.nodes[1].LeaseRead(); !errors.Is(err, ErrTransferring) {
		t.Fatalf("lease after an aborted transfer in the same term: %v", err)
	}
}

// A new leader has no lease until its no-op commits (its commit index may
// be behind its predecessor's).
func TestLeaseWaitsForTermCommit(t *testing.T) {
	c := newCluster(t, 3)
	c.cut = func(m raftmsg.Message) bool { return m.Type == raftmsg.MsgAppResp }
	c.elect(1)
	c.tick(1, 1)
	c.settle()
	if _, _, err := c.nodes[1].LeaseRead(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("lease before the no-op committed: %v", err)
	}
}

// A restarted node refuses votes for an election timeout: before the crash
// it may have answered a heartbeat that some leader's lease counts on.
func TestRestartedNodeQuietForAnElectionTimeout(t *testing.T) {
	cfg := testConfig(2, three...)
	cfg.HardState = raftmsg.HardState{Term: 3}
	cfg.Entries = entriesWithTerms(1, 3)
	n := mustNew(t, cfg)
	vote := raftmsg.Message{Type: raftmsg.MsgVote, From: 3, To: 2, Term: 4, Index: 2, LogTerm: 3}
	if err := n.Step(vote); err != nil {
		t.Fatal(err)
	}
	if hs := n.HardState(); hs.Term != 3 || hs.Vote != raftmsg.None {
		t.Fatalf("restarted node voted at once: %+v", hs)
	}
	for i := 0; i < cfg.ElectionTicks; i++ {
		n.Tick()
	}
	vote.Term = 5 // its own pre-vote may have run meanwhile; a newer candidate
	if err := n.Step(vote); err != nil {
		t.Fatal(err)
	}
	if hs := n.HardState(); hs.Term != 5 || hs.Vote != 3 {
		t.Fatalf("after the quiet period: %+v", hs)
	}
	// A node bootstrapping with no hard state answered no one: no quiet.
	f := mustNew(t, testConfig(2, three...))
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgVote, From: 3, To: 2, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if hs := f.HardState(); hs.Vote != 3 {
		t.Fatalf("fresh node did not vote: %+v", hs)
	}
}

// Heartbeat answers extend leases, so they wait for the term they carry to
// be durable.
func TestHeartbeatAnswerAfterPersist(t *testing.T) {
	n := mustNew(t, testConfig(2, three...))
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeat, From: 1, To: 2, Term: 1}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(msgsOfType(rd.Messages, raftmsg.MsgHeartbeatResp)) != 0 || len(msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgHeartbeatResp)) != 1 || rd.HardState.Term != 1 {
		t.Fatalf("ready %+v", rd)
	}
}

// Found by the simulator (seed 17086 of a 20,000-seed run): a follower
// that had just answered its leader's heartbeat learnt a higher term from a
// stale pre-vote rejection, and then voted in that term while the leader
// still counted on it for its lease. Stickiness holds at any term.
func TestStickinessSurvivesTermBumpFromStaleResponse(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	f := c.nodes[3]
	term := f.SoftState().Term
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeat, From: 1, To: 3, Term: term}); err != nil {
		t.Fatal(err)
	}
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgPreVoteResp, From: 2, To: 3, Term: term + 1, Reject: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Step(raftmsg.Message{Type: raftmsg.MsgVote, From: 2, To: 3, Term: term + 1, Index: 9, LogTerm: term}); err != nil {
		t.Fatal(err)
	}
	if hs := f.HardState(); hs.Vote != raftmsg.None {
		t.Fatalf("voted within the lease after a term bump: %+v", hs)
	}
}
