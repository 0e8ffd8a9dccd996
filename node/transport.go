package node

import (
	"slices"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Transport carries this member's Raft messages to its peers. Inbound
// messages arrive through Node.Receive, called by the transport's own
// goroutines.
type Transport interface {
	// Send queues m for m.To and returns at once; false when it was
	// dropped (unknown peer, queue full). Raft treats a drop as a loss.
	// Safe for concurrent use (the raft loop and the persister both send).
	// m.Entries and their Data must not be modified by the transport and
	// stay valid only until they are encoded or copied.
	Send(m raftmsg.Message) bool
}

// Receiver takes inbound messages; *Node implements it.
type Receiver interface {
	// Receive hands over msgs; release (may be nil) is called once the
	// messages and everything they point to are no longer used.
	Receive(msgs []raftmsg.Message, release func())
}

// MemNetwork is an in-process network of members for tests: Send copies
// the message (as an encoder would) and hands it to the receiver at once;
// links can be cut in either direction.
type MemNetwork struct {
	mu      sync.RWMutex
	members map[raftmsg.NodeID]Receiver
	cut     map[[2]raftmsg.NodeID]bool // [from, to]
	down    map[raftmsg.NodeID]bool
	// dropOrigin clears Entry.Origin in transit, as a codec that does not
	// carry the field would.
	dropOrigin bool
}

// DropOrigin makes the network lose Entry.Origin in transit (a wire codec
// without the field).
func (n *MemNetwork) DropOrigin() {
	n.mu.Lock()
	n.dropOrigin = true
	n.mu.Unlock()
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{
		members: make(map[raftmsg.NodeID]Receiver),
		cut:     make(map[[2]raftmsg.NodeID]bool),
		down:    make(map[raftmsg.NodeID]bool),
	}
}

// Join attaches r as member id (replacing an earlier one: a restart) and
// returns its Transport.
func (n *MemNetwork) Join(id raftmsg.NodeID, r Receiver) Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.members[id] = r
	delete(n.down, id)
	return memTransport{net: n, from: id}
}

// Isolate cuts (or with false restores) every link to and from id.
func (n *MemNetwork) Isolate(id raftmsg.NodeID, isolated bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if isolated {
		n.down[id] = true
	} else {
		delete(n.down, id)
	}
}

// Cut drops (or with false restores) messages from one member to another.
func (n *MemNetwork) Cut(from, to raftmsg.NodeID, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cut {
		n.cut[[2]raftmsg.NodeID{from, to}] = true
	} else {
		delete(n.cut, [2]raftmsg.NodeID{from, to})
	}
}

type memTransport struct {
	net  *MemNetwork
	from raftmsg.NodeID
}

func (t memTransport) Send(m raftmsg.Message) bool {
	n := t.net
	n.mu.RLock()
	r := n.members[m.To]
	blocked := n.down[t.from] || n.down[m.To] || n.cut[[2]raftmsg.NodeID{t.from, m.To}]
	dropOrigin := n.dropOrigin
	n.mu.RUnlock()
	if r == nil || blocked {
		return false
	}
	// Copy what an encoder would: the receiver must never share the
	// sender's log or buffers.
	if len(m.Entries) > 0 {
		ents := make([]raftmsg.Entry, len(m.Entries))
		for i, e := range m.Entries {
			e.Data = slices.Clone(e.Data)
			if dropOrigin {
				e.Origin = raftmsg.None
			}
			ents[i] = e
		}
		m.Entries = ents
	}
	m.Snapshot.Conf.Voters = slices.Clone(m.Snapshot.Conf.Voters)
	m.Snapshot.Conf.Learners = slices.Clone(m.Snapshot.Conf.Learners)
	r.Receive([]raftmsg.Message{m}, nil)
	return true
}
