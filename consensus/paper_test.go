package consensus

// Each test checks one rule of the Raft paper (Ongaro & Ousterhout, "In
// Search of an Understandable Consensus Algorithm", Figure 2 and §5) or
// of the thesis, quoted in its comment.

import (
	"errors"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

var three = []raftmsg.NodeID{1, 2, 3}

func voteReq(from, to raftmsg.NodeID, term, lastIndex, lastTerm uint64) raftmsg.Message {
	return raftmsg.Message{Type: raftmsg.MsgVote, From: from, To: to, Term: term, Index: lastIndex, LogTerm: lastTerm}
}

// Figure 2, RequestVote receiver: "If votedFor is null or candidateId, and
// candidate's log is at least as up-to-date as receiver's log, grant vote."
// One vote per term.
func TestPaperVoteOncePerTerm(t *testing.T) {
	n := recovered(t, 1, three, 1, 1)
	if err := n.Step(voteReq(2, 1, 2, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := n.Step(voteReq(3, 1, 2, 1, 1)); err != nil {
		t.Fatal(err)
	}
	// Repeating the request of the candidate we voted for is granted again.
	if err := n.Step(voteReq(2, 1, 2, 1, 1)); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	resps := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgVoteResp)
	if len(resps) != 3 || resps[0].Reject || !resps[1].Reject || resps[2].Reject {
		t.Fatalf("vote responses %+v: want grant to 2, reject 3, grant 2 again", resps)
	}
	if rd.HardState.Vote != 2 || rd.HardState.Term != 2 {
		t.Fatalf("hard state %+v, want term 2 vote 2", rd.HardState)
	}
	if len(msgsOfType(rd.Messages, raftmsg.MsgVoteResp)) != 0 {
		t.Fatal("a vote response may not leave before the vote is durable")
	}
}

// §5.4.1: "If the logs have last entries with different terms, then the log
// with the later term is more up-to-date. If the logs end with the same
// term, then whichever log is longer is more up-to-date."
func TestPaperVoteUpToDateCheck(t *testing.T) {
	for _, c := range []struct {
		lastIndex, lastTerm uint64
		grant               bool
	}{
		{3, 2, true},  // same last term, same length
		{4, 2, true},  // same last term, longer
		{2, 2, false}, // same last term, shorter
		{9, 1, false}, // older last term, however long
		{1, 3, true},  // newer last term, however short
	} {
		n := recovered(t, 1, three, 2, 1, 2, 2) // log: terms 1,2,2
		if err := n.Step(voteReq(2, 1, 3, c.lastIndex, c.lastTerm)); err != nil {
			t.Fatal(err)
		}
		resp := msgsOfType(n.Ready().MessagesAfterPersist, raftmsg.MsgVoteResp)
		if len(resp) != 1 || resp[0].Reject == c.grant {
			t.Errorf("candidate last %d/%d: response %+v, want grant=%v", c.lastIndex, c.lastTerm, resp, c.grant)
		}
	}
}

// Figure 2, all servers: "If RPC request or response contains term T >
// currentTerm: set currentTerm = T, convert to follower."
func TestPaperHigherTermStepsDown(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	leader := c.nodes[1]
	term := leader.SoftState().Term
	if err := leader.Step(raftmsg.Message{Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: term + 5, Index: 0}); err != nil {
		t.Fatal(err)
	}
	if ss := leader.SoftState(); ss.Role != RoleFollower || ss.Term != term+5 || ss.Leader != raftmsg.None {
		t.Fatalf("after a higher-term response: %+v", ss)
	}
	if hs := leader.HardState(); hs.Vote != raftmsg.None {
		t.Fatalf("vote must reset with the new term: %+v", hs)
	}
}

// Figure 2, AppendEntries receiver 1: "Reply false if term < currentTerm."
// The reply carries our term so the stale leader steps down.
func TestPaperStaleAppendRefused(t *testing.T) {
	n := recovered(t, 1, three, 5, 1, 5)
	err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 2, To: 1, Term: 4, Index: 1, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 2, Term: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	resp := msgsOfType(rd.Messages, raftmsg.MsgAppResp)
	if len(resp) != 1 || resp[0].Term != 5 || n.LastIndex() != 2 {
		t.Fatalf("stale append: responses %+v, last index %d", resp, n.LastIndex())
	}
}

// Figure 2, AppendEntries receiver 2: "Reply false if log doesn't contain an
// entry at prevLogIndex whose term matches prevLogTerm." The rejection
// carries the fast-backtracking hint (§5.3).
func TestPaperAppendConsistencyCheck(t *testing.T) {
	n := recovered(t, 1, three, 3, 1, 1, 2, 2, 2) // terms 1,1,2,2,2
	err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 5, LogTerm: 3,
		Entries: []raftmsg.Entry{{Index: 6, Term: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	resp := msgsOfType(n.Ready().MessagesAfterPersist, raftmsg.MsgAppResp)
	if len(resp) != 1 || !resp[0].Reject || resp[0].Index != 5 || resp[0].RejectHint != 5 || resp[0].LogTerm != 2 {
		t.Fatalf("responses %+v: want reject of 5 with hint 5/2", resp)
	}
	if n.LastIndex() != 5 {
		t.Fatalf("rejected append changed the log: last %d", n.LastIndex())
	}
	// Probe beyond our log: the hint is our last index.
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 9, LogTerm: 3}); err != nil {
		t.Fatal(err)
	}
	resp = msgsOfType(n.Ready().MessagesAfterPersist, raftmsg.MsgAppResp)
	if len(resp) != 1 || resp[0].RejectHint != 5 {
		t.Fatalf("responses %+v: want hint 5", resp)
	}
}

// Figure 2, AppendEntries receiver 3 and 4: "If an existing entry conflicts
// with a new one (same index but different terms), delete the existing
// entry and all that follow it. Append any new entries not already in the
// log."
func TestPaperAppendTruncatesConflicts(t *testing.T) {
	n := recovered(t, 1, three, 3, 1, 1, 2, 2) // terms 1,1,2,2
	err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 3, Term: 2}, {Index: 4, Term: 3}, {Index: 5, Term: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	if len(rd.Entries) != 2 || rd.Entries[0].Index != 4 || rd.Entries[0].Term != 3 {
		t.Fatalf("entries to persist %+v: want the suffix from the conflict at 4", rd.Entries)
	}
	for i, want := range []uint64{1, 1, 2, 3, 3} {
		if got, _ := n.LogTerm(uint64(i) + 1); got != want {
			t.Fatalf("term at %d = %d, want %d", i+1, got, want)
		}
	}
	resp := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp)
	if len(resp) != 1 || resp[0].Reject || resp[0].Index != 5 {
		t.Fatalf("responses %+v: want ack of 5", resp)
	}
}

// Figure 2, AppendEntries receiver 5: "If leaderCommit > commitIndex, set
// commitIndex = min(leaderCommit, index of last new entry)."
func TestPaperAppendCommitIsMinimum(t *testing.T) {
	n := recovered(t, 1, three, 2, 1, 1, 1, 1, 1) // 5 entries, maybe stale
	err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 2, To: 1, Term: 2, Index: 1, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 2, Term: 1}}, Commit: 9})
	if err != nil {
		t.Fatal(err)
	}
	if c := n.HardState().Commit; c != 2 {
		t.Fatalf("commit %d, want min(9, 2) = 2: entries 3..5 are not known to match", c)
	}
}

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed
// by counting replicas."
func TestPaperCommitOnlyCurrentTerm(t *testing.T) {
	// Node 1 has an entry of term 1 at index 2 that nobody else has.
	voters := three
	n1 := recovered(t, 1, voters, 1, 1, 1)
	n2 := recovered(t, 2, voters, 1, 1)
	n3 := recovered(t, 3, voters, 1, 1)
	c := &cluster{t: t, nodes: map[raftmsg.NodeID]*Node{1: n1, 2: n2, 3: n3}, applied: map[raftmsg.NodeID][]raftmsg.Entry{}}
	// Node 1 becomes leader of term 2 but its appends carrying the no-op
	// (index 3) are lost; only the probe carrying index 2 gets through.
	c.cut = func(m raftmsg.Message) bool {
		if m.Type != raftmsg.MsgApp {
			return false
		}
		for _, e := range m.Entries {
			if e.Index >= 3 {
				return true
			}
		}
		return false
	}
	c.tick(1, 20)
	c.settle()
	if n1.SoftState().Role != RoleLeader {
		t.Fatal("node 1 did not win")
	}
	// Replicate index 2 alone to node 2 by hand.
	if err := n2.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 2, Index: 1, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 2, Term: 1}}}); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if m := n1.Status().Peers[1].Match; m != 2 {
		t.Fatalf("node 2 match %d, want 2", m)
	}
	if got := n1.HardState().Commit; got >= 2 {
		t.Fatalf("commit %d: a term-1 entry was committed by counting replicas in term 2", got)
	}
	// Once the no-op of term 2 reaches a majority, both commit.
	c.cut = nil
	c.tick(1, 1) // heartbeat: the followers answer and get the no-op
	c.settle()
	if got := n1.HardState().Commit; got != 3 {
		t.Fatalf("commit %d after the no-op replicated, want 3", got)
	}
}

// Thesis §10.2.1: the leader may send entries before writing them, but
// counts itself toward the commit quorum only once they are durable.
func TestPaperLeaderCountsItselfAfterPersist(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	leader := c.nodes[1]
	if err := c.propose(1, 7); err != nil {
		t.Fatal(err)
	}
	rd := leader.Ready() // not acknowledged yet
	if len(rd.Entries) != 1 || len(msgsOfType(rd.Messages, raftmsg.MsgApp)) != 2 {
		t.Fatalf("ready: %d entries, %d appends; want the entry sent before it is durable", len(rd.Entries), len(msgsOfType(rd.Messages, raftmsg.MsgApp)))
	}
	idx := rd.Entries[0].Index
	// Only follower 2 acknowledges: with the leader not durable, no quorum.
	if err := leader.Step(raftmsg.Message{Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: rd.SoftState.Term, Index: idx}); err != nil {
		t.Fatal(err)
	}
	if got := leader.HardState().Commit; got >= idx {
		t.Fatalf("committed %d with only one durable copy", got)
	}
	if err := leader.AckPersisted(rd.Seq); err != nil {
		t.Fatal(err)
	}
	if got := leader.HardState().Commit; got != idx {
		t.Fatalf("commit %d after the leader's own persistence, want %d", got, idx)
	}
}

// Persist before send: a follower's append acknowledgement only ever
// leaves in MessagesAfterPersist, and only after the Ready holding the
// entries it acknowledges (pipelined Readys persist in order).
func TestPaperAppendAckAfterPersist(t *testing.T) {
	n := recovered(t, 2, three, 1, 1)
	for i := uint64(2); i <= 3; i++ {
		err := n.Step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 1, Index: i - 1, LogTerm: 1,
			Entries: []raftmsg.Entry{{Index: i, Term: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		rd := n.Ready() // pipelined: none acknowledged
		if len(msgsOfType(rd.Messages, raftmsg.MsgAppResp)) != 0 {
			t.Fatal("append acknowledgement among the immediate messages")
		}
		acks := msgsOfType(rd.MessagesAfterPersist, raftmsg.MsgAppResp)
		if len(acks) != 1 || acks[0].Index != i || len(rd.Entries) != 1 || rd.Entries[0].Index != i {
			t.Fatalf("ready %d: acks %+v entries %+v", rd.Seq, acks, rd.Entries)
		}
	}
	if st := n.Status(); st.Persisted != 1 {
		t.Fatalf("persisted %d before any acknowledgement", st.Persisted)
	}
	if err := n.AckPersisted(2); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Persisted != 3 {
		t.Fatalf("persisted %d after acknowledging both Readys", st.Persisted)
	}
	if err := n.AckPersisted(1); err == nil {
		t.Fatal("acknowledging backwards accepted")
	}
}

// A truncation while an earlier Ready is being persisted: that Ready makes
// durable only the entries that survived.
func TestPipelinedPersistAcrossTruncation(t *testing.T) {
	n := recovered(t, 2, three, 1, 1)
	step := func(m raftmsg.Message) {
		t.Helper()
		if err := n.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	step(raftmsg.Message{Type: raftmsg.MsgApp, From: 1, To: 2, Term: 1, Index: 1, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 2, Term: 1}, {Index: 3, Term: 1}}})
	rd1 := n.Ready()
	// A new leader of term 2 replaces index 3.
	step(raftmsg.Message{Type: raftmsg.MsgApp, From: 3, To: 2, Term: 2, Index: 2, LogTerm: 1,
		Entries: []raftmsg.Entry{{Index: 3, Term: 2}}})
	rd2 := n.Ready()
	if len(rd2.Entries) != 1 || rd2.Entries[0].Term != 2 {
		t.Fatalf("second ready entries %+v", rd2.Entries)
	}
	if err := n.AckPersisted(rd1.Seq); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Persisted != 2 {
		t.Fatalf("persisted %d after the first Ready: index 3 of term 1 was replaced", st.Persisted)
	}
	if err := n.AckPersisted(rd2.Seq); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Persisted != 3 {
		t.Fatalf("persisted %d after both", st.Persisted)
	}
}

// §5.2: "If the leader's term is at least as large as the candidate's
// current term, then the candidate recognizes the leader as legitimate and
// returns to follower state."
func TestPaperCandidateYieldsToLeader(t *testing.T) {
	n := recovered(t, 1, three, 1, 1)
	for n.SoftState().Role != RoleCandidate {
		n.Tick()
		if n.SoftState().Role == RolePreCandidate {
			for _, from := range []raftmsg.NodeID{2, 3} {
				if err := n.Step(raftmsg.Message{Type: raftmsg.MsgPreVoteResp, From: from, To: 1, Term: 2}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	term := n.SoftState().Term
	if err := n.Step(raftmsg.Message{Type: raftmsg.MsgHeartbeat, From: 3, To: 1, Term: term}); err != nil {
		t.Fatal(err)
	}
	if ss := n.SoftState(); ss.Role != RoleFollower || ss.Leader != 3 || ss.Term != term {
		t.Fatalf("candidate after a same-term heartbeat: %+v", ss)
	}
}

// §5.2: election timeouts "chosen randomly from a fixed interval", here
// [T, 2T).
func TestPaperElectionTimeoutRandomized(t *testing.T) {
	seen := map[int]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		cfg := testConfig(1, three...)
		cfg.RandSeed = seed
		n := mustNew(t, cfg)
		ticks := 0
		for n.SoftState().Role == RoleFollower {
			n.Tick()
			ticks++
			if ticks > 100 {
				t.Fatal("no campaign within 100 ticks")
			}
		}
		if ticks < 10 || ticks >= 20 {
			t.Fatalf("seed %d campaigned after %d ticks, want [10, 20)", seed, ticks)
		}
		seen[ticks] = true
	}
	if len(seen) < 5 {
		t.Fatalf("timeouts not spread: %v", seen)
	}
}

// Thesis §9.6: with pre-vote, a node that was partitioned away does not
// disrupt a healthy leader when it comes back, however long it waited.
func TestPreVoteDoesNotDisruptLeader(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	term := c.nodes[1].SoftState().Term
	isolated := func(m raftmsg.Message) bool { return m.From == 3 || m.To == 3 }
	c.cut = isolated
	for i := 0; i < 100; i++ {
		c.tick(1, 1)
		c.tick(2, 1)
		c.tick(3, 1)
		c.settle()
	}
	if ss := c.nodes[3].SoftState(); ss.Term != term || ss.Role == RoleLeader {
		t.Fatalf("isolated node: %+v; pre-vote must keep its term at %d", ss, term)
	}
	c.cut = nil
	for i := 0; i < 30; i++ {
		c.tick(1, 1)
		c.tick(2, 1)
		c.tick(3, 1)
		c.settle()
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleLeader || ss.Term != term {
		t.Fatalf("leader after the partition healed: %+v, want leader of term %d", ss, term)
	}
	if ss := c.nodes[3].SoftState(); ss.Leader != 1 {
		t.Fatalf("returning node follows %d", ss.Leader)
	}
}

// Thesis §6.2 (check-quorum): a leader that hears from no quorum for an
// election timeout steps down, and refuses proposals before that.
func TestCheckQuorumStepsDown(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.From == 1 || m.To == 1 }
	refused := false
	for i := 0; i < 10; i++ {
		c.tick(1, 1)
		c.settle()
		err := c.propose(1, uint64(100+i))
		if errors.Is(err, ErrNotQuorum) {
			refused = true
		}
	}
	if !refused {
		t.Fatal("an isolated leader kept accepting proposals for a whole election timeout")
	}
	if ss := c.nodes[1].SoftState(); ss.Role != RoleFollower || ss.Leader != raftmsg.None {
		t.Fatalf("isolated leader after an election timeout: %+v", ss)
	}
	if err := c.propose(1, 1); !errors.Is(err, ErrNoLeader) || RejectReasonOf(err) != raftmsg.RejectNoLeader {
		t.Fatalf("propose without a leader: %v", err)
	}
}

// Followers forward proposals to the leader; the request ids come back with
// the committed entries on every node.
func TestProposalForwardingKeepsRequestIDs(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(1)
	if err := c.propose(2, 41, 42, 43); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if err := c.propose(1, 44); err != nil {
		t.Fatal(err)
	}
	c.settle()
	c.tick(1, 1)
	c.settle()
	for id := raftmsg.NodeID(1); id <= 3; id++ {
		got := c.requestIDs(id)
		if len(got) != 4 || got[0] != 41 || got[1] != 42 || got[2] != 43 || got[3] != 44 {
			t.Fatalf("node %d applied request ids %v, want [41 42 43 44]", id, got)
		}
	}
}

// A proposal forwarded to a node that is no longer leader is refused back
// with a reason, which surfaces in the forwarder's Ready.
func TestForwardedProposalRefused(t *testing.T) {
	n := recovered(t, 1, three, 3, 1)
	err := n.Step(raftmsg.Message{Type: raftmsg.MsgProp, From: 2, To: 1,
		Entries: []raftmsg.Entry{{RequestID: 9, Data: []byte("x")}}})
	if err != nil {
		t.Fatal(err)
	}
	resp := msgsOfType(n.Ready().Messages, raftmsg.MsgPropResp)
	if len(resp) != 1 || !resp[0].Reject || resp[0].RejectReason != raftmsg.RejectNoLeader || resp[0].Entries[0].RequestID != 9 {
		t.Fatalf("responses %+v", resp)
	}
	f := recovered(t, 2, three, 3, 1)
	if err := f.Step(resp[0]); err != nil {
		t.Fatal(err)
	}
	rd := f.Ready()
	if len(rd.RejectedProposals) != 1 || rd.RejectedProposals[0] != (RejectedProposal{RequestID: 9, Reason: raftmsg.RejectNoLeader}) {
		t.Fatalf("rejected proposals %+v", rd.RejectedProposals)
	}
}

func TestProposeValidation(t *testing.T) {
	c := newCluster(t, 1)
	c.elect(1)
	if err := c.nodes[1].Propose(nil); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("empty proposal: %v", err)
	}
	if err := c.nodes[1].Propose([]raftmsg.Entry{{Type: raftmsg.EntryConfChange}}); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("conf change through Propose: %v", err)
	}
	if err := c.propose(1, 5); err != nil {
		t.Fatal(err)
	}
	c.settle()
	if got := c.requestIDs(1); len(got) != 1 || got[0] != 5 {
		t.Fatalf("single node applied %v", got)
	}
}

func TestOverloadedLeaderRefuses(t *testing.T) {
	cfg := testConfig(1, three...)
	cfg.MaxUncommittedBytes = 200
	n := mustNew(t, cfg)
	c := &cluster{t: t, nodes: map[raftmsg.NodeID]*Node{1: n, 2: mustNew(t, testConfig(2, three...)), 3: mustNew(t, testConfig(3, three...))}, applied: map[raftmsg.NodeID][]raftmsg.Entry{}}
	c.elect(1)
	c.cut = func(m raftmsg.Message) bool { return m.Type == raftmsg.MsgAppResp }
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = n.Propose([]raftmsg.Entry{{RequestID: uint64(i), Data: make([]byte, 50)}})
		c.settle()
	}
	if !errors.Is(err, ErrOverloaded) || RejectReasonOf(err) != raftmsg.RejectOverloaded {
		t.Fatalf("uncommitted tail beyond its bound: %v", err)
	}
}
