package consensus

import (
	"errors"
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/consensus/tracker"
)

// leaderWithReplicatingFollower returns a 3-node cluster led by 1 whose
// follower 2 is in pipelined replication, with cfg limits applied to 1.
func leaderWithLimits(t *testing.T, edit func(*Config)) *cluster {
	cfg := testConfig(1, three...)
	edit(&cfg)
	c := &cluster{t: t, nodes: map[raftmsg.NodeID]*Node{1: mustNew(t, cfg), 2: mustNew(t, testConfig(2, three...)), 3: mustNew(t, testConfig(3, three...))}, applied: map[raftmsg.NodeID][]raftmsg.Entry{}}
	c.elect(1)
	c.tick(1, 1)
	c.settle()
	if pr := c.nodes[1].Status().Peers[1]; pr.State != tracker.StateReplicate {
		t.Fatalf("follower 2 is %v, want replicate", pr.State)
	}
	return c
}

// appendsTo proposes on the leader with acknowledgements held back and
// returns the append messages sent to node 2.
func appendsTo2(t *testing.T, n *Node, sizes ...int) []raftmsg.Message {
	t.Helper()
	for i, size := range sizes {
		if err := n.Propose([]raftmsg.Entry{{RequestID: uint64(i + 1), Data: make([]byte, size)}}); err != nil {
			t.Fatal(err)
		}
	}
	rd := n.Ready()
	if err := n.Advance(rd); err != nil {
		t.Fatal(err)
	}
	var out []raftmsg.Message
	for _, m := range msgsOfType(rd.Messages, raftmsg.MsgApp) {
		if m.To == 2 && len(m.Entries) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func TestInflightWindowBoundedByCount(t *testing.T) {
	c := leaderWithLimits(t, func(cfg *Config) { cfg.MaxInflightMsgs = 3 })
	got := appendsTo2(t, c.nodes[1], 8, 8, 8, 8, 8)
	if len(got) != 3 {
		t.Fatalf("%d appends in flight, want the window of 3", len(got))
	}
	// An acknowledgement frees the window and the rest goes.
	last := got[0].Entries[len(got[0].Entries)-1].Index
	if err := c.nodes[1].Step(raftmsg.Message{Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: got[0].Term, Index: last}); err != nil {
		t.Fatal(err)
	}
	if more := msgsOfType(c.nodes[1].Ready().Messages, raftmsg.MsgApp); len(more) == 0 {
		t.Fatal("nothing sent after the window opened")
	}
}

func TestInflightWindowBoundedByBytes(t *testing.T) {
	// Every entry costs 100 + 32 bytes; 400 bytes of window hold 3 of them.
	c := leaderWithLimits(t, func(cfg *Config) { cfg.MaxInflightBytes = 400; cfg.MaxMsgBytes = 150 })
	got := appendsTo2(t, c.nodes[1], 100, 100, 100, 100, 100)
	var bytes uint64
	for _, m := range got {
		for i := range m.Entries {
			bytes += m.Entries[i].PayloadBytes()
		}
	}
	if len(got) != 3 || bytes > 400 {
		t.Fatalf("%d appends with %d bytes in flight, want 3 within 400 bytes", len(got), bytes)
	}
}

// One entry larger than the whole window goes out alone once the window is
// empty: replication never stalls on a big entry.
func TestOversizedEntryGoesAlone(t *testing.T) {
	c := leaderWithLimits(t, func(cfg *Config) { cfg.MaxInflightBytes = 256; cfg.MaxMsgBytes = 128 })
	got := appendsTo2(t, c.nodes[1], 1000, 10)
	if len(got) != 1 || len(got[0].Entries) != 1 || len(got[0].Entries[0].Data) != 1000 {
		t.Fatalf("appends %d, want the big entry alone", len(got))
	}
	c.settle() // acknowledgements flow; the small entry follows
	c.tick(1, 1)
	c.settle()
	if got := c.requestIDs(2); len(got) != 2 {
		t.Fatalf("follower applied %v, want both entries", got)
	}
}

// Paper §5.3: with the conflicting-term hint "one AppendEntries RPC will be
// required for each term with conflicting entries, rather than one RPC per
// entry".
func TestFastBacktracking(t *testing.T) {
	// Leader's log: 1 entry of term 1 then 50 of term 3 (it will lead term 4).
	leaderTerms := []uint64{1}
	followerTerms := []uint64{1}
	for i := 0; i < 50; i++ {
		leaderTerms = append(leaderTerms, 3)
		followerTerms = append(followerTerms, 2)
	}
	n1 := recovered(t, 1, three, 3, leaderTerms...)
	n2 := recovered(t, 2, three, 3, followerTerms...)
	n3 := recovered(t, 3, three, 3, leaderTerms...)
	c := &cluster{t: t, nodes: map[raftmsg.NodeID]*Node{1: n1, 2: n2, 3: n3}, applied: map[raftmsg.NodeID][]raftmsg.Entry{}}
	rejections := 0
	c.cut = func(m raftmsg.Message) bool {
		if m.Type == raftmsg.MsgAppResp && m.From == 2 && m.Reject {
			rejections++
		}
		return false
	}
	c.elect(1)
	c.tick(1, 1)
	c.settle()
	if rejections > 2 {
		t.Fatalf("%d rejections to skip one conflicting term", rejections)
	}
	if t2, _ := n2.LogTerm(51); t2 != 3 || n2.LastIndex() != 52 {
		t.Fatalf("follower log: last %d, term at 51 = %d", n2.LastIndex(), t2)
	}
}

func TestStepRejectsGarbage(t *testing.T) {
	n := recovered(t, 1, three, 2, 1, 2)
	for name, m := range map[string]raftmsg.Message{
		"invalid type":   {Type: raftmsg.MsgInvalid, From: 2, To: 1, Term: 2},
		"unknown type":   {Type: raftmsg.NumMessageTypes, From: 2, To: 1, Term: 2},
		"wrong receiver": {Type: raftmsg.MsgHeartbeat, From: 2, To: 3, Term: 2},
		"from self":      {Type: raftmsg.MsgHeartbeat, From: 1, To: 1, Term: 2},
		"from nobody":    {Type: raftmsg.MsgHeartbeat, From: 0, To: 1, Term: 2},
		"term zero":      {Type: raftmsg.MsgVote, From: 2, To: 1},
		"gap in entries": {Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 2, Entries: []raftmsg.Entry{{Index: 4, Term: 3}}},
		"entry term above message": {Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 2,
			Entries: []raftmsg.Entry{{Index: 3, Term: 4}}},
		"prev term above message": {Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 4},
		"index overflow": {Type: raftmsg.MsgApp, From: 2, To: 1, Term: 3, Index: ^uint64(0), LogTerm: 1,
			Entries: []raftmsg.Entry{{Index: 0, Term: 3}}},
		"hint above index":      {Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: 2, Index: 1, Reject: true, RejectHint: 5},
		"bad reason":            {Type: raftmsg.MsgPropResp, From: 2, To: 1, Reject: true, RejectReason: 200},
		"empty proposal":        {Type: raftmsg.MsgProp, From: 2, To: 1},
		"snapshot without meta": {Type: raftmsg.MsgSnap, From: 2, To: 1, Term: 2},
	} {
		before := n.HardState()
		err := n.Step(m)
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: got %v, want an invalid-message error", name, err)
		}
		if n.HardState() != before {
			t.Errorf("%s: state changed to %+v", name, n.HardState())
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := testConfig(1, three...)
	for name, edit := range map[string]func(*Config){
		"no id":           func(c *Config) { c.ID = 0 },
		"no voters":       func(c *Config) { c.Voters = nil },
		"zero voter":      func(c *Config) { c.Voters = []raftmsg.NodeID{1, 0} },
		"repeated voter":  func(c *Config) { c.Voters = []raftmsg.NodeID{1, 2, 2} },
		"heartbeat >= et": func(c *Config) { c.HeartbeatTicks = 10 },
		"gap in entries":  func(c *Config) { c.HardState.Term = 1; c.Entries = []raftmsg.Entry{{Index: 2, Term: 1}} },
		"entry term above hard state": func(c *Config) {
			c.HardState.Term = 1
			c.Entries = entriesWithTerms(2)
		},
		"commit beyond log": func(c *Config) { c.HardState = raftmsg.HardState{Term: 1, Commit: 3}; c.Entries = entriesWithTerms(1) },
		"applied beyond commit": func(c *Config) {
			c.HardState = raftmsg.HardState{Term: 1, Commit: 1}
			c.Entries = entriesWithTerms(1, 1)
			c.Applied = 2
		},
	} {
		cfg := good
		edit(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// After a restart the committed entries after Applied come back.
func TestRestartReappliesCommitted(t *testing.T) {
	cfg := testConfig(1, three...)
	cfg.HardState = raftmsg.HardState{Term: 2, Vote: 1, Commit: 3}
	cfg.Entries = entriesWithTerms(1, 1, 2, 2)
	cfg.Applied = 1
	n := mustNew(t, cfg)
	rd := n.Ready()
	if len(rd.CommittedEntries) != 2 || rd.CommittedEntries[0].Index != 2 || !rd.HardState.IsEmpty() || len(rd.Entries) != 0 {
		t.Fatalf("first ready after restart: %+v", rd)
	}
}

func TestStatus(t *testing.T) {
	c := newCluster(t, 3)
	c.elect(2)
	if err := c.propose(2, 1, 2); err != nil {
		t.Fatal(err)
	}
	c.settle()
	c.tick(2, 1)
	c.settle()
	st := c.nodes[2].Status()
	if st.ID != 2 || st.Role != RoleLeader || st.Leader != 2 || st.Commit != 3 || st.Applied != 3 || st.LastIndex != 3 || st.Persisted != 3 {
		t.Fatalf("leader status %+v", st)
	}
	if len(st.Peers) != 3 {
		t.Fatalf("peers %+v", st.Peers)
	}
	for _, p := range st.Peers {
		if p.Match != 3 || p.Next != 4 || !p.RecentActive {
			t.Fatalf("peer %+v", p)
		}
		if p.ID != 2 && p.State != tracker.StateReplicate {
			t.Fatalf("peer %+v", p)
		}
	}
	fs := c.nodes[1].Status()
	if fs.Role != RoleFollower || fs.Leader != 2 || fs.Term != st.Term || fs.Peers != nil || fs.Commit != 3 {
		t.Fatalf("follower status %+v", fs)
	}
}
