package consensus

import (
	"errors"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// ErrNotReady: a new leader has not yet committed an entry of its term, so
// its commit index may be behind its predecessor's (thesis §6.4 step 1).
var ErrNotReady = errors.New("consensus: leader has not committed an entry of its term yet")

// MaxPendingReads bounds the reads waiting for a heartbeat round on a
// leader; beyond it ReadIndex refuses with ErrOverloaded.
const MaxPendingReads = 4096

// ReadState says that the read RequestID may be served from the state
// machine once it has applied at least Index (thesis §6.4 steps 3-4).
type ReadState struct {
	RequestID uint64
	Index     uint64
}

// RejectedRead names a read refused after ReadIndex returned (the leader
// lost leadership, or refused a forwarded read).
type RejectedRead struct {
	RequestID uint64
	Reason    raftmsg.RejectReason
}

type pendingRead struct {
	requestID uint64
	from      raftmsg.NodeID // None: asked on this node
	index     uint64
	round     uint64
}

// ReadIndex starts a linearizable read (thesis §6.4). On the leader it
// records the commit index and confirms leadership with a heartbeat round
// that many reads share; a follower asks its leader. The answer comes back
// in a later Ready's ReadStates (serve the read once applied >= Index) or
// RejectedReads. It returns ErrNoLeader, ErrNotReady, ErrNotQuorum or
// ErrOverloaded when it refuses at once (RejectReasonOf maps them).
func (n *Node) ReadIndex(requestID uint64) error {
	switch {
	case n.role == RoleLeader:
		return n.leaderRead(requestID, raftmsg.None)
	case n.role == RoleFollower && n.lead != raftmsg.None:
		n.send(raftmsg.Message{Type: raftmsg.MsgReadIndex, To: n.lead, Term: n.term, Context: requestID})
		return nil
	default:
		return ErrNoLeader
	}
}

func (n *Node) leaderRead(requestID uint64, from raftmsg.NodeID) error {
	if t, _ := n.log.term(n.log.committed); t != n.term {
		return ErrNotReady
	}
	if !n.quorumHeardWithin(max(n.cfg.ElectionTicks/2, 2*n.cfg.HeartbeatTicks+1)) {
		return ErrNotQuorum
	}
	if n.numVoters == 1 && n.selfVoter() {
		n.answerRead(pendingRead{requestID: requestID, from: from, index: n.log.committed})
		return nil
	}
	if n.pendingReads.len() >= MaxPendingReads {
		return ErrOverloaded
	}
	n.pendingReads.push(pendingRead{requestID: requestID, from: from, index: n.log.committed, round: n.joinReadRound()})
	return nil
}

// joinReadRound returns the heartbeat round a read arriving now must wait
// for: one whose heartbeats have not left yet, so that its acknowledgements
// prove leadership after the read arrived. Reads between two Readys share
// one round.
func (n *Node) joinReadRound() uint64 {
	if !n.readRoundOpen {
		n.readRound++
		n.readRoundOpen = true
		n.bcastHeartbeat()
	}
	return n.readRound
}

func (n *Node) bcastHeartbeat() {
	for i, pr := range n.prs {
		if i == n.selfPos {
			continue
		}
		pr.AckedRecently = false
		n.send(raftmsg.Message{Type: raftmsg.MsgHeartbeat, To: n.peers[i], Term: n.term,
			Commit: min(pr.Match, n.log.committed), Context: n.readRound})
	}
}

// handleReadAck records that voter i answered heartbeat round `round` and
// releases every read whose round a quorum has now confirmed.
func (n *Node) handleReadAck(i int, round uint64) {
	if round <= n.readAcks[i] {
		return
	}
	n.readAcks[i] = round
	if n.selfPos >= 0 {
		// The leader vouches for every round it has sent (not one still
		// open: with a single voter, its own ack alone confirms a round).
		n.readAcks[n.selfPos] = n.readRound
		if n.readRoundOpen {
			n.readAcks[n.selfPos]--
		}
	}
	// Only voters confirm leadership (learners never vote, §4.2.1).
	confirmed := n.voterQuorumIndex(n.readAcks)
	n.confirmedRound = max(n.confirmedRound, confirmed)
	for n.pendingReads.len() > 0 && n.pendingReads.at(0).round <= confirmed {
		n.answerRead(n.pendingReads.pop())
	}
}

func (n *Node) answerRead(r pendingRead) {
	if r.from == raftmsg.None {
		n.readStates = append(n.readStates, ReadState{RequestID: r.requestID, Index: r.index})
		return
	}
	n.send(raftmsg.Message{Type: raftmsg.MsgReadIndexResp, To: r.from, Term: n.term, Context: r.requestID, Index: r.index})
}

// abortReads refuses every pending read: leadership is lost.
func (n *Node) abortReads() {
	for n.pendingReads.len() > 0 {
		r := n.pendingReads.pop()
		n.refuseRead(r.requestID, r.from, raftmsg.RejectNoLeader)
	}
}

func (n *Node) refuseRead(requestID uint64, from raftmsg.NodeID, reason raftmsg.RejectReason) {
	if from == raftmsg.None {
		n.rejectedReads = append(n.rejectedReads, RejectedRead{RequestID: requestID, Reason: reason})
		return
	}
	n.send(raftmsg.Message{Type: raftmsg.MsgReadIndexResp, To: from, Term: n.term, Context: requestID,
		Reject: true, RejectReason: reason, Hint: n.lead})
}

// stepRead handles the read messages in every role.
func (n *Node) stepRead(m *raftmsg.Message) {
	switch m.Type {
	case raftmsg.MsgReadIndex:
		if n.role != RoleLeader {
			n.refuseRead(m.Context, m.From, raftmsg.RejectNoLeader)
			return
		}
		if err := n.leaderRead(m.Context, m.From); err != nil {
			n.refuseRead(m.Context, m.From, RejectReasonOf(err))
		}
	case raftmsg.MsgReadIndexResp:
		if m.Reject {
			reason := m.RejectReason
			if reason == raftmsg.RejectNone {
				reason = raftmsg.RejectNoLeader
			}
			n.rejectedReads = append(n.rejectedReads, RejectedRead{RequestID: m.Context, Reason: reason})
			return
		}
		n.readStates = append(n.readStates, ReadState{RequestID: m.Context, Index: m.Index})
	}
}
