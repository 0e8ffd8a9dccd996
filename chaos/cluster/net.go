package cluster

import (
	"fmt"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
)

// Link returns the proxy that carries what node from sends to node to.
func (c *Cluster) Link(from, to int) *faultproxy.Proxy { return c.links[from][to] }

// each calls f for every directed link.
func (c *Cluster) each(f func(from, to int, p *faultproxy.Proxy)) {
	for from, row := range c.links {
		for to, p := range row {
			if p != nil {
				f(from, to, p)
			}
		}
	}
}

// cut is a blocked link: nothing passes either way on the connections
// from dials to to, and new ones are refused (from sees to as down).
var cut = faultproxy.Faults{Blocked: [2]bool{true, true}}

// Heal clears every network fault.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each(func(_, _ int, p *faultproxy.Proxy) { p.Heal() })
}

// Partition splits the members into the given groups: a member reaches
// only the members of its own group. A member in no group is isolated.
// Links within a group are left as they are.
func (c *Cluster) Partition(groups ...[]int) {
	group := make([]int, len(c.nodes))
	for i := range group {
		group[i] = -1 - i // alone unless listed
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each(func(from, to int, p *faultproxy.Proxy) {
		if group[from] != group[to] {
			p.SetFaults(cut)
		}
	})
}

// Isolate cuts member i from every other member, both ways.
func (c *Cluster) Isolate(i int) {
	rest := make([]int, 0, len(c.nodes)-1)
	for j := range c.nodes {
		if j != i {
			rest = append(rest, j)
		}
	}
	c.Partition([]int{i}, rest)
}

// CutOneWay stops what from sends to to; to's messages still reach from.
func (c *Cluster) CutOneWay(from, to int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links[from][to].SetFaults(cut)
}

// Bridge splits the members into two sides that cannot talk to each other
// and a bridge member that talks to both: with n members, the bridge is
// member b, one side the (n-1)/2 members after it, the other side the rest.
// Each side plus the bridge is a majority, so leadership can form on
// either side and the bridge's vote decides.
func (c *Cluster) Bridge(b int) {
	n := len(c.nodes)
	var left, right []int
	for k := 1; k < n; k++ {
		j := (b + k) % n
		if k <= (n-1)/2 {
			left = append(left, j)
		} else {
			right = append(right, j)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range left {
		for _, z := range right {
			c.links[a][z].SetFaults(cut)
			c.links[z][a].SetFaults(cut)
		}
	}
}

// SetLatency delays every link by latency plus a uniform [0, jitter)
// extra per chunk (order kept), replacing other faults on those links.
func (c *Cluster) SetLatency(latency, jitter time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each(func(_, _ int, p *faultproxy.Proxy) {
		p.SetFaults(faultproxy.Faults{Latency: latency, Jitter: jitter})
	})
}

// Stall holds every byte member i sends and receives (the connections stay
// up; the bytes are delivered, in order, once healed), as a long
// retransmission stall would.
func (c *Cluster) Stall(i int) {
	stalled := faultproxy.Faults{Stalled: [2]bool{true, true}}
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := range c.nodes {
		if j != i {
			c.links[i][j].SetFaults(stalled)
			c.links[j][i].SetFaults(stalled)
		}
	}
}

// DropConnections cuts every live peer connection once; the nodes redial.
func (c *Cluster) DropConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.each(func(_, _ int, p *faultproxy.Proxy) { p.DropConnections() })
}

// NetStats sums the proxies' counters, for reports.
func (c *Cluster) NetStats() faultproxy.Stats {
	var s faultproxy.Stats
	c.each(func(_, _ int, p *faultproxy.Proxy) {
		ps := p.Stats()
		s.Accepted += ps.Accepted
		s.Refused += ps.Refused
		s.Cut += ps.Cut
		for d := range 2 {
			s.BytesQueued[d] += ps.BytesQueued[d]
			s.BytesForwarded[d] += ps.BytesForwarded[d]
		}
	})
	return s
}

// String names the members and their addresses, for logs.
func (c *Cluster) String() string {
	s := ""
	for _, n := range c.nodes {
		s += fmt.Sprintf("%s client=%s peer=%s log=%s\n", n.Name, n.Client, n.Peer, n.LogPath)
	}
	return s
}
