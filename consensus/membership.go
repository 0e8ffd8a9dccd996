package consensus

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus/quorum"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// Membership changes, one server at a time (thesis §4.1, §4.2). A change
// takes effect on each server as soon as its entry is in that server's
// log, committed or not (append-time, thesis §4.1); see doc.go for why.

// Refusals of ProposeConfChange. ErrNotReady, ErrTransferring, ErrNotQuorum
// and ErrInvalidProposal are shared with Propose and ReadIndex.
var (
	// ErrNotLeader: conf changes are proposed on the leader only; the
	// runtime forwards the client's request to SoftState.Leader.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrConfChangePending: an earlier change is appended and not yet
	// applied on the leader (thesis §4.1: one change at a time).
	ErrConfChangePending = errors.New("consensus: a configuration change is pending")
	// ErrLearnerBehind: the learner's log is more than
	// Config.MaxLearnerLagEntries behind the leader's (thesis §4.2.1).
	ErrLearnerBehind = errors.New("consensus: learner has not caught up")
	// ErrLastVoter: removing the only voter would leave nobody to commit.
	ErrLastVoter = errors.New("consensus: cannot remove the last voter")
	// ErrUnknownMember: promote or remove of an id that is not a learner
	// (promote) or not a member (remove).
	ErrUnknownMember = errors.New("consensus: unknown member")
	// ErrMemberExists: adding an id that is already a member, or promoting
	// a voter.
	ErrMemberExists = errors.New("consensus: already a member")
	// ErrTooManyMembers: the change would make more than MaxVoters members.
	ErrTooManyMembers = errors.New("consensus: too many members")
)

// DefaultMaxLearnerLagEntries: a learner is promoted only when its log is
// at most this many entries behind the leader's.
const DefaultMaxLearnerLagEntries = 1000

// peerKind is what a tracked peer is in the configuration in force.
type peerKind uint8

const (
	kindVoter peerKind = iota
	kindLearner
	// kindLeaving: removed by the configuration in force, still sent the
	// log (on the leader only) until it knows its removal committed, so
	// that it can see SoftState.Removed rather than campaign forever.
	kindLeaving
)

// confRecord is one conf-change entry of the log (after the snapshot) and
// the configuration it puts in force.
type confRecord struct {
	index uint64
	cc    raftmsg.ConfChange // Context dropped
	conf  raftmsg.ConfState  // after cc; never modified
}

// leavingPeer is a peer removed by an entry at removedAt; it is dropped once
// it acknowledged a heartbeat round numbered farewellRound or later (every
// such round tells it a commit index covering its removal), or when it has
// been silent for an election timeout.
type leavingPeer struct {
	id            raftmsg.NodeID
	removedAt     uint64
	farewellRound uint64
}

// ProposeConfChange appends a one-server membership change on the leader
// (thesis §4.1). It refuses with ErrNotLeader off the leader;
// ErrInvalidProposal for a malformed change; ErrTransferring during a
// leadership transfer; ErrNotReady before an entry of this term has
// committed (thesis §4.1, the fix to single-server changes: a leader must
// not change the configuration before it has committed in its term, or an
// uncommitted change of an earlier leader could make disjoint majorities);
// ErrConfChangePending while an earlier change is not applied;
// ErrMemberExists, ErrUnknownMember, ErrLastVoter, ErrLearnerBehind,
// ErrTooManyMembers for the membership rules; ErrNotQuorum when the leader
// has not heard from a quorum recently. The entry comes back in
// CommittedEntries with requestID.
func (n *Node) ProposeConfChange(cc raftmsg.ConfChange, requestID uint64) error {
	if n.role != RoleLeader {
		return ErrNotLeader
	}
	if !cc.Type.Valid() || cc.NodeID == raftmsg.None || len(cc.Context) > raftmsg.MaxConfChangeContextBytes {
		return fmt.Errorf("%w: conf change %+v", ErrInvalidProposal, cc)
	}
	if n.leadTransferee != raftmsg.None {
		return ErrTransferring
	}
	if t, _ := n.log.term(n.log.committed); t != n.term {
		return ErrNotReady
	}
	if k := len(n.confLog); k > 0 && n.confLog[k-1].index > n.log.applied {
		return ErrConfChangePending
	}
	if err := n.checkConfChange(cc); err != nil {
		return err
	}
	if !n.quorumHeardWithin(max(n.cfg.ElectionTicks/2, 2*n.cfg.HeartbeatTicks+1)) {
		return ErrNotQuorum
	}
	e := raftmsg.Entry{Term: n.term, Index: n.log.lastIndex() + 1, Type: raftmsg.EntryConfChange,
		RequestID: requestID, Origin: n.id, Data: raftmsg.AppendConfChange(nil, cc)}
	n.log.append(e)
	n.uncommittedBytes += e.PayloadBytes()
	n.confAfterAppend(0, n.log.slice(e.Index, e.Index+1))
	n.bcastAppend(false)
	return nil
}

// checkConfChange applies the membership rules to cc against the
// configuration in force.
func (n *Node) checkConfChange(cc raftmsg.ConfChange) error {
	isVoter := slices.Contains(n.conf.Voters, cc.NodeID)
	isLearner := slices.Contains(n.conf.Learners, cc.NodeID)
	switch cc.Type {
	case raftmsg.ConfChangeAddLearner:
		if isVoter || isLearner {
			return fmt.Errorf("%w: %d", ErrMemberExists, cc.NodeID)
		}
		if len(n.conf.Voters)+len(n.conf.Learners) >= MaxVoters {
			return fmt.Errorf("%w: %d members already", ErrTooManyMembers, MaxVoters)
		}
	case raftmsg.ConfChangePromote:
		if isVoter {
			return fmt.Errorf("%w: %d is a voter already", ErrMemberExists, cc.NodeID)
		}
		if !isLearner {
			return fmt.Errorf("%w: %d is not a learner", ErrUnknownMember, cc.NodeID)
		}
		// Thesis §4.2.1: a new server joins the voters only once it has
		// caught up, or the cluster would wait for it to commit.
		i := n.pos(cc.NodeID)
		if last := n.log.lastIndex(); n.prs[i].Match+n.cfg.MaxLearnerLagEntries < last {
			return fmt.Errorf("%w: %d matches %d of %d (at most %d behind)", ErrLearnerBehind, cc.NodeID, n.prs[i].Match, last, n.cfg.MaxLearnerLagEntries)
		}
	case raftmsg.ConfChangeRemove:
		if !isVoter && !isLearner {
			return fmt.Errorf("%w: %d", ErrUnknownMember, cc.NodeID)
		}
		if isVoter && len(n.conf.Voters) == 1 {
			return ErrLastVoter
		}
	}
	return nil
}

// applyConfChange returns cs with cc applied as "set this id's status"
// (voter, learner, gone). It is lenient, because the log is authoritative
// and a joining node may replay changes on top of a base that already
// reflects them: only the proposer checks the rules. A change that would
// pass MaxVoters members is ignored (no correct leader proposes one).
func applyConfChange(cs raftmsg.ConfState, cc raftmsg.ConfChange) raftmsg.ConfState {
	out := raftmsg.ConfState{
		Voters:   slices.DeleteFunc(slices.Clone(cs.Voters), func(id raftmsg.NodeID) bool { return id == cc.NodeID }),
		Learners: slices.DeleteFunc(slices.Clone(cs.Learners), func(id raftmsg.NodeID) bool { return id == cc.NodeID }),
	}
	switch cc.Type {
	case raftmsg.ConfChangeAddLearner:
		out.Learners = insertSorted(out.Learners, cc.NodeID)
	case raftmsg.ConfChangePromote:
		out.Voters = insertSorted(out.Voters, cc.NodeID)
	}
	if len(out.Voters)+len(out.Learners) > MaxVoters {
		return cs
	}
	return out
}

func insertSorted(ids []raftmsg.NodeID, id raftmsg.NodeID) []raftmsg.NodeID {
	i, _ := slices.BinarySearch(ids, id)
	return slices.Insert(ids, i, id)
}

func cloneConf(cs raftmsg.ConfState) raftmsg.ConfState {
	return raftmsg.ConfState{Voters: slices.Clone(cs.Voters), Learners: slices.Clone(cs.Learners)}
}

func confEqual(a, b raftmsg.ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners)
}

// validConf checks a configuration from the runtime (bootstrap voters or a
// snapshot's): ids non-zero, distinct, at most MaxVoters, at least one voter.
func validConf(cs raftmsg.ConfState) error {
	if len(cs.Voters) == 0 || len(cs.Voters)+len(cs.Learners) > MaxVoters {
		return fmt.Errorf("%d voters and %d learners, want 1..%d members with a voter", len(cs.Voters), len(cs.Learners), MaxVoters)
	}
	seen := map[raftmsg.NodeID]bool{}
	for _, id := range slices.Concat(cs.Voters, cs.Learners) {
		if id == raftmsg.None || seen[id] {
			return fmt.Errorf("member id %d zero or repeated", id)
		}
		seen[id] = true
	}
	return nil
}

// latestConf is the configuration in force: the last conf-change entry's,
// else the base (snapshot or bootstrap) configuration.
func (n *Node) latestConf() raftmsg.ConfState {
	if k := len(n.confLog); k > 0 {
		return n.confLog[k-1].conf
	}
	return n.confBase
}

// confAt returns the configuration in force at index (as of the entries in
// the log now), and false when index precedes the base configuration's
// index (the snapshot). raftcore-snap: SnapshotMeta(index) takes its Conf
// from here; Compact(meta) must call compactConf(meta.Index), and an
// installed snapshot resetConf(meta.Conf, meta.Index).
func (n *Node) confAt(index uint64) (raftmsg.ConfState, bool) {
	if index < n.confBaseIndex {
		return raftmsg.ConfState{}, false
	}
	cs := n.confBase
	for i := range n.confLog {
		if n.confLog[i].index > index {
			break
		}
		cs = n.confLog[i].conf
	}
	return cloneConf(cs), true
}

// compactConf folds the conf-change records up to index into the base
// configuration (the log up to index is being dropped).
func (n *Node) compactConf(index uint64) {
	if index <= n.confBaseIndex {
		return
	}
	cs, _ := n.confAt(index)
	k := 0
	for k < len(n.confLog) && n.confLog[k].index <= index {
		k++
	}
	n.confLog = slices.Delete(n.confLog, 0, k)
	n.confBase, n.confBaseIndex = cs, index
}

// resetConf replaces the whole history by cs at index (an installed
// snapshot that replaces the log) and puts it in force. A node that was a
// member as of its commit index and is none in the snapshot (which is
// committed) was removed by an entry the snapshot covers: Removed.
func (n *Node) resetConf(cs raftmsg.ConfState, index uint64) {
	member := isMember(cs, n.id)
	if n.committedMember && !member {
		n.removed = true
	}
	n.committedMember = member
	n.confBase, n.confBaseIndex = cloneConf(cs), index
	n.confLog = n.confLog[:0]
	n.setConf(n.confBase)
}

// confAfterAppend updates the configuration after entries were written to
// the log: truncatedFrom (0: none) is where a conflicting suffix was cut,
// undoing every change at or after it (thesis §4.1: "a log entry for a
// configuration change can be removed... the server must be prepared to
// fall back to the previous configuration in its log"), then ents are the
// entries appended. Conf-change data was validated before.
func (n *Node) confAfterAppend(truncatedFrom uint64, ents []raftmsg.Entry) {
	changed := false
	if truncatedFrom != 0 {
		k := len(n.confLog)
		for k > 0 && n.confLog[k-1].index >= truncatedFrom {
			k--
		}
		changed = k < len(n.confLog)
		clear(n.confLog[k:])
		n.confLog = n.confLog[:k]
	}
	for i := range ents {
		if ents[i].Type != raftmsg.EntryConfChange {
			continue
		}
		cc, err := raftmsg.DecodeConfChange(ents[i].Data)
		if err != nil {
			panic(fmt.Sprintf("consensus: conf change at %d passed validation: %v", ents[i].Index, err))
		}
		cc.Context = nil
		n.confLog = append(n.confLog, confRecord{index: ents[i].Index, cc: cc, conf: applyConfChange(n.latestConf(), cc)})
		changed = true
	}
	if changed {
		n.setConf(n.latestConf())
	}
}

// noteCommit records that the commit index moved from old to c: a removal
// of this node in (old, c] is now committed (SoftState.Removed).
// It runs on every commit: records at or below old are skipped by binary
// search.
func (n *Node) noteCommit(old, c uint64) {
	first, _ := slices.BinarySearchFunc(n.confLog, old+1, func(r confRecord, index uint64) int {
		return cmp.Compare(r.index, index)
	})
	for i := first; i < len(n.confLog) && n.confLog[i].index <= c; i++ {
		r := &n.confLog[i]
		if r.cc.Type == raftmsg.ConfChangeRemove && r.cc.NodeID == n.id {
			n.removed = true
		}
		n.committedMember = isMember(r.conf, n.id)
	}
}

func isMember(cs raftmsg.ConfState, id raftmsg.NodeID) bool {
	return slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id)
}

// setConf puts cs in force: it rebuilds the peer arrays (peers, kinds,
// prs, votes, readAcks, matches, scratch stay parallel), keeping each
// surviving peer's progress, votes and read acknowledgements.
func (n *Node) setConf(cs raftmsg.ConfState) {
	if !confEqual(cs, n.conf) {
		n.confChanged = true
	}
	if n.role == RoleLeader {
		// A voter or learner removed just now leaves gracefully.
		for _, id := range n.peers {
			if id != n.id && !slices.Contains(cs.Voters, id) && !slices.Contains(cs.Learners, id) && n.leavingIndex(id) < 0 {
				n.leaving = append(n.leaving, leavingPeer{id: id, removedAt: n.log.lastIndex()})
			}
		}
	}
	n.leaving = slices.DeleteFunc(n.leaving, func(l leavingPeer) bool {
		return slices.Contains(cs.Voters, l.id) || slices.Contains(cs.Learners, l.id)
	})
	n.conf = cloneConf(cs)
	n.rebuildPeers()
}

func (n *Node) leavingIndex(id raftmsg.NodeID) int {
	for i := range n.leaving {
		if n.leaving[i].id == id {
			return i
		}
	}
	return -1
}

func (n *Node) rebuildPeers() {
	ids := slices.Concat(n.conf.Voters, n.conf.Learners)
	for _, l := range n.leaving {
		ids = append(ids, l.id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	prs := make([]*tracker.Progress, len(ids))
	kinds := make([]peerKind, len(ids))
	votes := make([]int8, len(ids))
	acks := make([]uint64, len(ids))
	n.numVoters = 0
	for i, id := range ids {
		switch {
		case slices.Contains(n.conf.Voters, id):
			kinds[i] = kindVoter
			n.numVoters++
		case slices.Contains(n.conf.Learners, id):
			kinds[i] = kindLearner
		default:
			kinds[i] = kindLeaving
		}
		if j := n.pos(id); j >= 0 {
			prs[i], votes[i], acks[i] = n.prs[j], n.votes[j], n.readAcks[j]
			continue
		}
		pr := tracker.NewProgress(n.cfg.MaxInflightMsgs, n.cfg.MaxInflightBytes)
		// A new peer: probe from the end of the log; it has one election
		// timeout to answer before check-quorum counts it as silent.
		pr.Reset(n.log.lastIndex() + 1)
		pr.LastHeardTick = n.ticks
		prs[i] = pr
	}
	n.peers, n.kinds, n.prs, n.votes, n.readAcks = ids, kinds, prs, votes, acks
	n.matches = make([]uint64, len(ids))
	n.scratch = make([]uint64, len(ids))
	n.selfPos = n.pos(n.id)
	n.quorumAt = quorum.Majority(n.numVoters)
}

// selfVoter reports whether this node is a voter of the configuration in
// force: only voters campaign (learners and removed nodes never do).
func (n *Node) selfVoter() bool { return n.selfPos >= 0 && n.kinds[n.selfPos] == kindVoter }

// mayCampaign reports whether this node may start an election: it is a
// voter of the configuration in force, or that configuration is an
// uncommitted removal of this node, which was a voter before it. The
// latter then campaigns in the new configuration, where its own vote does
// not count (thesis §4.2.2: a leader outside C_new manages the cluster
// until C_new commits). Without it, removing the leader of two voters can
// deadlock: the remaining voter lacks the removal, and the removed one,
// holding the longer log, refuses it its vote and never campaigns itself.
func (n *Node) mayCampaign() bool {
	if n.selfVoter() {
		return true
	}
	k := len(n.confLog)
	if n.removed || k == 0 {
		return false
	}
	r := &n.confLog[k-1]
	if r.index <= n.log.committed || r.cc.Type != raftmsg.ConfChangeRemove || r.cc.NodeID != n.id {
		return false
	}
	prev := n.confBase
	if k > 1 {
		prev = n.confLog[k-2].conf
	}
	return slices.Contains(prev.Voters, n.id)
}

// isVoter reports whether id is a voter of the configuration in force.
func (n *Node) isVoter(id raftmsg.NodeID) bool {
	i := n.pos(id)
	return i >= 0 && n.kinds[i] == kindVoter
}

// voterQuorumIndex returns the largest value that a majority of the voters
// reached, vals[i] being peer i's; non-voters never count (thesis §4.2.1:
// learners; §4.2.2: a leader removing itself).
func (n *Node) voterQuorumIndex(vals []uint64) uint64 {
	k := 0
	for i, v := range vals {
		if n.kinds[i] == kindVoter {
			n.matches[k] = v
			k++
		}
	}
	return quorum.CommittedIndex(n.matches[:k], n.scratch)
}

// maybeStepDownRemoved: a leader whose own removal has committed steps
// down (thesis §4.2.2), first telling the most up-to-date voter to
// campaign at once so that the cluster does not wait an election timeout.
func (n *Node) maybeStepDownRemoved() {
	if n.role != RoleLeader || !n.removed {
		return
	}
	best := -1
	for i, pr := range n.prs {
		if n.kinds[i] == kindVoter && (best < 0 || pr.Match > n.prs[best].Match) {
			best = i
		}
	}
	if best >= 0 && n.prs[best].Match == n.log.lastIndex() {
		n.send(raftmsg.Message{Type: raftmsg.MsgTimeoutNow, To: n.peers[best], Term: n.term})
	}
	n.becomeFollower(n.term, raftmsg.None)
}

// handleLeavingAck is called when leaving peer i answered heartbeat round
// `round`; it drops the peer once it surely learnt its removal committed.
func (n *Node) handleLeavingAck(i int, round uint64) {
	li := n.leavingIndex(n.peers[i])
	if li < 0 {
		return
	}
	l := &n.leaving[li]
	if l.farewellRound != 0 && round >= l.farewellRound {
		n.leaving = slices.Delete(n.leaving, li, li+1)
		n.rebuildPeers()
		return
	}
	if l.farewellRound == 0 && n.log.committed >= l.removedAt && n.prs[i].Match >= l.removedAt {
		// Every round from the next on carries a commit index covering the
		// removal (heartbeats send min(match, commit)).
		l.farewellRound = n.readRound + 1
	}
}

// tickLeaving drops leaving peers silent for an election timeout: they may
// be gone for good, and must not be tracked forever.
func (n *Node) tickLeaving() {
	if len(n.leaving) == 0 {
		return
	}
	before := len(n.leaving)
	n.leaving = slices.DeleteFunc(n.leaving, func(l leavingPeer) bool {
		i := n.pos(l.id)
		return i < 0 || n.ticks-n.prs[i].LastHeardTick >= uint64(n.cfg.ElectionTicks)
	})
	if len(n.leaving) != before {
		n.rebuildPeers()
	}
}

// dropLeaving forgets every leaving peer (leadership lost).
func (n *Node) dropLeaving() {
	if len(n.leaving) > 0 {
		n.leaving = n.leaving[:0]
		n.rebuildPeers()
	}
}

// ConfState returns the configuration in force (append-time: the latest
// in the log, committed or not).
func (n *Node) ConfState() raftmsg.ConfState { return cloneConf(n.conf) }

// checkConfInvariants: the peer arrays are parallel and agree with the
// configuration in force, which agrees with the history.
func (n *Node) checkConfInvariants() error {
	k := len(n.peers)
	if len(n.kinds) != k || len(n.prs) != k || len(n.votes) != k || len(n.readAcks) != k || len(n.matches) != k || len(n.scratch) != k {
		return fmt.Errorf("peer arrays of lengths %d %d %d %d %d %d %d", k, len(n.kinds), len(n.prs), len(n.votes), len(n.readAcks), len(n.matches), len(n.scratch))
	}
	if !confEqual(n.conf, n.latestConf()) {
		return fmt.Errorf("conf in force %v, latest in the log %v", n.conf, n.latestConf())
	}
	if n.role != RoleLeader && len(n.leaving) > 0 {
		return fmt.Errorf("%v tracks %d leaving peers", n.role, len(n.leaving))
	}
	if (n.role == RoleCandidate || n.role == RolePreCandidate) && !n.mayCampaign() {
		return fmt.Errorf("%v may not campaign in %v", n.role, n.conf)
	}
	voters := 0
	for i, id := range n.peers {
		if i > 0 && n.peers[i-1] >= id {
			return fmt.Errorf("peers not sorted: %v", n.peers)
		}
		want := kindLeaving
		switch {
		case slices.Contains(n.conf.Voters, id):
			want = kindVoter
			voters++
		case slices.Contains(n.conf.Learners, id):
			want = kindLearner
		case n.leavingIndex(id) < 0:
			return fmt.Errorf("peer %d neither member nor leaving", id)
		}
		if n.kinds[i] != want {
			return fmt.Errorf("peer %d kind %d, want %d", id, n.kinds[i], want)
		}
	}
	if voters != len(n.conf.Voters) || voters != n.numVoters || n.quorumAt != quorum.Majority(voters) {
		return fmt.Errorf("%d voters tracked, %d in conf, numVoters %d, quorum %d", voters, len(n.conf.Voters), n.numVoters, n.quorumAt)
	}
	if n.selfPos != n.pos(n.id) {
		return fmt.Errorf("selfPos %d, self at %d", n.selfPos, n.pos(n.id))
	}
	prev := n.confBaseIndex
	for _, r := range n.confLog {
		if r.index <= prev || r.index > n.log.lastIndex() {
			return fmt.Errorf("conf record at %d after %d, log ends at %d", r.index, prev, n.log.lastIndex())
		}
		if r.index > n.log.snapIndex {
			if e := &n.log.ents[r.index-n.log.snapIndex-1]; e.Type != raftmsg.EntryConfChange {
				return fmt.Errorf("conf record at %d but entry type %v", r.index, e.Type)
			}
		}
		prev = r.index
	}
	return nil
}
