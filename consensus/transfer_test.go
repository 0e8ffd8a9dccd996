package consensus

import (
	"errors"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Thesis §3.10: the leader brings the target up to date, then sends it
// TimeoutNow; the target campaigns at once and wins, even though the other
// followers still hear from the old leader.
func TestTransferToCaughtUpFollower(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	term := c.nodes[1].SoftState().Term
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if ss := c.nodes[3].SoftState(); ss.Role != RoleLeader || ss.Term != term+1 {
		t.Fatalf("target after transfer: %+v", ss)
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleFollower || ss.Leader != 3 {
		t.Fatalf("old leader after transfer: %+v", ss)
	}
}

// A lagging target is caught up first; meanwhile proposals are refused
// quickly rather than queued.
func TestTransferCatchesUpTargetFirst(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.From == 3 }
	for i := uint64(1); i <= 5; i++ {
		if err := c.propose(1, i); err != nil {
			t.Fatal(err)
		}
		c.settle()
	}
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if err := c.propose(1, 6); !errors.Is(err, ErrTransferring) || RejectReasonOf(err) != raftmsg.RejectTransferring {
		t.Fatalf("proposal during a transfer: %v", err)
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleLeader {
		t.Fatalf("transferred to an unreachable target: %+v", ss)
	}
	c.cut = nil
	c.tick(1, 1) // heartbeat: node 3 answers, gets the log, then TimeoutNow
	c.settle()
	if ss := c.nodes[3].SoftState(); ss.Role != RoleLeader {
		t.Fatalf("target after catching up: %+v", ss)
	}
	if got := c.nodes[3].LastIndex(); got < 6 {
		t.Fatalf("new leader's log ends at %d", got)
	}
}

// A transfer that does not complete within an election timeout aborts, and
// proposals are accepted again.
func TestTransferAbortsAfterElectionTimeout(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.To == 3 }
	if err := c.propose(1, 1); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		c.tick(1, 1)
		c.settle()
	}
	if err := c.propose(1, 2); err != nil {
		t.Fatalf("proposal after the transfer timed out: %v", err)
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleLeader {
		t.Fatalf("leader after an aborted transfer: %+v", ss)
	}
}

// A follower forwards the request to its leader.
func TestTransferForwardedByFollower(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	if err := c.nodes[2].TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if ss := c.nodes[2].SoftState(); ss.Role != RoleLeader {
		t.Fatalf("node 2 after asking for leadership: %+v", ss)
	}
	if err := c.nodes[2].TransferLeadership(9); !errors.Is(err, ErrBadTransfer) {
		t.Fatalf("transfer to a non-voter: %v", err)
	}
}

// Without the transfer flag, a vote request from a node that the followers
// think is cut off is ignored while they hear from their leader.
func TestStickinessIgnoresUnforcedVotes(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	term := c.nodes[1].SoftState().Term
	if err := c.nodes[2].Step(raftmsg.Message{Type: raftmsg.MsgVote, From: 3, To: 2, Term: term + 1, Index: 99, LogTerm: term}); err != nil {
		t.Fatal(err)
	}
	if ss := c.nodes[2].SoftState(); ss.Term != term || ss.Leader != 1 {
		t.Fatalf("follower in lease after an unforced vote request: %+v", ss)
	}
	if err := c.nodes[2].Step(raftmsg.Message{Type: raftmsg.MsgVote, From: 3, To: 2, Term: term + 1, Index: 99, LogTerm: term, Context: transferCampaign}); err != nil {
		t.Fatal(err)
	}
	if hs := c.nodes[2].HardState(); hs.Term != term+1 || hs.Vote != 3 {
		t.Fatalf("follower after a forced vote request: %+v", hs)
	}
}
