package consensus

import (
	"fmt"

	"github.com/edgekv/edgekv/consensus/quorum"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// Tick advances the node's logical clock by one tick.
func (n *Node) Tick() {
	n.ticks++
	if n.role == RoleLeader {
		n.tickLeader()
		return
	}
	n.electionElapsed++
	// Only voters campaign: learners and removed nodes never do (thesis
	// §4.2.1, §4.2.2).
	if n.electionElapsed >= n.randomizedElectionTimeout && n.mayCampaign() {
		n.startPreVote()
	}
}

func (n *Node) tickLeader() {
	n.electionElapsed++
	n.heartbeatElapsed++
	n.tickTransfer()
	n.tickLeaving()
	// Check-quorum (thesis §6.2): a leader that has not heard from a
	// quorum for an election timeout steps down, so a partitioned leader
	// stops accepting proposals and clients find the new one.
	if !n.quorumHeardWithin(n.cfg.ElectionTicks) {
		n.becomeFollower(n.term, raftmsg.None)
		return
	}
	if n.heartbeatElapsed >= n.cfg.HeartbeatTicks {
		n.heartbeatElapsed = 0
		// Every broadcast is a new round (unless one is still unsent):
		// its answers renew the lease from its send time, and confirm the
		// reads that joined it.
		n.joinReadRound()
	}
}

// quorumHeardWithin reports whether the leader heard from a quorum
// (itself included) within the last ticks ticks.
func (n *Node) quorumHeardWithin(ticks int) bool {
	heard := 0
	for i, pr := range n.prs {
		if n.kinds[i] == kindVoter && (i == n.selfPos || n.ticks-pr.LastHeardTick < uint64(ticks)) {
			heard++
		}
	}
	return heard >= n.quorumAt
}

// startPreVote asks the voters whether they would vote for this node in
// the next term, without changing any state of theirs or its own term
// (thesis §9.6): a node coming back from a partition cannot depose a
// healthy leader, since followers that hear from that leader refuse.
func (n *Node) startPreVote() {
	n.becomePreCandidate()
	if n.recordVote(n.id, true) == quorum.VoteWon {
		n.startElection()
		return
	}
	for i, v := range n.peers {
		if v != n.id && n.kinds[i] == kindVoter {
			n.send(raftmsg.Message{Type: raftmsg.MsgPreVote, To: v, Term: n.term + 1,
				Index: n.log.lastIndex(), LogTerm: n.log.lastTerm()})
		}
	}
}

// startElection increments the term and votes for itself (paper §5.2). The
// vote requests wait for the term and self-vote to be durable: a node that
// crashed and forgot its vote could vote twice in one term.
func (n *Node) startElection() { n.startElectionWith(0) }

// startElectionWith campaigns; context transferCampaign marks an election
// forced by leadership transfer.
func (n *Node) startElectionWith(context uint64) {
	n.becomeCandidate()
	if n.recordVote(n.id, true) == quorum.VoteWon {
		// The only voter: it wins on its own vote, but leads only once the
		// term and vote are durable (AckPersisted). Leading at once, its
		// appends (to learners, to a removed node) could leave, it could
		// crash before the term is durable, restart in the old term and
		// win the same term again with different entries at the same
		// indexes: two logs with a different entry of the same index and
		// term (Log Matching, §5.3). The Ready after this carries the
		// hard state.
		n.selfElectSeq = n.readySeq + 1
		return
	}
	for i, v := range n.peers {
		if v != n.id && n.kinds[i] == kindVoter {
			n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgVote, To: v, Term: n.term,
				Index: n.log.lastIndex(), LogTerm: n.log.lastTerm(), Context: context})
		}
	}
}

func (n *Node) recordVote(from raftmsg.NodeID, granted bool) quorum.VoteResult {
	// Only voters' answers count (thesis §4.2.1: learners never vote).
	if i := n.pos(from); i >= 0 && n.kinds[i] == kindVoter && n.votes[i] == 0 {
		n.votes[i] = -1
		if granted {
			n.votes[i] = 1
		}
	}
	g, r := 0, 0
	for i, v := range n.votes {
		if n.kinds[i] != kindVoter {
			continue
		}
		switch v {
		case 1:
			g++
		case -1:
			r++
		}
	}
	return quorum.Tally(g, r, n.numVoters)
}

// Step feeds one message from the network into the node. A message that is
// malformed or not addressed to this node returns an error wrapping
// ErrInvalidMessage and changes nothing; messages that are merely stale,
// or answers from peers not tracked, are dropped silently (nil).
func (n *Node) Step(m raftmsg.Message) error {
	if err := n.validate(&m); err != nil {
		return err
	}
	if m.Type == raftmsg.MsgProp || m.Type == raftmsg.MsgPropResp {
		// Term-less: a proposal is not a claim about the log.
		return n.stepByRole(&m)
	}
	switch {
	case m.Term > n.term:
		forced := m.Type == raftmsg.MsgVote && m.Context == transferCampaign
		if (m.Type == raftmsg.MsgVote || m.Type == raftmsg.MsgPreVote) && n.inLease() && !forced {
			// Leader stickiness (thesis §4.2.3, §9.6): while we hear from a
			// leader, a node that cannot hear it must not disturb us.
			return nil
		}
		switch {
		case m.Type == raftmsg.MsgPreVote:
			// Never change term on a pre-vote request.
		case m.Type == raftmsg.MsgPreVoteResp && !m.Reject:
			// A granted pre-vote carries the term we would campaign in.
		case m.Type == raftmsg.MsgApp || m.Type == raftmsg.MsgHeartbeat || m.Type == raftmsg.MsgSnap:
			// Paper Figure 2: "If RPC request or response contains term T >
			// currentTerm: set currentTerm = T, convert to follower".
			n.becomeFollower(m.Term, m.From)
		default:
			n.becomeFollower(m.Term, raftmsg.None)
		}
	case m.Term < n.term:
		switch m.Type {
		case raftmsg.MsgApp, raftmsg.MsgHeartbeat, raftmsg.MsgSnap:
			// A stale leader (maybe cut off, maybe unaware because pre-vote
			// kept our term increments from reaching it) learns our term
			// and steps down.
			n.send(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term})
		case raftmsg.MsgPreVote:
			n.send(raftmsg.Message{Type: raftmsg.MsgPreVoteResp, To: m.From, Term: n.term, Reject: true})
		}
		// Paper Figure 2: requests with a stale term are refused; stale
		// responses are ignored.
		return nil
	}

	switch m.Type {
	case raftmsg.MsgPreVote, raftmsg.MsgVote:
		n.handleVoteRequest(&m)
		return nil
	case raftmsg.MsgReadIndex, raftmsg.MsgReadIndexResp:
		n.stepRead(&m)
		return nil
	}
	return n.stepByRole(&m)
}

// inLease reports whether this node must refuse to help elect a new leader:
// it is the leader, or it heard from one within the minimum election
// timeout (whatever happened to its term since), or it restarted less than
// an election timeout ago (see LeaseRead).
func (n *Node) inLease() bool {
	return n.role == RoleLeader || (n.heardLeader && n.ticks-n.leaderHeardTick < uint64(n.cfg.ElectionTicks)) || n.startupQuiet()
}

// heardFromLeader records contact with the current leader. The lease it
// grants that leader outlives term changes learnt from other messages (a
// stale pre-vote rejection carrying a higher term, say): only the clock
// ends it.
func (n *Node) heardFromLeader() {
	n.heardLeader = true
	n.leaderHeardTick = n.ticks
}

// handleVoteRequest is RequestVote's receiver rule (paper Figure 2, §5.2,
// §5.4.1): grant if we have not voted for another candidate in this term
// and the candidate's log is at least as up-to-date as ours.
func (n *Node) handleVoteRequest(m *raftmsg.Message) {
	if n.inLease() && n.vote != m.From && !(m.Type == raftmsg.MsgVote && m.Context == transferCampaign) {
		// Leader stickiness at any term: our term may have moved on (a
		// stale rejection carrying a higher term) while the leader we
		// heard from still counts on us.
		return
	}
	canVote := n.vote == m.From ||
		(n.vote == raftmsg.None && n.lead == raftmsg.None) ||
		(m.Type == raftmsg.MsgPreVote && m.Term > n.term)
	grant := canVote && n.log.isUpToDate(m.Index, m.LogTerm)
	if m.Type == raftmsg.MsgPreVote {
		resp := raftmsg.Message{Type: raftmsg.MsgPreVoteResp, To: m.From, Term: m.Term, Reject: !grant}
		if !grant {
			resp.Term = n.term
		}
		n.send(resp)
		return
	}
	if grant {
		n.vote = m.From
		// Paper Figure 2: a follower that grants a vote resets its timer.
		n.electionElapsed = 0
	}
	// After persist: the vote must be durable before anyone counts it.
	n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgVoteResp, To: m.From, Term: n.term, Reject: !grant})
}

func (n *Node) stepByRole(m *raftmsg.Message) error {
	switch n.role {
	case RoleLeader:
		return n.stepLeader(m)
	case RoleCandidate, RolePreCandidate:
		return n.stepCandidate(m)
	default:
		return n.stepFollower(m)
	}
}

func (n *Node) stepFollower(m *raftmsg.Message) error {
	switch m.Type {
	case raftmsg.MsgApp:
		n.electionElapsed = 0
		n.lead = m.From
		n.heardFromLeader()
		return n.handleAppend(m)
	case raftmsg.MsgHeartbeat:
		n.electionElapsed = 0
		n.lead = m.From
		n.heardFromLeader()
		n.handleHeartbeat(m)
	case raftmsg.MsgSnap:
		n.electionElapsed = 0
		n.lead = m.From
		n.heardFromLeader()
		n.handleSnapshot(m)
	case raftmsg.MsgProp:
		// Not the leader (any more): refuse rather than forward twice.
		n.refuseProposal(m, raftmsg.RejectNoLeader)
	case raftmsg.MsgPropResp:
		n.recordRejections(m)
	case raftmsg.MsgTimeoutNow:
		n.handleTimeoutNow(m)
	case raftmsg.MsgTransferLeader:
		// Sent to a node that is not (or no longer) leader: dropped rather
		// than forwarded again, so stale leader hints cannot make it
		// circle; the runtime retries.
	}
	return nil
}

func (n *Node) stepCandidate(m *raftmsg.Message) error {
	switch m.Type {
	case raftmsg.MsgApp, raftmsg.MsgHeartbeat, raftmsg.MsgSnap:
		// Paper §5.2: "If the leader's term is at least as large as the
		// candidate's current term, then the candidate recognizes the
		// leader as legitimate and returns to follower state."
		n.becomeFollower(m.Term, m.From)
		return n.stepFollower(m)
	case raftmsg.MsgPreVoteResp:
		if n.role != RolePreCandidate {
			return nil
		}
		switch n.recordVote(m.From, !m.Reject) {
		case quorum.VoteWon:
			n.startElection()
		case quorum.VoteLost:
			n.becomeFollower(n.term, raftmsg.None)
		}
	case raftmsg.MsgVoteResp:
		if n.role != RoleCandidate {
			return nil
		}
		switch n.recordVote(m.From, !m.Reject) {
		case quorum.VoteWon:
			n.becomeLeader()
		case quorum.VoteLost:
			n.becomeFollower(n.term, raftmsg.None)
		}
	case raftmsg.MsgProp:
		n.refuseProposal(m, raftmsg.RejectNoLeader)
	case raftmsg.MsgPropResp:
		n.recordRejections(m)
	}
	return nil
}

func (n *Node) stepLeader(m *raftmsg.Message) error {
	switch m.Type {
	case raftmsg.MsgProp:
		if err := n.appendProposals(m.Entries, true); err != nil {
			n.refuseProposal(m, RejectReasonOf(err))
		}
		return nil
	case raftmsg.MsgPropResp, raftmsg.MsgTimeoutNow:
		return nil
	case raftmsg.MsgTransferLeader:
		n.startTransfer(m.Hint)
		return nil
	case raftmsg.MsgApp, raftmsg.MsgHeartbeat, raftmsg.MsgSnap:
		return fmt.Errorf("%w: %v from %d claims leadership of term %d, which %d leads", ErrInvalidMessage, m.Type, m.From, m.Term, n.id)
	}
	i := n.pos(m.From)
	if i < 0 {
		// An answer from a peer not (or no longer) tracked.
		return nil
	}
	pr := n.prs[i]
	pr.LastHeardTick = n.ticks
	switch m.Type {
	case raftmsg.MsgAppResp:
		err := n.handleAppendResp(m, pr)
		if m.From == n.leadTransferee {
			n.maybeSendTimeoutNow()
		}
		return err
	case raftmsg.MsgHeartbeatResp:
		if n.kinds[i] == kindLeaving {
			n.handleLeavingAck(i, m.Context)
			if i = n.pos(m.From); i < 0 {
				return nil
			}
			pr = n.prs[i]
		}
		n.handleReadAck(i, m.Context)
		if pr.Match >= n.log.lastIndex() || pr.State == tracker.StateSnapshot {
			return nil
		}
		switch {
		case pr.State == tracker.StateProbe:
			// The follower is alive: resend the probe (it may be lost),
			// even an empty one: a member whose Next is past our last
			// entry (a learner just added to an idle leader) would
			// otherwise wait for the next proposal to be probed.
			pr.ProbeSent = false
			n.maybeSendAppend(i, true)
		case !pr.AckedRecently:
			// Pipelining, but no acknowledgement for a heartbeat period:
			// an empty append probing Next-1 detects a lost message or a
			// lost answer that would otherwise hold the window shut.
			n.maybeSendAppend(i, true)
		}
	}
	return nil
}

// handleAppend is AppendEntries' receiver rule (paper Figure 2, §5.3).
func (n *Node) handleAppend(m *raftmsg.Message) error {
	if m.Index < n.log.committed {
		// Everything up to our commit index matches every later leader
		// (Leader Completeness, §5.4): acknowledge that much.
		n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term, Index: n.log.committed})
		return nil
	}
	// "Reply false if log doesn't contain an entry at prevLogIndex whose
	// term matches prevLogTerm" (Figure 2, receiver rule 2).
	if !n.log.matchTerm(m.Index, m.LogTerm) {
		hint := n.log.findConflictByTerm(m.Index, m.LogTerm)
		hintTerm, _ := n.log.term(hint)
		n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term,
			Index: m.Index, Reject: true, RejectHint: hint, LogTerm: hintTerm})
		return nil
	}
	lastNew := m.Index + uint64(len(m.Entries))
	ents := m.Entries
	// Rule 3 and 4: skip entries we already have; from the first conflict
	// on, delete ours and append theirs.
	for len(ents) > 0 && n.log.matchTerm(ents[0].Index, ents[0].Term) {
		ents = ents[1:]
	}
	if len(ents) > 0 {
		if ents[0].Index <= n.log.committed {
			return fmt.Errorf("%w: append from %d conflicts with committed entry %d", ErrInvalidMessage, m.From, ents[0].Index)
		}
		appended := copyEntries(ents)
		from := n.log.truncateAndAppend(appended)
		if from != 0 {
			n.capPendingPersist(from - 1)
			n.dropAcksAbove(from - 1)
		}
		n.confAfterAppend(from, appended)
	}
	// Rule 5: "If leaderCommit > commitIndex, set commitIndex =
	// min(leaderCommit, index of last new entry)".
	if c := min(m.Commit, lastNew); c > n.log.committed {
		n.commitTo(c)
	}
	n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgAppResp, To: m.From, Term: n.term, Index: lastNew})
	return nil
}

// copyEntries copies entries and their data (which may sit in the
// transport's pooled buffer) with a single data allocation.
func copyEntries(ents []raftmsg.Entry) []raftmsg.Entry {
	total := 0
	for i := range ents {
		total += len(ents[i].Data)
	}
	out := make([]raftmsg.Entry, len(ents))
	buf := make([]byte, 0, total)
	for i, e := range ents {
		if e.Data != nil {
			start := len(buf)
			buf = append(buf, e.Data...)
			e.Data = buf[start:len(buf):len(buf)]
		}
		out[i] = e
	}
	return out
}

func (n *Node) handleHeartbeat(m *raftmsg.Message) {
	// The leader sends min(match, commit), so every index up to it is in
	// our log as the leader has it.
	if c := min(m.Commit, n.log.lastIndex()); c > n.log.committed {
		n.commitTo(c)
	}
	// After persist: the answer may extend the leader's lease, so the term
	// it carries must survive a crash (see startupQuiet).
	n.sendAfterPersist(raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, To: m.From, Term: n.term, Context: m.Context})
}

func (n *Node) handleAppendResp(m *raftmsg.Message, pr *tracker.Progress) error {
	i := n.pos(m.From)
	if m.Reject {
		// Fast backtracking (paper §5.3): the follower named its last index
		// at or below the probe whose term is <= the probe's; skip every
		// entry of ours above the last one with a term <= that one's.
		next := n.log.findConflictByTerm(m.RejectHint, m.LogTerm) + 1
		if pr.MaybeBackOff(m.Index, next) {
			n.maybeSendAppend(i, false)
		}
		return nil
	}
	if m.Index > n.log.lastIndex() {
		return fmt.Errorf("%w: %d acknowledges index %d beyond the leader's last %d", ErrInvalidMessage, m.From, m.Index, n.log.lastIndex())
	}
	pr.Inflights.FreeLE(m.Index)
	if !pr.MaybeUpdate(m.Index) {
		return nil
	}
	n.snapshotAcked(pr)
	if pr.State == tracker.StateProbe {
		pr.BecomeReplicate()
	}
	if n.maybeCommit() {
		n.bcastAppend(true)
		n.maybeStepDownRemoved()
	} else {
		n.maybeSendAppend(i, false)
	}
	return nil
}

// maybeCommit advances the commit index to the highest index durable on a
// quorum, counting the leader only up to its own durable index (thesis
// §10.2.1), and only if that entry is of the current term (paper §5.4.2:
// "Raft never commits log entries from previous terms by counting
// replicas"). It reports whether the commit index moved.
func (n *Node) maybeCommit() bool {
	for i, pr := range n.prs {
		n.scratch[i] = pr.Match
		if i == n.selfPos {
			n.scratch[i] = n.log.persisted
		}
	}
	c := n.voterQuorumIndex(n.scratch)
	if c <= n.log.committed {
		return false
	}
	if t, _ := n.log.term(c); t != n.term {
		return false
	}
	n.commitTo(c)
	return true
}

func (n *Node) commitTo(c uint64) {
	if c > n.log.lastIndex() || c <= n.log.committed {
		panic(fmt.Sprintf("consensus: commit %d with committed %d last %d", c, n.log.committed, n.log.lastIndex()))
	}
	if n.role == RoleLeader {
		for i := n.log.committed + 1; i <= c; i++ {
			b := n.log.ents[i-n.log.snapIndex-1].PayloadBytes()
			n.uncommittedBytes -= min(b, n.uncommittedBytes)
		}
	}
	old := n.log.committed
	n.log.committed = c
	n.noteCommit(old, c)
}

func (n *Node) bcastAppend(sendEmpty bool) {
	for i := range n.prs {
		if i != n.selfPos {
			n.maybeSendAppend(i, sendEmpty)
		}
	}
}

// maybeSendAppend sends voter i the entries from its Next on as far as its
// state and windows allow and reports whether it sent anything. With
// sendEmpty it sends an entry-less append (carrying the commit index and
// probing Next-1) when no entry may go.
func (n *Node) maybeSendAppend(i int, sendEmpty bool) bool {
	pr := n.prs[i]
	if pr.State == tracker.StateSnapshot {
		// Nothing until the snapshot is reported or acknowledged.
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, ok := n.log.term(prevIndex)
	if !ok {
		// Compacted away: only a snapshot can catch the follower up.
		return n.maybeSendSnapshot(i)
	}
	var ents []raftmsg.Entry
	var bytes uint64
	if !pr.IsPaused() && pr.Next <= n.log.lastIndex() {
		ents, bytes = n.entriesFor(pr)
	}
	if len(ents) == 0 && !sendEmpty {
		return false
	}
	n.send(raftmsg.Message{Type: raftmsg.MsgApp, To: n.peers[i], Term: n.term,
		Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: n.log.committed})
	if len(ents) > 0 {
		pr.SentEntries(ents[len(ents)-1].Index, bytes)
	}
	return true
}

// entriesFor picks the entries of the next append to pr: at most
// MaxMsgBytes and, when pipelining, at most the room left in the inflight
// window. An entry bigger than either goes alone, but only into an empty
// window, so replication never stalls on a big entry nor overruns the
// window with many.
func (n *Node) entriesFor(pr *tracker.Progress) ([]raftmsg.Entry, uint64) {
	room := ^uint64(0)
	if pr.State == tracker.StateReplicate {
		room = pr.Inflights.RoomBytes()
	}
	limit := min(n.cfg.MaxMsgBytes, room)
	last := n.log.lastIndex()
	var bytes uint64
	hi := pr.Next
	for hi <= last {
		size := n.log.ents[hi-n.log.snapIndex-1].PayloadBytes()
		if hi == pr.Next {
			if size > room && pr.Inflights.Count() > 0 {
				return nil, 0
			}
		} else if bytes+size > limit {
			break
		}
		bytes += size
		hi++
	}
	return n.log.slice(pr.Next, hi), bytes
}

func (n *Node) refuseProposal(m *raftmsg.Message, reason raftmsg.RejectReason) {
	ids := make([]raftmsg.Entry, len(m.Entries))
	for i, e := range m.Entries {
		ids[i] = raftmsg.Entry{RequestID: e.RequestID}
	}
	n.send(raftmsg.Message{Type: raftmsg.MsgPropResp, To: m.From, Reject: true, RejectReason: reason,
		Entries: ids, Hint: n.lead})
}

func (n *Node) recordRejections(m *raftmsg.Message) {
	if !m.Reject {
		return
	}
	reason := m.RejectReason
	if reason == raftmsg.RejectNone {
		reason = raftmsg.RejectNoLeader
	}
	for _, e := range m.Entries {
		n.rejected = append(n.rejected, RejectedProposal{RequestID: e.RequestID, Reason: reason})
	}
}

// maxSaneValue bounds terms and indexes from the network: no real cluster
// gets near it, and refusing beyond it keeps term+1 and index arithmetic
// from overflowing.
const maxSaneValue = 1 << 62

// validate refuses what no correct peer sends, before any state changes.
func (n *Node) validate(m *raftmsg.Message) error {
	if !m.Type.Valid() {
		return fmt.Errorf("%w: type %d", ErrInvalidMessage, m.Type)
	}
	if m.To != n.id {
		return fmt.Errorf("%w: %v addressed to %d, this is %d", ErrInvalidMessage, m.Type, m.To, n.id)
	}
	// A sender outside the configuration is normal while configurations
	// change (thesis §4.1: servers process requests from servers not in
	// their configuration): answers from untracked peers are dropped later.
	if m.From == n.id || m.From == raftmsg.None {
		return fmt.Errorf("%w: %v from %d", ErrInvalidMessage, m.Type, m.From)
	}
	if m.Term == 0 && m.Type != raftmsg.MsgProp && m.Type != raftmsg.MsgPropResp {
		return fmt.Errorf("%w: %v with term 0", ErrInvalidMessage, m.Type)
	}
	if m.Term > maxSaneValue || m.Index > maxSaneValue || m.Commit > maxSaneValue || m.LogTerm > m.Term {
		return fmt.Errorf("%w: %v with term %d, log term %d, index %d, commit %d", ErrInvalidMessage, m.Type, m.Term, m.LogTerm, m.Index, m.Commit)
	}
	if !m.RejectReason.Valid() {
		return fmt.Errorf("%w: reject reason %d", ErrInvalidMessage, m.RejectReason)
	}
	switch m.Type {
	case raftmsg.MsgApp:
		if m.LogTerm > m.Term || (m.Index == 0 && m.LogTerm != 0) {
			return fmt.Errorf("%w: append after %d/%d in term %d", ErrInvalidMessage, m.Index, m.LogTerm, m.Term)
		}
		if m.Index > ^uint64(0)-uint64(len(m.Entries))-1 {
			return fmt.Errorf("%w: append index %d overflows", ErrInvalidMessage, m.Index)
		}
		prevTerm := m.LogTerm
		for i := range m.Entries {
			e := &m.Entries[i]
			if e.Index != m.Index+1+uint64(i) || e.Term < prevTerm || e.Term > m.Term || e.Term == 0 {
				return fmt.Errorf("%w: append entry %d is %d/%d after %d/%d in term %d", ErrInvalidMessage, i, e.Index, e.Term, m.Index, prevTerm, m.Term)
			}
			if e.Type > raftmsg.EntryConfChange {
				return fmt.Errorf("%w: entry type %d", ErrInvalidMessage, e.Type)
			}
			if e.Type == raftmsg.EntryConfChange {
				if _, err := raftmsg.DecodeConfChange(e.Data); err != nil {
					return fmt.Errorf("%w: entry %d: %w", ErrInvalidMessage, e.Index, err)
				}
			}
			prevTerm = e.Term
		}
	case raftmsg.MsgTransferLeader:
		// A target that is no voter here may be one in a newer
		// configuration: the leader decides (startTransfer).
		if m.Hint == raftmsg.None {
			return fmt.Errorf("%w: transfer to no node", ErrInvalidMessage)
		}
	case raftmsg.MsgSnap:
		s := &m.Snapshot
		if s.Index == 0 || s.Term == 0 || s.Index > maxSaneValue || s.Term > m.Term {
			return fmt.Errorf("%w: snapshot %d/%d in term %d", ErrInvalidMessage, s.Index, s.Term, m.Term)
		}
		// Thesis §5.1: a snapshot carries the configuration at its index.
		if err := validConf(s.Conf); err != nil {
			return fmt.Errorf("%w: snapshot %d/%d configuration: %w", ErrInvalidMessage, s.Index, s.Term, err)
		}
	case raftmsg.MsgAppResp:
		if m.Reject && m.RejectHint > m.Index {
			return fmt.Errorf("%w: reject hint %d above rejected index %d", ErrInvalidMessage, m.RejectHint, m.Index)
		}
	case raftmsg.MsgProp:
		if len(m.Entries) == 0 {
			return fmt.Errorf("%w: empty proposal", ErrInvalidMessage)
		}
		for i := range m.Entries {
			if m.Entries[i].Type != raftmsg.EntryNormal {
				return fmt.Errorf("%w: proposed entry type %v", ErrInvalidMessage, m.Entries[i].Type)
			}
		}
	}
	return nil
}
