package node

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/ops"
)

// Membership metrics, on the member's ops.Metrics:
//
//	edgekv_cluster_members{role="voter"|"learner"}   gauge: the applied member table
//	edgekv_membership_changes_total{change=...}      counter: conf changes applied here
//	edgekv_replication_* {peer=<name>}                per-peer series (ops.PeerMetrics),
//	                                                  written by the leader, started and
//	                                                  stopped as members join and leave

const (
	famClusterMembers    = "edgekv_cluster_members"
	famMembershipChanges = "edgekv_membership_changes_total"
)

// membershipMetrics is the member's part of the metrics (nil: none).
type membershipMetrics struct {
	m       *ops.Metrics
	changes [3]*metrics.Counter // by ConfChangeType-1
	// peers: names with per-peer series (raft loop only).
	peers map[string]*ops.PeerMetrics
}

func newMembershipMetrics(m *ops.Metrics, table func() *memberTable) *membershipMetrics {
	if m == nil {
		return nil
	}
	set := m.Set()
	for _, d := range [...]struct{ fam, typ, help string }{
		{famClusterMembers, "gauge", "Members in this node's applied member table, by role (voter or learner)."},
		{famMembershipChanges, "counter", "Membership changes applied by this node, by change (add-learner, promote, remove)."},
	} {
		if err := m.Describe(d.fam, d.typ, d.help); err != nil {
			panic(fmt.Sprintf("node: %v", err)) // our constants
		}
	}
	count := func(learner bool) func() float64 {
		return func() float64 {
			n := 0
			for _, r := range table().members {
				if r.Learner == learner {
					n++
				}
			}
			return float64(n)
		}
	}
	set.NewGauge(famClusterMembers+`{role="voter"}`, count(false))
	set.NewGauge(famClusterMembers+`{role="learner"}`, count(true))
	mm := &membershipMetrics{m: m, peers: map[string]*ops.PeerMetrics{}}
	for t := raftmsg.ConfChangeAddLearner; t <= raftmsg.ConfChangeRemove; t++ {
		mm.changes[t-1] = set.NewCounter(fmt.Sprintf(`%s{change=%q}`, famMembershipChanges, confChangeName(t)))
	}
	return mm
}

func (mm *membershipMetrics) countChange(t raftmsg.ConfChangeType) {
	if mm != nil && t.Valid() && int(t) <= len(mm.changes) {
		mm.changes[t-1].Inc()
	}
}

// updatePeers writes the leader's view of every other member and stops
// the series of members that left (raft loop).
func (mm *membershipMetrics) updatePeers(st consensus.Status, self raftmsg.NodeID, tab *memberTable) {
	if mm == nil {
		return
	}
	seen := map[string]bool{}
	if st.Role == consensus.RoleLeader {
		for _, p := range st.Peers {
			r, ok := tab.byID(p.ID)
			if p.ID == self || !ok {
				continue
			}
			seen[r.Name] = true
			pm := mm.peers[r.Name]
			if pm == nil {
				pm = mm.m.AddPeer(r.Name)
				mm.peers[r.Name] = pm
			}
			lag := uint64(0)
			if st.LastIndex > p.Match {
				lag = st.LastIndex - p.Match
			}
			pm.SetLag(lag)
			pm.SetInflightBytes(p.InflightBytes)
			pm.SetReachable(p.RecentActive)
		}
	}
	// Members that left, or every member once this node no longer leads
	// (a follower does not know replication progress: it exports none).
	for name := range mm.peers {
		if !seen[name] {
			mm.m.RemovePeer(name)
			delete(mm.peers, name)
		}
	}
}
