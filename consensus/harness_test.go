package consensus

import (
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

func testConfig(id raftmsg.NodeID, voters ...raftmsg.NodeID) Config {
	return Config{ID: id, Voters: voters, ElectionTicks: 10, HeartbeatTicks: 1, RandSeed: uint64(id)}
}

func mustNew(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cluster routes messages between nodes by hand; every Ready is persisted
// and applied at once (Advance) unless a test does it itself.
type cluster struct {
	t     testing.TB
	nodes map[raftmsg.NodeID]*Node
	// cut drops messages for which it returns true.
	cut     func(m raftmsg.Message) bool
	applied map[raftmsg.NodeID][]raftmsg.Entry
	reads   map[raftmsg.NodeID][]ReadState
	// confs: every Ready.ConfState each node reported.
	confs map[raftmsg.NodeID][]raftmsg.ConfState
}

func newCluster(t testing.TB, n int) *cluster {
	c := &cluster{t: t, nodes: map[raftmsg.NodeID]*Node{}, applied: map[raftmsg.NodeID][]raftmsg.Entry{}}
	var ids []raftmsg.NodeID
	for i := 1; i <= n; i++ {
		ids = append(ids, raftmsg.NodeID(i))
	}
	for _, id := range ids {
		c.nodes[id] = mustNew(t, testConfig(id, ids...))
	}
	return c
}

// collect takes and acknowledges every node's Ready, returning the
// messages to deliver.
func (c *cluster) collect() []raftmsg.Message {
	var out []raftmsg.Message
	for id := raftmsg.NodeID(1); int(id) <= len(c.nodes); id++ {
		n := c.nodes[id]
		for n.HasReady() {
			rd := n.Ready()
			out = append(out, rd.Messages...)
			out = append(out, rd.MessagesAfterPersist...)
			c.applied[id] = append(c.applied[id], rd.CommittedEntries...)
			if c.reads == nil {
				c.reads = map[raftmsg.NodeID][]ReadState{}
			}
			c.reads[id] = append(c.reads[id], rd.ReadStates...)
			if rd.ConfState != nil {
				if c.confs == nil {
					c.confs = map[raftmsg.NodeID][]raftmsg.ConfState{}
				}
				c.confs[id] = append(c.confs[id], *rd.ConfState)
			}
			if err := n.Advance(rd); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	return out
}

// settle delivers messages until none are left (bounded).
func (c *cluster) settle() {
	for round := 0; round < 1000; round++ {
		msgs := c.collect()
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			if c.cut != nil && c.cut(m) {
				continue
			}
			m.Entries = cloneEnts(m.Entries)
			if err := c.nodes[m.To].Step(m); err != nil {
				c.t.Fatalf("step %v %d->%d: %v", m.Type, m.From, m.To, err)
			}
		}
	}
	c.t.Fatal("cluster did not settle in 1000 rounds")
}

func cloneEnts(ents []raftmsg.Entry) []raftmsg.Entry {
	if ents == nil {
		return nil
	}
	out := make([]raftmsg.Entry, len(ents))
	copy(out, ents)
	return out
}

func (c *cluster) tick(id raftmsg.NodeID, ticks int) {
	for i := 0; i < ticks; i++ {
		c.nodes[id].Tick()
	}
}

// elect makes id the leader by timing it out first.
func (c *cluster) elect(id raftmsg.NodeID) {
	c.t.Helper()
	c.tick(id, 2*c.nodes[id].cfg.ElectionTicks)
	c.settle()
	if r := c.nodes[id].SoftState().Role; r != RoleLeader {
		c.t.Fatalf("node %d is %v, want leader", id, r)
	}
}

func (c *cluster) propose(id raftmsg.NodeID, reqs ...uint64) error {
	ents := make([]raftmsg.Entry, len(reqs))
	for i, r := range reqs {
		ents[i] = raftmsg.Entry{RequestID: r, Data: []byte{byte(r)}}
	}
	return c.nodes[id].Propose(ents)
}

func (c *cluster) requestIDs(id raftmsg.NodeID) []uint64 {
	var out []uint64
	for _, e := range c.applied[id] {
		if e.Type == raftmsg.EntryNormal {
			out = append(out, e.RequestID)
		}
	}
	return out
}

// drainReady takes one Ready without acknowledging it.
func drainReady(n *Node) Ready {
	if !n.HasReady() {
		return Ready{}
	}
	return n.Ready()
}

func msgsOfType(msgs []raftmsg.Message, typ raftmsg.MessageType) []raftmsg.Message {
	var out []raftmsg.Message
	for _, m := range msgs {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// entries builds a log with the given terms at indexes 1, 2, ...
func entriesWithTerms(terms ...uint64) []raftmsg.Entry {
	out := make([]raftmsg.Entry, len(terms))
	for i, t := range terms {
		out[i] = raftmsg.Entry{Index: uint64(i) + 1, Term: t, Type: raftmsg.EntryNormal}
	}
	return out
}

// recovered makes a node restarted with the given durable log and term.
func recovered(t testing.TB, id raftmsg.NodeID, voters []raftmsg.NodeID, term uint64, terms ...uint64) *Node {
	cfg := testConfig(id, voters...)
	cfg.HardState = raftmsg.HardState{Term: term}
	cfg.Entries = entriesWithTerms(terms...)
	n := mustNew(t, cfg)
	// As if restarted long ago: past its post-restart quiet period.
	n.ticks = uint64(cfg.ElectionTicks)
	return n
}
