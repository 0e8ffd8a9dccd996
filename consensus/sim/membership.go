package sim

import (
	"errors"
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/quorum"
	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Membership in the simulator: random add-learner, promote and remove
// (the leader included, and new ids added after removals) under the same
// chaos, and the checks of thesis §4.1-§4.2:
//
//   - at most one configuration change in flight: no log ever holds two
//     conf-change entries beyond the committed prefix;
//   - one server at a time: consecutive committed configurations differ by
//     at most one voter, and a leader that commits runs a configuration
//     within one voter of the committed one, so every commit quorum meets
//     every other (no two disjoint quorums);
//   - commits are durable on a majority of the committing leader's voters
//     (a removed leader, or a learner, never counts);
//   - Leader Completeness per configuration: a node lacking a committed
//     entry cannot gather a majority of its own configuration's voters;
//   - only voters campaign; SoftState.Removed only after the removal
//     committed; a promoted learner's log was within maxLearnerLag of the
//     leader's when the promotion was appended (catch-up, §4.2.1).

const (
	maxLearnerLag = 20 // Config.MaxLearnerLagEntries in the simulator
	maxAddedNodes = 4  // new ids a run may add
	maxMembers    = 7
)

// viewConf is a conf-change entry as some log holds it, with the
// configuration it puts in force.
type viewConf struct {
	index uint64
	cs    raftmsg.ConfState
}

// simApplyConfChange is the simulator's own model of a change: set the
// node's status (learner, voter, gone).
func simApplyConfChange(cs raftmsg.ConfState, cc raftmsg.ConfChange) raftmsg.ConfState {
	out := raftmsg.ConfState{}
	for _, v := range cs.Voters {
		if v != cc.NodeID {
			out.Voters = append(out.Voters, v)
		}
	}
	for _, v := range cs.Learners {
		if v != cc.NodeID {
			out.Learners = append(out.Learners, v)
		}
	}
	switch cc.Type {
	case raftmsg.ConfChangeAddLearner:
		out.Learners = append(out.Learners, cc.NodeID)
		slices.Sort(out.Learners)
	case raftmsg.ConfChangePromote:
		out.Voters = append(out.Voters, cc.NodeID)
		slices.Sort(out.Voters)
	}
	return out
}

// extendConfs updates v's conf-change entries for ents written from
// ents[0].Index on.
func extendConfs(v *logView, ents []raftmsg.Entry, what string) error {
	first := ents[0].Index
	k := len(v.confs)
	for k > 0 && v.confs[k-1].index >= first {
		k--
	}
	v.confs = v.confs[:k]
	for i := range ents {
		if ents[i].Type != raftmsg.EntryConfChange {
			continue
		}
		cc, err := raftmsg.DecodeConfChange(ents[i].Data)
		if err != nil {
			return fmt.Errorf("%w: %s: entry %d: %v", ErrViolation, what, ents[i].Index, err)
		}
		v.confs = append(v.confs, viewConf{index: ents[i].Index, cs: simApplyConfChange(v.confOf(), cc)})
	}
	return nil
}

func (v *logView) confOf() raftmsg.ConfState {
	if k := len(v.confs); k > 0 {
		return v.confs[k-1].cs
	}
	return v.base
}

// checkOneInFlight: at most one conf-change entry beyond the committed
// prefix in any log (thesis §4.1: a change starts only once the previous
// one committed).
func (s *sim) checkOneInFlight(sn *simNode) error {
	c := uint64(len(s.global))
	beyond := 0
	for i := len(sn.view.confs) - 1; i >= 0 && sn.view.confs[i].index > c; i-- {
		beyond++
	}
	if beyond > 1 {
		return fmt.Errorf("%w: one change at a time: node %d's log holds %d conf changes beyond the commit index %d", ErrViolation, sn.id, beyond, c)
	}
	return nil
}

func voterDiff(a, b raftmsg.ConfState) int {
	d := 0
	for _, v := range a.Voters {
		if !slices.Contains(b.Voters, v) {
			d++
		}
	}
	for _, v := range b.Voters {
		if !slices.Contains(a.Voters, v) {
			d++
		}
	}
	return d
}

// noteCommittedConf is called as index joins the committed sequence, from
// the log view of the node that committed it.
func (s *sim) noteCommittedConf(v *logView, index uint64) error {
	for _, c := range v.confs {
		if c.index != index {
			continue
		}
		if d := voterDiff(s.committedConf, c.cs); d > 1 {
			return fmt.Errorf("%w: one server at a time: committed configuration at %d %v differs from the previous %v by %d voters", ErrViolation, index, c.cs, s.committedConf, d)
		}
		s.committedConf = c.cs
		s.confHistory = append(s.confHistory, c)
		s.stats.ConfApplied++
		return nil
	}
	return nil
}

// confNow is the configuration a node runs: its own when up, the one its
// durable log gives when down.
func (s *sim) confNow(sn *simNode) raftmsg.ConfState {
	if sn.node != nil {
		return sn.node.ConfState()
	}
	return sn.dur.confOf()
}

// durableOnMajority checks that entry i (prefix hash h) is durable on a
// majority of cs's voters.
func (s *sim) durableOnMajority(cs raftmsg.ConfState, i, h uint64) int {
	durable := 0
	for _, id := range cs.Voters {
		if o := s.maybeNode(id); o != nil && o.dur.len() >= i && o.dur.prefix[i-1] == h {
			durable++
		}
	}
	return durable
}

func (s *sim) maybeNode(id raftmsg.NodeID) *simNode {
	if id == raftmsg.None || int(id) > len(s.nodes) {
		return nil
	}
	return s.nodes[id-1]
}

// checkCampaigners: only voters of their own configuration campaign, and
// a node that saw its removal commit never does.
func (s *sim) checkCampaigner(sn *simNode, ss consensus.SoftState) error {
	if ss.Role != consensus.RoleCandidate && ss.Role != consensus.RolePreCandidate {
		return nil
	}
	// A node that does not know its removal committed may still campaign
	// in the new configuration (consensus mayCampaign): it was a voter of
	// the configuration before its removal (the last or the one before in
	// the log handed out, which may lag the node's by the removal entry).
	wasVoter := slices.Contains(sn.view.confOf().Voters, sn.id)
	if k := len(sn.view.confs); k > 0 {
		prev := sn.view.base
		if k > 1 {
			prev = sn.view.confs[k-2].cs
		}
		wasVoter = wasVoter || slices.Contains(prev.Voters, sn.id)
	}
	if ss.Removed || !slices.Contains(sn.node.ConfState().Voters, sn.id) && !wasVoter {
		return fmt.Errorf("%w: node %d campaigns (%v) while not a voter of %v (removed %v)", ErrViolation, sn.id, ss.Role, sn.node.ConfState(), ss.Removed)
	}
	return nil
}

// checkRemoved: SoftState.Removed only once the removal committed; the
// runtime then shuts the node down for good. The node may learn the
// commit before the simulator sees it committed elsewhere: it retires once
// the committed configuration excludes it, and finalChecks catches a
// Removed node the committed configuration still holds.
func (s *sim) checkRemoved(sn *simNode) {
	if sn.node == nil || !sn.node.SoftState().Removed || s.member(sn) {
		return
	}
	s.tracef("node %d removed: retires", sn.id)
	s.stats.RemovedSeen++
	sn.node = nil
	sn.pending = nil
	sn.retired = true
}

func (s *sim) checkNotRemoved() error {
	for _, sn := range s.nodes {
		if sn.node != nil && sn.node.SoftState().Removed && s.member(sn) {
			return fmt.Errorf("%w: node %d reports Removed while the committed configuration %v holds it", ErrViolation, sn.id, s.committedConf)
		}
	}
	return nil
}

func (s *sim) leaderNode() *simNode {
	var best *simNode
	for _, sn := range s.nodes {
		if sn.node != nil && !sn.paused(s.now) {
			if ss := sn.node.SoftState(); ss.Role == consensus.RoleLeader && (best == nil || ss.Term > best.node.SoftState().Term) {
				best = sn
			}
		}
	}
	return best
}

// changeMembership proposes one random change at `at`, or by default
// mostly on the leader.
func (s *sim) changeMembership(at *simNode) error {
	if at == nil {
		at = s.leaderNode()
	}
	if at == nil || s.rng.IntN(10) == 0 {
		live := s.liveNodes()
		if len(live) == 0 {
			return nil
		}
		at = live[s.rng.IntN(len(live))]
	}
	cs := at.node.ConfState()
	var cc raftmsg.ConfChange
	var joiner *simNode
	switch r := s.rng.IntN(10); {
	case r < 3: // add a learner: a new id (never reused)
		if s.added >= maxAddedNodes || len(cs.Voters)+len(cs.Learners) >= maxMembers {
			return nil
		}
		id := raftmsg.NodeID(len(s.nodes) + 1)
		joiner = &simNode{id: id}
		// A joiner replays the log from index 1 on top of a base: either
		// the bootstrap voters or the voters it was told about (both must
		// end right, see consensus doc.go).
		joiner.base = raftmsg.ConfState{Voters: slices.Clone(s.bootstrap)}
		if s.rng.IntN(2) == 0 {
			joiner.base = raftmsg.ConfState{Voters: slices.Clone(s.committedConf.Voters)}
		}
		if len(joiner.base.Voters) == 0 {
			joiner.base.Voters = slices.Clone(s.bootstrap)
		}
		joiner.dur.base, joiner.view.base = joiner.base, joiner.base
		s.nodes = append(s.nodes, joiner)
		s.added++
		if err := s.start(joiner); err != nil {
			return err
		}
		cc = raftmsg.ConfChange{Type: raftmsg.ConfChangeAddLearner, NodeID: id, Context: []byte("joiner")}
	case r < 6: // promote a learner (or, to test refusals, anyone)
		cc.Type = raftmsg.ConfChangePromote
		if len(cs.Learners) > 0 && s.rng.IntN(4) != 0 {
			cc.NodeID = cs.Learners[s.rng.IntN(len(cs.Learners))]
		} else {
			cc.NodeID = raftmsg.NodeID(1 + s.rng.IntN(len(s.nodes)))
		}
	default: // remove a member, the leader included
		cc.Type = raftmsg.ConfChangeRemove
		members := slices.Concat(cs.Voters, cs.Learners)
		cc.NodeID = members[s.rng.IntN(len(members))]
		if slices.Contains(cs.Voters, cc.NodeID) && len(cs.Voters) <= 2 && s.rng.IntN(8) != 0 {
			return nil // keep at least two voters, mostly
		}
		if s.rng.IntN(20) == 0 {
			cc.NodeID = raftmsg.NodeID(1 + s.rng.IntN(len(s.nodes)+2)) // maybe unknown
		}
	}
	s.stats.ConfProposed++
	s.nextReq++
	lastBefore := at.node.LastIndex()
	err := at.node.ProposeConfChange(cc, s.nextReq)
	s.tracef("conf change %v %d at %d: %v", cc.Type, cc.NodeID, at.id, err)
	if err != nil {
		k := confRefusalKind(err)
		if k < 0 {
			return fmt.Errorf("%w: conf change at %d: unexpected error %v", ErrViolation, at.id, err)
		}
		s.stats.ConfRefused++
		s.stats.ConfRefusedBy[k]++
		if joiner != nil {
			// The join failed: that process gives up.
			s.crash(joiner)
			joiner.retired = true
		}
		return s.afterStep(at)
	}
	if at.node.LastIndex() != lastBefore+1 {
		return fmt.Errorf("%w: accepted conf change appended %d entries", ErrViolation, at.node.LastIndex()-lastBefore)
	}
	if cc.Type == raftmsg.ConfChangeRemove && cc.NodeID == at.id {
		s.stats.LeaderRemovals++
	}
	// Thesis §4.1 (and Ongaro's 2015 correction): a leader changes the
	// configuration only once an entry of its term has committed, or an
	// uncommitted change of an earlier leader and its own could form
	// disjoint majorities. Checked against the committed sequence.
	term := at.node.SoftState().Term
	if i, _ := slices.BinarySearch(s.globalTerm, term); i == len(s.globalTerm) || s.globalTerm[i] != term {
		return fmt.Errorf("%w: one server at a time: leader %d of term %d appended a conf change before any entry of its term committed", ErrViolation, at.id, term)
	}
	if cc.Type == raftmsg.ConfChangePromote && at.node.SoftState().Term == s.maxLeaderTerm {
		// (A stale leader's view of the learner may predate a newer
		// leader's truncation of the learner's log: checked on the newest.)
		if err := s.checkCaughtUp(at, cc.NodeID); err != nil {
			return err
		}
	}
	return s.afterStep(at)
}

var (
	confRefusals = [...]error{consensus.ErrNotLeader, consensus.ErrConfChangePending, consensus.ErrNotReady,
		consensus.ErrLearnerBehind, consensus.ErrLastVoter, consensus.ErrUnknownMember, consensus.ErrMemberExists,
		consensus.ErrTransferring, consensus.ErrNotQuorum, consensus.ErrTooManyMembers}
	confRefusalNames = [...]string{"not-leader", "pending", "not-ready", "learner-behind", "last-voter",
		"unknown", "exists", "transferring", "not-quorum", "too-many"}
)

// confRefusalKind returns the index of err in confRefusals, or -1.
func confRefusalKind(err error) int {
	for i, e := range confRefusals {
		if errors.Is(err, e) {
			return i
		}
	}
	return -1
}

func (s Stats) refusalsString() string {
	out := "("
	for i, n := range s.ConfRefusedBy {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%s=%d", confRefusalNames[i], n)
	}
	return out + ")"
}

// checkCaughtUp: the learner's durable log matched the leader's to within
// maxLearnerLag entries when the promotion was appended (thesis §4.2.1:
// otherwise the new quorum would wait for it, and with one more failure
// the cluster could not commit until it caught up).
func (s *sim) checkCaughtUp(leader *simNode, id raftmsg.NodeID) error {
	l := s.maybeNode(id)
	if l == nil {
		return fmt.Errorf("%w: promoted %d, which never existed", ErrViolation, id)
	}
	// Longest prefix of the learner's durable log that the leader's log
	// holds (Log Matching: a matching (index, term) means a matching
	// prefix, so this is monotone).
	lo, hi := uint64(0), l.dur.len()
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if t, ok := s.termAt(leader, mid); ok && t == l.dur.terms[mid-1] {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	last := leader.node.LastIndex() - 1 // before the promotion entry
	if lo+maxLearnerLag < last {
		return fmt.Errorf("%w: catch-up: %d promoted %d whose durable log matches only %d of its %d entries (lag bound %d)", ErrViolation, leader.id, id, lo, last, maxLearnerLag)
	}
	return nil
}

// canBeElected: x (lacking committed entry index c) is a voter of its own
// configuration and at least as up-to-date (paper §5.4.1) as a majority
// of that configuration's voters.
func (s *sim) canBeElected(x *simNode) (bool, int, raftmsg.ConfState) {
	cs := s.confNow(x)
	if !slices.Contains(cs.Voters, x.id) {
		return false, 0, cs
	}
	xi, xt := s.lastOf(x)
	voters := 0
	for _, id := range cs.Voters {
		v := s.maybeNode(id)
		if v == nil {
			voters++
			continue
		}
		vi, vt := s.lastOf(v)
		if xt > vt || xt == vt && xi >= vi {
			voters++
		}
	}
	return voters >= quorum.Majority(len(cs.Voters)), voters, cs
}

// member reports whether sn belongs to the committed configuration.
func (s *sim) member(sn *simNode) bool {
	return slices.Contains(s.committedConf.Voters, sn.id) || slices.Contains(s.committedConf.Learners, sn.id)
}
