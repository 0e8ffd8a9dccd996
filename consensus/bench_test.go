package consensus

import (
	"testing"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// BenchmarkLeaderProposeCommit measures the leader's hot path for one
// proposed entry: Propose, Ready (entries + appends to two followers),
// persistence acknowledgement, both followers' acknowledgements, commit,
// Ready (committed entry + commit-carrying appends), acknowledgement. The
// followers' answers are made by hand so only the leader is measured.
// Target: 0 allocs/op. The bytes/op left are the in-memory log growing
// (amortized slice doubling; compaction comes with snapshots).
func BenchmarkLeaderProposeCommit(b *testing.B) {
	c := newCluster(b, 3)
	c.elect(1)
	c.tick(1, 1)
	c.settle()
	n := c.nodes[1]
	term := n.SoftState().Term
	data := make([]byte, 128)
	ents := []raftmsg.Entry{{Data: data}}
	ack := [2]raftmsg.Message{
		{Type: raftmsg.MsgAppResp, From: 2, To: 1, Term: term},
		{Type: raftmsg.MsgAppResp, From: 3, To: 1, Term: term},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ents[0].RequestID = uint64(i)
		if err := n.Propose(ents); err != nil {
			b.Fatal(err)
		}
		rd := n.Ready()
		if err := n.AckPersisted(rd.Seq); err != nil {
			b.Fatal(err)
		}
		last := n.LastIndex()
		for j := range ack {
			ack[j].Index = last
			if err := n.Step(ack[j]); err != nil {
				b.Fatal(err)
			}
		}
		rd = n.Ready()
		if len(rd.CommittedEntries) != 1 {
			b.Fatalf("committed %d entries", len(rd.CommittedEntries))
		}
		if err := n.Advance(rd); err != nil {
			b.Fatal(err)
		}
		if i%64 == 0 {
			n.Tick() // heartbeats keep check-quorum satisfied
			for j := range ack {
				hb := raftmsg.Message{Type: raftmsg.MsgHeartbeatResp, From: ack[j].From, To: 1, Term: term}
				if err := n.Step(hb); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// BenchmarkCluster3Proposals pushes proposals of one 128-byte entry
// through a whole 3-node in-memory cluster (every node's Ready persisted
// at once, messages delivered in memory) and reports proposals per second.
func BenchmarkCluster3Proposals(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(map[int]string{1: "batch=1", 16: "batch=16"}[batch], func(b *testing.B) {
			c := newCluster(b, 3)
			c.elect(1)
			c.tick(1, 1)
			c.settle()
			data := make([]byte, 128)
			ents := make([]raftmsg.Entry, batch)
			for i := range ents {
				ents[i].Data = data
			}
			var queue []raftmsg.Message
			b.ReportAllocs()
			b.ResetTimer()
			proposed := 0
			for proposed < b.N {
				for i := range ents {
					ents[i].RequestID = uint64(proposed + i)
				}
				if err := c.nodes[1].Propose(ents); err != nil {
					b.Fatal(err)
				}
				proposed += batch
				queue = pump(b, c, queue)
				if proposed%(64*batch) == 0 {
					c.nodes[1].Tick()
				}
			}
			for k := 0; k < 8; k++ {
				queue = pump(b, c, queue)
			}
			b.StopTimer()
			if got := c.nodes[1].HardState().Commit; got < uint64(proposed) {
				b.Fatalf("committed %d of %d", got, proposed)
			}
			b.ReportMetric(float64(proposed)/b.Elapsed().Seconds(), "proposals/s")
		})
	}
}

// pump runs one round: every node's Ready is persisted, applied and its
// messages delivered.
func pump(b *testing.B, c *cluster, queue []raftmsg.Message) []raftmsg.Message {
	queue = queue[:0]
	for id := raftmsg.NodeID(1); id <= 3; id++ {
		n := c.nodes[id]
		if !n.HasReady() {
			continue
		}
		rd := n.Ready()
		queue = append(queue, rd.Messages...)
		queue = append(queue, rd.MessagesAfterPersist...)
		if err := n.Advance(rd); err != nil {
			b.Fatal(err)
		}
	}
	for _, m := range queue {
		if err := c.nodes[m.To].Step(m); err != nil {
			b.Fatal(err)
		}
	}
	return queue
}
