package consensus

import (
	"errors"
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// Snapshots and log compaction (Raft paper §7, thesis §5.1-5.4).
//
// The application snapshots its own state at an applied index, asks
// SnapshotMeta for the index's term and configuration, makes the snapshot
// durable, and calls Compact: the core then drops its entries up to that
// index and sends the snapshot (by its meta; the runtime streams the file)
// to every follower whose next entry is gone. A follower installs a
// snapshot only if it is newer than its commit index: committed entries
// must never be lost, and a snapshot at or below the commit index carries
// nothing new (thesis §5.4.2 on stale InstallSnapshot requests).

// ErrBadSnapshot wraps every SnapshotMeta and Compact refusal.
var ErrBadSnapshot = errors.New("consensus: bad snapshot")

// SnapshotMeta returns the meta of a snapshot of the state machine at
// index: its term and the configuration in force there (thesis §5.1: the
// snapshot must carry the latest configuration as of its last index). index
// must be at least the current snapshot's index and at most the applied
// index acknowledged by AckApplied.
func (n *Node) SnapshotMeta(index uint64) (raftmsg.SnapshotMeta, error) {
	if index < n.log.snapIndex || index > n.log.applied || index == 0 {
		return raftmsg.SnapshotMeta{}, fmt.Errorf("%w: index %d outside [%d, applied %d]", ErrBadSnapshot, index, n.log.snapIndex, n.log.applied)
	}
	if index == n.log.snapIndex {
		return n.snapshotMetaClone(), nil
	}
	if n.confHistoryUnknown {
		return raftmsg.SnapshotMeta{}, fmt.Errorf("%w: joined without a snapshot, the configuration at %d is not known here", ErrBadSnapshot, index)
	}
	term, ok := n.log.term(index)
	if !ok {
		panic(fmt.Sprintf("consensus: applied index %d not in the log (%d, %d]", index, n.log.snapIndex, n.log.lastIndex()))
	}
	return raftmsg.SnapshotMeta{Index: index, Term: term, Conf: n.snapshotConfAt(index)}, nil
}

// snapshotConfAt is the configuration in force at index, exact even when
// the base configuration is not the one at the log's start: a restarted
// or joining node is given the member table's current voters as its base
// (doc.go, Membership), which makes the final configuration right but can
// make confAt wrong at earlier indexes, for members whose status changed
// after index. Each member's status at index is:
//
//  1. set by the last conf-change entry at or before index naming it
//     (entries set a status, whatever the base);
//  2. else implied by the first entry after index naming it, since the
//     proposer checked it against the configuration in force then, which
//     for this member is the one at index: an added learner was absent, a
//     promoted one a learner, a removed one a member (its base status, or
//     a voter when the base no longer holds it: the only members no entry
//     since the log's start names are the bootstrap voters, or members
//     of an exact snapshot base);
//  3. else its base status (no entry ever changed it).
//
// With an exact base this equals confAt(index).
func (n *Node) snapshotConfAt(index uint64) raftmsg.ConfState {
	type status uint8
	const (
		absent status = iota
		voter
		learner
	)
	statusIn := func(cs raftmsg.ConfState, id raftmsg.NodeID) status {
		switch {
		case slices.Contains(cs.Voters, id):
			return voter
		case slices.Contains(cs.Learners, id):
			return learner
		}
		return absent
	}
	ids := slices.Concat(n.confBase.Voters, n.confBase.Learners)
	for i := range n.confLog {
		ids = append(ids, n.confLog[i].cc.NodeID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var out raftmsg.ConfState
	for _, id := range ids {
		st, decided := statusIn(n.confBase, id), false
		for i := range n.confLog {
			r := &n.confLog[i]
			if r.cc.NodeID != id {
				continue
			}
			if r.index <= index {
				st, decided = statusIn(r.conf, id), true
				continue
			}
			if !decided {
				switch r.cc.Type {
				case raftmsg.ConfChangeAddLearner:
					st = absent
				case raftmsg.ConfChangePromote:
					st = learner
				case raftmsg.ConfChangeRemove:
					if st == absent {
						st = voter
					}
				}
			}
			break
		}
		switch st {
		case voter:
			out.Voters = append(out.Voters, id)
		case learner:
			out.Learners = append(out.Learners, id)
		}
	}
	return out
}

func (n *Node) snapshotMetaClone() raftmsg.SnapshotMeta {
	return raftmsg.SnapshotMeta{Index: n.snap.Index, Term: n.snap.Term, Conf: cloneConf(n.snap.Conf)}
}

// Compact tells the core that the snapshot meta describes is durable in the
// application's storage (so it may be sent to followers), and drops the
// log entries up to meta.Index. meta must be what SnapshotMeta returned for
// meta.Index, newer than the current snapshot; otherwise Compact returns an
// error wrapping ErrBadSnapshot and changes nothing.
func (n *Node) Compact(meta raftmsg.SnapshotMeta) error {
	if meta.Index <= n.log.snapIndex {
		return fmt.Errorf("%w: snapshot at %d is not newer than the current one at %d", ErrBadSnapshot, meta.Index, n.log.snapIndex)
	}
	want, err := n.SnapshotMeta(meta.Index)
	if err != nil {
		return err
	}
	if meta.Term != want.Term || !confEqual(sortedConf(meta.Conf), want.Conf) {
		return fmt.Errorf("%w: meta %+v, but the log has term %d and configuration %+v at %d", ErrBadSnapshot, meta, want.Term, want.Conf, meta.Index)
	}
	n.compactConf(meta.Index)
	// The base becomes the exact configuration at the snapshot (confAt may
	// differ on a node whose base was not exact; the configuration in
	// force, the latest, is the same either way).
	n.confBase = cloneConf(want.Conf)
	n.log.compact(meta.Index, meta.Term)
	n.snap = want
	return nil
}

// sortedConf returns cs with both lists sorted (the core keeps them sorted;
// a runtime may not).
func sortedConf(cs raftmsg.ConfState) raftmsg.ConfState {
	out := cloneConf(cs)
	slices.Sort(out.Voters)
	slices.Sort(out.Learners)
	return out
}

// ReportSnapshot tells the leader how the snapshot stream to `to` ended:
// ok when the follower received it all, !ok when it failed. On success
// the leader probes right after the snapshot; on failure it sends the
// snapshot again once the follower answers a heartbeat. Reports for a
// follower not waiting for a snapshot (a stale report, a new term) are
// ignored.
func (n *Node) ReportSnapshot(to raftmsg.NodeID, ok bool) {
	if n.role != RoleLeader {
		return
	}
	i := n.pos(to)
	if i < 0 || i == n.selfPos || n.prs[i].State != tracker.StateSnapshot {
		return
	}
	if ok {
		n.prs[i].SnapshotDone()
		// Probe at once: the follower answers once its snapshot is durable.
		n.maybeSendAppend(i, true)
		return
	}
	n.prs[i].SnapshotFailed()
}

// ReportUnreachable tells the leader a send to `to` failed: a pipelining
// follower goes back to probing (one append at a time until it answers),
// since everything in flight to it may be lost.
func (n *Node) ReportUnreachable(to raftmsg.NodeID) {
	if n.role != RoleLeader {
		return
	}
	if i := n.pos(to); i >= 0 && i != n.selfPos && n.prs[i].State == tracker.StateReplicate {
		n.prs[i].BecomeProbe()
	}
}

// maybeSendSnapshot sends peer i the newest snapshot when the entry before
// its Next is compacted away (paper §7: "the leader must occasionally send
// snapshots to followers that lag behind"). No append follows until the
// transfer is reported or acknowledged.
func (n *Node) maybeSendSnapshot(i int) bool {
	pr := n.prs[i]
	if pr.Next > n.log.snapIndex || pr.State == tracker.StateSnapshot || pr.State == tracker.StateProbe && pr.ProbeSent {
		// Not needed, already on its way, or a failed one is not to be
		// retried before the follower shows a sign of life.
		return false
	}
	if n.snap.IsEmpty() {
		panic(fmt.Sprintf("consensus: entry %d compacted without a snapshot", pr.Next-1))
	}
	n.send(raftmsg.Message{Type: raftmsg.MsgSnap, To: n.peers[i], Term: n.term, Snapshot: n.snap})
	pr.BecomeSnapshot(n.snap.Index)
	return true
}

// snapshotAcked moves a follower out of StateSnapshot once it matches the
// snapshot (it installed it, or had it all along).
func (n *Node) snapshotAcked(pr *tracker.Progress) {
	if pr.State == tracker.StateSnapshot && pr.Match >= pr.PendingSnapshot {
		pr.BecomeProbe()
		pr.BecomeReplicate()
	}
}

// handleSnapshot is InstallSnapshot's receiver rule (paper §7, Figure 13),
// for a message of the current term from the leader.
func (n *Node) handleSnapshot(m *raftmsg.Message) {
	meta := m.Snapshot
	switch {
	case meta.Index <= n.log.committed:
		// Stale (a duplicate, or overtaken by appends): installing it
		// would roll back committed entries. Answer like an append at our
		// commit index, which every later leader holds (§5.4).
		n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term, Index: n.log.committed})
		return
	case n.log.matchTerm(meta.Index, meta.Term):
		// Figure 13, rule 6: "If existing log entry has same index and term
		// as snapshot's last included entry, retain log entries following
		// it and reply." By Log Matching our log up to meta.Index is the
		// leader's, and the snapshot proves it committed: take the commit
		// index, keep the log; the runtime drops the file.
		n.commitTo(meta.Index)
		n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term, Index: meta.Index})
		return
	}
	// Rule 7: "Discard the entire log"; rule 8: "Reset state machine using
	// snapshot contents (and load snapshot's cluster configuration)".
	// Acknowledgements of the old log's uncommitted tail no longer hold.
	n.dropAcksAbove(n.log.committed)
	n.log.restore(meta.Index, meta.Term)
	// A persistence still in progress of the old log makes durable at
	// most up to the snapshot (the runtime replaces that log with it).
	n.capPendingPersist(meta.Index)
	n.snap = raftmsg.SnapshotMeta{Index: meta.Index, Term: meta.Term, Conf: sortedConf(meta.Conf)}
	n.pendingSnapshot = true
	n.resetConf(n.snap.Conf, meta.Index)
	n.confHistoryUnknown = false // the leader's snapshot carries it exactly
	// The acknowledgement reports durable state: it leaves only once the
	// Ready carrying the snapshot is persisted.
	n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term, Index: meta.Index})
}

// compact drops the entries up to index (of term), which must be in the
// log and applied. The kept suffix moves to a fresh array, so the memory
// of the dropped prefix is freed while slices handed out stay valid. The
// fresh array holds as many entries as the log did: it grows back to
// about that length before the next compaction, and growing it by appends
// would copy every entry several times over (the runtime grows large
// slices by a quarter at a time).
func (l *raftLog) compact(index, term uint64) {
	if index <= l.snapIndex || index > l.applied {
		panic(fmt.Sprintf("consensus: compact to %d outside (%d, applied %d]", index, l.snapIndex, l.applied))
	}
	keep := l.ents[index-l.snapIndex:]
	fresh := make([]raftmsg.Entry, len(keep), max(len(l.ents), len(keep)+64))
	copy(fresh, keep)
	l.ents = fresh
	l.snapIndex, l.snapTerm = index, term
	l.unstableFrom = max(l.unstableFrom, index+1)
}

// restore replaces the whole log by a snapshot at index (of term) that is
// newer than the commit index: everything up to index counts as
// committed, applied (the runtime restores its state machine from the
// snapshot before applying anything after it) and durable (the runtime
// makes the snapshot durable before the entries of the Ready that carries
// it, and no index at or below it is ever handed out again).
func (l *raftLog) restore(index, term uint64) {
	if index <= l.committed {
		panic(fmt.Sprintf("consensus: restoring snapshot %d at or below commit %d", index, l.committed))
	}
	l.ents = make([]raftmsg.Entry, 0, 64)
	l.snapIndex, l.snapTerm = index, term
	l.committed, l.applying, l.applied, l.persisted = index, index, index, index
	l.unstableFrom = index + 1
}

// checkSnapshotInvariants: the snapshot meta agrees with the log and the
// configuration history, and no follower waits for a snapshot newer than
// ours.
func (n *Node) checkSnapshotInvariants() error {
	if n.snap.Index != n.log.snapIndex || n.snap.Term != n.log.snapTerm {
		return fmt.Errorf("snapshot meta %d/%d, log starts after %d/%d", n.snap.Index, n.snap.Term, n.log.snapIndex, n.log.snapTerm)
	}
	// Compact and install move both together; the base may run ahead only
	// when folded by hand (a test of the membership history).
	if n.confBaseIndex < n.snap.Index {
		return fmt.Errorf("snapshot at %d, configuration base at %d", n.snap.Index, n.confBaseIndex)
	}
	if !n.snap.IsEmpty() {
		if err := validConf(n.snap.Conf); err != nil {
			return fmt.Errorf("snapshot at %d: %w", n.snap.Index, err)
		}
		if n.confBaseIndex == n.snap.Index && !confEqual(n.snap.Conf, n.confBase) {
			return fmt.Errorf("snapshot configuration %+v, base %+v", n.snap.Conf, n.confBase)
		}
	}
	if n.pendingSnapshot && n.snap.IsEmpty() {
		return errors.New("a snapshot to hand out, but none")
	}
	if n.role == RoleLeader {
		for i, pr := range n.prs {
			if i == n.selfPos {
				continue
			}
			if pr.Match >= pr.Next {
				return fmt.Errorf("peer %d: match %d, next %d", n.peers[i], pr.Match, pr.Next)
			}
			if pr.State == tracker.StateSnapshot && (pr.PendingSnapshot == 0 || pr.PendingSnapshot > n.snap.Index) {
				return fmt.Errorf("peer %d waits for snapshot %d, ours is %d", n.peers[i], pr.PendingSnapshot, n.snap.Index)
			}
		}
	}
	return nil
}
