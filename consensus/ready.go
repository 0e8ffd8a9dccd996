package consensus

import (
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// Propose appends ents to the replicated log: on the leader at once, on a
// follower by forwarding them to the leader (a refusal there comes back in
// a later Ready's RejectedProposals; a lost forward is noticed only by the
// runtime's request timeout). Each entry must be EntryNormal; the caller
// sets RequestID and Data, the core sets Term and Index. The core keeps
// ents[i].Data (without copying it on the leader): the caller must not
// modify it afterwards. The ents slice itself is not retained.
//
// It returns nil when accepted (appended or forwarded), ErrNoLeader,
// ErrNotQuorum or ErrOverloaded when refused at once (see RejectReasonOf),
// or ErrInvalidProposal. A refused batch is not appended anywhere.
func (n *Node) Propose(ents []raftmsg.Entry) error {
	if len(ents) == 0 {
		return fmt.Errorf("%w: no entries", ErrInvalidProposal)
	}
	for i := range ents {
		if ents[i].Type != raftmsg.EntryNormal {
			return fmt.Errorf("%w: entry %d has type %v", ErrInvalidProposal, i, ents[i].Type)
		}
	}
	switch {
	case n.role == RoleLeader:
		return n.appendProposals(ents, false)
	case n.role == RoleFollower && n.lead != raftmsg.None:
		fwd := make([]raftmsg.Entry, len(ents))
		copy(fwd, ents)
		n.send(raftmsg.Message{Type: raftmsg.MsgProp, To: n.lead, Entries: fwd})
		return nil
	default:
		return ErrNoLeader
	}
}

// appendProposals is the leader's proposal path: it allocates nothing in
// steady state when copyData is false.
func (n *Node) appendProposals(ents []raftmsg.Entry, copyData bool) error {
	if n.role != RoleLeader {
		return ErrNoLeader
	}
	if n.leadTransferee != raftmsg.None {
		return ErrTransferring
	}
	// Refuse quickly rather than queue behind a partition: half an election
	// timeout without a quorum's answer, while heartbeats go out every
	// HeartbeatTicks, means the quorum is probably gone (check-quorum will
	// make it certain at a full timeout).
	if !n.quorumHeardWithin(max(n.cfg.ElectionTicks/2, 2*n.cfg.HeartbeatTicks+1)) {
		return ErrNotQuorum
	}
	var bytes uint64
	for i := range ents {
		bytes += ents[i].PayloadBytes()
	}
	if n.uncommittedBytes > 0 && n.uncommittedBytes+bytes > n.cfg.MaxUncommittedBytes {
		return ErrOverloaded
	}
	if copyData {
		ents = copyEntries(ents)
	}
	last := n.log.lastIndex()
	for i, e := range ents {
		e.Term, e.Index = n.term, last+1+uint64(i)
		n.log.ents = append(n.log.ents, e)
	}
	n.uncommittedBytes += bytes
	n.bcastAppend(false)
	return nil
}

// HasReady reports whether Ready would return anything to do.
func (n *Node) HasReady() bool {
	return n.softState() != n.prevSoft ||
		n.hardState() != n.prevHard ||
		n.log.unstableFrom <= n.log.lastIndex() ||
		len(n.msgs) > 0 || len(n.msgsAfter) > 0 || len(n.rejected) > 0 ||
		len(n.readStates) > 0 || len(n.rejectedReads) > 0 || n.confChanged || n.pendingSnapshot ||
		n.log.applying < min(n.log.committed, n.log.persisted)
}

// Ready returns everything accumulated since the previous Ready and marks
// it handed over. Call it only when HasReady is true, or accept an empty
// batch (which still takes a Seq and must still be acknowledged).
//
// Lifetimes: Messages, RejectedProposals, ReadStates and RejectedReads are
// valid until the next call to Ready; MessagesAfterPersist until AckPersisted(rd.Seq or later)
// returns; Entries and CommittedEntries are never modified by the core and
// stay valid as long as the runtime holds them. The runtime must modify
// none of them and must not append to them.
func (n *Node) Ready() Ready {
	n.readySeq++
	rd := Ready{Seq: n.readySeq, SoftState: n.softState()}
	n.prevSoft = rd.SoftState
	if hs := n.hardState(); hs != n.prevHard {
		rd.HardState = hs
		n.prevHard = hs
	}
	if n.pendingSnapshot {
		rd.Snapshot = n.snapshotMetaClone()
		n.pendingSnapshot = false
	}
	if last := n.log.lastIndex(); n.log.unstableFrom <= last {
		rd.Entries = n.log.slice(n.log.unstableFrom, last+1)
		n.log.unstableFrom = last + 1
		n.pendingPersist.push(persistRecord{seq: rd.Seq, lastIndex: last})
	}
	if hi := min(n.log.committed, n.log.persisted); n.log.applying < hi {
		lo := n.log.applying + 1
		end, bytes := lo, uint64(0)
		for end <= hi {
			b := n.log.ents[end-n.log.snapIndex-1].PayloadBytes()
			if end > lo && bytes+b > n.cfg.MaxApplyBytes {
				break
			}
			bytes += b
			end++
		}
		rd.CommittedEntries = n.log.slice(lo, end)
		n.log.applying = end - 1
	}
	if len(n.msgs) > 0 {
		rd.Messages = n.msgs
		n.msgs, n.spareMsgs = n.spareMsgs[:0], n.msgs
	}
	if len(n.msgsAfter) > 0 {
		rd.MessagesAfterPersist = n.msgsAfter
		n.heldAfter.push(heldMsgs{seq: rd.Seq, msgs: n.msgsAfter})
		n.msgsAfter = nil
		if k := len(n.freeAfter); k > 0 {
			n.msgsAfter = n.freeAfter[k-1][:0]
			n.freeAfter = n.freeAfter[:k-1]
		}
	}
	if len(n.rejected) > 0 {
		rd.RejectedProposals = n.rejected
		n.rejected, n.spareRejected = n.spareRejected[:0], n.rejected
	}
	if len(n.readStates) > 0 {
		rd.ReadStates = n.readStates
		n.readStates, n.spareReadStates = n.spareReadStates[:0], n.readStates
	}
	if len(n.rejectedReads) > 0 {
		rd.RejectedReads = n.rejectedReads
		n.rejectedReads, n.spareRejReads = n.spareRejReads[:0], n.rejectedReads
	}
	if n.confChanged {
		cs := n.ConfState()
		rd.ConfState = &cs
		n.confChanged = false
	}
	// Heartbeats handed out: reads arriving from now on need a new round.
	if n.readRoundOpen {
		rd.HeartbeatRound = n.readRound
	}
	n.readRoundOpen = false
	return rd
}

// capPendingPersist records that entries after index were replaced: a
// persistence still in progress makes durable at most up to index of the
// current log.
func (n *Node) capPendingPersist(index uint64) {
	for i := 0; i < n.pendingPersist.len(); i++ {
		if r := n.pendingPersist.at(i); r.lastIndex > index {
			r.lastIndex = index
		}
	}
}

// dropAcksAbove withdraws the append acknowledgements not yet handed out
// that claim entries after index, which a truncation (or a snapshot) has
// just replaced: they would leave only once the Ready that removed those
// entries is durable, and a stale leader could count them toward a commit
// (paper Figure 2: respond only with what stable storage holds).
// Acknowledgements already handed out leave once their own Ready is
// durable, when they still hold.
func (n *Node) dropAcksAbove(index uint64) {
	n.msgsAfter = slices.DeleteFunc(n.msgsAfter, func(m raftmsg.Message) bool {
		return m.Type == raftmsg.MsgAppResp && !m.Reject && m.Index > index
	})
}

// AckPersisted tells the node that the HardState and Entries of every
// Ready with Seq <= seq are durable (the runtime persists Readys in order).
// The runtime must have sent (or copied) those Readys'
// MessagesAfterPersist before calling it: their buffers are reused after.
// It may let the leader commit, so check HasReady afterwards.
func (n *Node) AckPersisted(seq uint64) error {
	if seq < n.ackedSeq || seq > n.readySeq {
		return fmt.Errorf("%w: persisted seq %d, acknowledged %d, issued %d", ErrBadAck, seq, n.ackedSeq, n.readySeq)
	}
	n.ackedSeq = seq
	for n.pendingPersist.len() > 0 && n.pendingPersist.at(0).seq <= seq {
		r := n.pendingPersist.pop()
		n.log.persisted = max(n.log.persisted, r.lastIndex)
	}
	for n.heldAfter.len() > 0 && n.heldAfter.at(0).seq <= seq {
		h := n.heldAfter.pop()
		clear(h.msgs) // drop references to entries
		n.freeAfter = append(n.freeAfter, h.msgs[:0])
	}
	if n.selfElectSeq != 0 && seq >= n.selfElectSeq && n.role == RoleCandidate {
		n.becomeLeader() // see startElectionWith: the term is durable now
	}
	if n.role == RoleLeader {
		if n.selfPos >= 0 {
			n.prs[n.selfPos].Match = n.log.persisted
		}
		if n.maybeCommit() {
			n.bcastAppend(true)
			n.maybeStepDownRemoved()
		}
	}
	return nil
}

// AckApplied tells the node that the state machine applied every entry up
// to index (which must have been handed out in CommittedEntries).
func (n *Node) AckApplied(index uint64) error {
	if index < n.log.applied && index <= n.log.snapIndex {
		// Entries handed out before an installed snapshot, applied late:
		// the snapshot already counts as applied.
		return nil
	}
	if index < n.log.applied || index > n.log.applying {
		return fmt.Errorf("%w: applied %d, previously %d, handed out up to %d", ErrBadAck, index, n.log.applied, n.log.applying)
	}
	n.log.applied = index
	return nil
}

// Advance acknowledges a whole Ready at once, for a runtime that persists,
// sends and applies each Ready before taking the next.
func (n *Node) Advance(rd Ready) error {
	if err := n.AckPersisted(rd.Seq); err != nil {
		return err
	}
	if k := len(rd.CommittedEntries); k > 0 {
		return n.AckApplied(rd.CommittedEntries[k-1].Index)
	}
	return nil
}

// PeerStatus is the leader's view of one member.
type PeerStatus struct {
	ID raftmsg.NodeID
	// Learner: receives the log but does not vote (promote it once Match
	// is close to the leader's LastIndex).
	Learner       bool
	Match, Next   uint64
	State         tracker.State
	RecentActive  bool // heard from within an election timeout
	InflightMsgs  int
	InflightBytes uint64
}

// Status is a snapshot of the node's state for /v1/cluster and metrics.
type Status struct {
	ID        raftmsg.NodeID
	Role      Role
	Leader    raftmsg.NodeID
	Term      uint64
	Vote      raftmsg.NodeID
	Commit    uint64
	Applied   uint64
	Persisted uint64
	LastIndex uint64
	// SnapshotIndex is the index of the newest snapshot (0: none);
	// FirstIndex = SnapshotIndex+1 is the first entry kept in memory.
	SnapshotIndex, FirstIndex uint64
	// Peers is filled on the leader only, one per voter and learner of
	// the configuration in force (itself included while a member, with
	// Match = its durable index).
	Peers []PeerStatus
	// Conf is the configuration in force.
	Conf raftmsg.ConfState
}

// Status returns the node's state. It allocates; do not call it per entry.
func (n *Node) Status() Status {
	s := Status{ID: n.id, Role: n.role, Leader: n.lead, Term: n.term, Vote: n.vote,
		Commit: n.log.committed, Applied: n.log.applied, Persisted: n.log.persisted, LastIndex: n.log.lastIndex(),
		Conf: n.ConfState(), SnapshotIndex: n.log.snapIndex, FirstIndex: n.log.snapIndex + 1}
	if n.role == RoleLeader {
		for i, pr := range n.prs {
			if n.kinds[i] == kindLeaving {
				continue
			}
			ps := PeerStatus{ID: n.peers[i], Learner: n.kinds[i] == kindLearner, Match: pr.Match, Next: pr.Next, State: pr.State,
				RecentActive: i == n.selfPos || n.ticks-pr.LastHeardTick < uint64(n.cfg.ElectionTicks),
				InflightMsgs: pr.Inflights.Count(), InflightBytes: pr.Inflights.Bytes()}
			if i == n.selfPos {
				ps.Match, ps.Next = n.log.persisted, n.log.lastIndex()+1
			}
			s.Peers = append(s.Peers, ps)
		}
	}
	return s
}
