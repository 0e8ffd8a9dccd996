package consensus

import (
	"errors"
	"fmt"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// ErrTransferring: a leadership transfer is in progress; proposals are
// refused until it completes or aborts (thesis §3.10: "the prior leader
// stops accepting new client requests").
var ErrTransferring = errors.New("consensus: leadership transfer in progress")

// ErrBadTransfer: the transfer target is not a voter.
var ErrBadTransfer = errors.New("consensus: bad transfer target")

// transferCampaign marks, in a MsgVote's Context, an election started by
// MsgTimeoutNow: voters grant it even while they hear from the current
// leader (leader stickiness would otherwise refuse, thesis §3.10, §4.2.3).
const transferCampaign = 1

// TransferLeadership asks for leadership to move to voter `to` (thesis
// §3.10). On the leader: it refuses new proposals, brings `to` up to date,
// then sends it MsgTimeoutNow so that it campaigns at once; the transfer
// aborts if it has not completed within an election timeout. On a
// follower the request is forwarded to the leader. Transferring to the
// current leader is a no-op. Watch SoftState for the outcome.
func (n *Node) TransferLeadership(to raftmsg.NodeID) error {
	if !n.isVoter(to) {
		return fmt.Errorf("%w: %d is not a voter", ErrBadTransfer, to)
	}
	switch {
	case n.role == RoleLeader:
		n.startTransfer(to)
		return nil
	case n.role == RoleFollower && n.lead != raftmsg.None:
		n.send(raftmsg.Message{Type: raftmsg.MsgTransferLeader, To: n.lead, Term: n.term, Hint: to})
		return nil
	default:
		return ErrNoLeader
	}
}

func (n *Node) startTransfer(to raftmsg.NodeID) {
	if to == n.id || to == n.leadTransferee || !n.isVoter(to) {
		return
	}
	n.leadTransferee = to
	n.transferElapsed = 0
	n.transferredInTerm = true
	n.maybeSendTimeoutNow()
}

// maybeSendTimeoutNow sends MsgTimeoutNow once the transferee holds the
// whole log (it could not win otherwise), else pushes entries to it.
func (n *Node) maybeSendTimeoutNow() {
	if n.leadTransferee == raftmsg.None {
		return
	}
	i := n.pos(n.leadTransferee)
	if i < 0 || n.kinds[i] != kindVoter {
		// The target left the voters (a conf change): give up.
		n.leadTransferee = raftmsg.None
		return
	}
	if n.prs[i].Match == n.log.lastIndex() {
		n.send(raftmsg.Message{Type: raftmsg.MsgTimeoutNow, To: n.leadTransferee, Term: n.term})
		return
	}
	n.maybeSendAppend(i, false)
}

// tickTransfer aborts a transfer that has not completed within an
// election timeout, so that a dead target does not block proposals.
func (n *Node) tickTransfer() {
	if n.leadTransferee == raftmsg.None {
		return
	}
	n.transferElapsed++
	if n.transferElapsed >= n.cfg.ElectionTicks {
		n.leadTransferee = raftmsg.None
	}
}

// handleTimeoutNow: the leader tells us to campaign now, skipping the
// pre-vote (the leader itself vouches that we are up to date).
func (n *Node) handleTimeoutNow(m *raftmsg.Message) {
	if n.role != RoleFollower || m.From != n.lead || !n.mayCampaign() {
		return
	}
	n.startElectionWith(transferCampaign)
}
