package consensus

import (
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// fuzzReader turns fuzz bytes into small numbers; exhausted input reads 0.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) more() bool { return len(r.b) > 0 }

// message decodes one message for node `to` whose current term is term:
// every field is attacker-chosen, terms and indexes near the node's own so
// that the interesting branches are reached.
func (r *fuzzReader) message(to raftmsg.NodeID, term, last uint64) raftmsg.Message {
	m := raftmsg.Message{
		Type:         raftmsg.MessageType(r.byte() % (uint8(raftmsg.NumMessageTypes) + 1)),
		From:         raftmsg.NodeID(r.byte() % 5),
		To:           to,
		Term:         max(0, term+uint64(r.byte()%4)-1),
		LogTerm:      term - min(term, uint64(r.byte()%4)),
		Index:        last - min(last, uint64(r.byte()%8)) + uint64(r.byte()%3),
		Commit:       uint64(r.byte() % 16),
		Reject:       r.byte()%2 == 1,
		RejectHint:   uint64(r.byte() % 16),
		RejectReason: raftmsg.RejectReason(r.byte() % 8),
		Context:      uint64(r.byte()),
	}
	if r.byte()%8 == 0 {
		m.To = raftmsg.NodeID(r.byte() % 5)
	}
	if m.Type == raftmsg.MsgSnap {
		m.Snapshot = r.snapshot(m.Term, last)
	}
	k := int(r.byte() % 5)
	for i := 0; i < k; i++ {
		e := raftmsg.Entry{Index: m.Index + 1 + uint64(i), Term: m.LogTerm + uint64(r.byte()%3),
			Type: raftmsg.EntryType(r.byte() % 4), RequestID: uint64(r.byte())}
		if r.byte()%4 == 0 {
			e.Index = uint64(r.byte())
		}
		if n := int(r.byte() % 8); n > 0 {
			e.Data = make([]byte, n)
		}
		if e.Type == raftmsg.EntryConfChange && r.byte()%4 != 0 {
			// Mostly well-formed: add, promote or remove a member, a
			// stranger or this node itself (ids 1-5).
			e.Data = raftmsg.AppendConfChange(nil, raftmsg.ConfChange{
				Type: raftmsg.ConfChangeType(1 + r.byte()%3), NodeID: raftmsg.NodeID(1 + r.byte()%5)})
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// snapshot decodes a snapshot meta around the receiver's log: stale,
// matching, conflicting or beyond it, with a configuration that may be
// malformed.
func (r *fuzzReader) snapshot(term, last uint64) raftmsg.SnapshotMeta {
	s := raftmsg.SnapshotMeta{
		Index: last - min(last, uint64(r.byte()%8)) + uint64(r.byte()%6),
		Term:  term - min(term, uint64(r.byte()%3)),
	}
	switch r.byte() % 5 {
	case 0: // none
	case 1:
		s.Conf.Voters = []raftmsg.NodeID{1, 2, 3}
	case 2:
		s.Conf = raftmsg.ConfState{Voters: []raftmsg.NodeID{3, 1, 2}, Learners: []raftmsg.NodeID{4}}
	case 3:
		s.Conf.Voters = []raftmsg.NodeID{1, 2}
	default:
		s.Conf = raftmsg.ConfState{Voters: []raftmsg.NodeID{raftmsg.NodeID(r.byte() % 5), raftmsg.NodeID(r.byte() % 5)},
			Learners: []raftmsg.NodeID{raftmsg.NodeID(r.byte() % 5)}}
	}
	return s
}

// FuzzStep feeds arbitrary messages into every role of a node: Step must
// never panic, must refuse what it cannot take with an error, and must keep
// the node's invariants, its term and commit index monotonic, and its
// Ready/acknowledgement cycle working.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, byte(raftmsg.MsgApp), 2, 1, 0, 0, 5, 0, 0, 0, 0, 0, 2, 1, 0, 1, 3})
	f.Add([]byte{1, byte(raftmsg.MsgAppResp), 2, 1, 0, 0, 3, 0, 0, 1, 9, 0, 0, 0, 0})
	f.Add([]byte{2, byte(raftmsg.MsgVote), 3, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, byte(raftmsg.MsgProp), 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 7, 1, 0, 0, 8, 1})
	f.Add([]byte{3, byte(raftmsg.MsgPreVoteResp), 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(raftmsg.MsgVoteResp), 3, 1})
	// Appends carrying conf changes: remove this node, promote a stranger.
	// Layout: role; then per message type, from, term, log term, index (2),
	// commit, reject, hint, reason, context, to, entry count, per entry
	// (term, type, request, index, data length, conf-change flag, type,
	// node); then tick and advance.
	app := func(role byte, ccType, ccNode byte) []byte {
		return []byte{role, byte(raftmsg.MsgApp), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
			0, byte(raftmsg.EntryConfChange), 7, 1, 0, 1, ccType, ccNode, 1, 0,
			byte(raftmsg.MsgHeartbeat), 1, 1, 0, 0, 0, 15, 0, 0, 0, 0, 1, 0, 1, 0}
	}
	f.Add(app(0, 2, 1)) // follower 2 appends its own removal, then learns it committed
	f.Add(app(4, 1, 3)) // learner 4 appends its own promotion
	f.Add(app(0, 0, 4)) // follower 2 learns of a new learner 5
	f.Add([]byte{5, byte(raftmsg.MsgHeartbeatResp), 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0})
	// Snapshots: a follower gets a newer one, a stale one, a matching one;
	// a leader that compacted is probed by a follower far behind. A role
	// byte of 6 or more (mod 12) compacts the node's log first.
	f.Add([]byte{6, byte(raftmsg.MsgSnap), 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 0, 1, 0, 1, 0})
	f.Add([]byte{0, byte(raftmsg.MsgSnap), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 2, 0, 1, 0})
	f.Add([]byte{6, byte(raftmsg.MsgSnap), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0, 4, 1, 2, 3, 0, 1, 1})
	f.Add([]byte{7, byte(raftmsg.MsgAppResp), 3, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 2, 0,
		byte(raftmsg.MsgHeartbeatResp), 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 4, 0})
	f.Fuzz(fuzzStepOnce)
}

func fuzzStepOnce(t *testing.T, data []byte) {
	{
		r := &fuzzReader{b: data}
		// Start from a node of a chosen role with some history.
		c := newCluster(t, 3)
		c.elect(1)
		// Node 3 misses the proposals: a leader that compacts must send it
		// a snapshot.
		c.cut = func(m raftmsg.Message) bool { return m.To == 3 || m.From == 3 }
		for i := uint64(1); i <= 3; i++ {
			if err := c.propose(1, i); err != nil {
				t.Fatal(err)
			}
			c.settle()
		}
		c.cut = nil
		var n *Node
		roleByte := r.byte()
		switch roleByte % 6 {
		case 0:
			n = c.nodes[2] // follower
		case 1:
			n = c.nodes[1] // leader
		case 2:
			n = c.nodes[3]
			n.Tick() // may become pre-candidate below
			for n.SoftState().Role == RoleFollower {
				n.Tick()
			}
		case 4:
			// A learner (node 4, just added).
			c.addNode(4)
			c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
			n = c.nodes[4]
		case 5:
			// The leader, with a learner and its own removal pending.
			c.addNode(4)
			c.mustChange(1, raftmsg.ConfChangeAddLearner, 4)
			n = c.nodes[1]
			if err := n.ProposeConfChange(raftmsg.ConfChange{Type: raftmsg.ConfChangeRemove, NodeID: 1}, 9); err != nil {
				t.Fatal(err)
			}
		default:
			n = c.nodes[3]
			for n.SoftState().Role != RoleCandidate {
				n.Tick()
				if n.SoftState().Role == RolePreCandidate {
					_ = n.Step(raftmsg.Message{Type: raftmsg.MsgPreVoteResp, From: 2, To: 3, Term: n.SoftState().Term + 1})
				}
			}
		}
		if roleByte/6%2 == 1 && n.Status().Applied > 0 {
			// Compact at the applied index: followers may now need a
			// snapshot. A joiner (no snapshot yet) refuses.
			meta, err := n.SnapshotMeta(n.Status().Applied)
			switch {
			case err == nil:
				if err := n.Compact(meta); err != nil {
					t.Fatal(err)
				}
			case !n.confHistoryUnknown:
				t.Fatal(err)
			}
		}
		wasRemoved := n.SoftState().Removed
		for steps := 0; r.more() && steps < 64; steps++ {
			before := n.HardState()
			m := r.message(n.ID(), before.Term, n.LastIndex())
			_ = n.Step(m) // errors are fine; panics and broken invariants are not
			switch v := r.byte(); {
			case v%3 == 0:
				n.Tick()
			case v%12 == 4:
				n.ReportSnapshot(m.From, r.byte()%2 == 0)
			case v%12 == 5:
				n.ReportUnreachable(m.From)
			}
			after := n.HardState()
			if after.Term < before.Term || after.Commit < before.Commit {
				t.Fatalf("hard state went back from %+v to %+v on %+v", before, after, m)
			}
			if err := n.CheckInvariants(true); err != nil {
				t.Fatalf("after %+v: %v", m, err)
			}
			if removed := n.SoftState().Removed; wasRemoved && !removed {
				t.Fatalf("Removed went back to false after %+v", m)
			}
			wasRemoved = n.SoftState().Removed
			if n.HasReady() {
				rd := n.Ready()
				if !rd.Snapshot.IsEmpty() && rd.Snapshot.Index <= before.Commit {
					t.Fatalf("installed snapshot %+v at or below the commit index %d", rd.Snapshot, before.Commit)
				}
				for _, a := range rd.Messages {
					if a.Type == raftmsg.MsgAppResp && !a.Reject && a.Index > 0 {
						t.Fatalf("acknowledgement %+v sent before persisting", a)
					}
				}
				if r.byte()%2 == 0 {
					if err := n.Advance(rd); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}
