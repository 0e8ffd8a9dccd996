package wire

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// waiters maps the request id of each Forward in flight to the channel its
// caller waits on. Sharded so that concurrent forwards rarely share a lock;
// channels are recycled so that a forward allocates only its outcome body.
type waiters struct {
	shards [16]waiterShard
	chans  sync.Pool
}

type waiterShard struct {
	mu sync.Mutex
	m  map[uint64]waiter // guarded by mu
}

type waiter struct {
	ch   chan forwardResult // capacity 1: deliver never blocks
	peer raftmsg.NodeID
}

type forwardResult struct {
	out Outcome
	err error
}

func (w *waiters) init() {
	for i := range w.shards {
		w.shards[i].m = make(map[uint64]waiter)
	}
}

func (w *waiters) shard(id uint64) *waiterShard { return &w.shards[id%uint64(len(w.shards))] }

func (w *waiters) add(id uint64, peer raftmsg.NodeID) (chan forwardResult, error) {
	ch, _ := w.chans.Get().(chan forwardResult)
	if ch == nil {
		ch = make(chan forwardResult, 1)
	}
	s := w.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[id]; dup {
		w.chans.Put(ch)
		return nil, fmt.Errorf("wire: request id %d already in flight", id)
	}
	s.m[id] = waiter{ch: ch, peer: peer}
	return ch, nil
}

// remove forgets id; after it returns nothing can be sent on ch any more
// (deliver sends under the same lock), so ch is drained and recycled.
func (w *waiters) remove(id uint64, ch chan forwardResult) {
	s := w.shard(id)
	s.mu.Lock()
	if cur, ok := s.m[id]; ok && cur.ch == ch {
		delete(s.m, id)
	}
	s.mu.Unlock()
	select {
	case <-ch:
	default:
	}
	w.chans.Put(ch)
}

// deliver hands o to the forward waiting for it, if the peer that answers
// is the one it was sent to. The body is copied: the caller of Forward
// owns it, while o.Body points into a receive buffer.
func (w *waiters) deliver(from raftmsg.NodeID, o Outcome) bool {
	s := w.shard(o.RequestID)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[o.RequestID]
	if !ok || cur.peer != from {
		return false
	}
	if len(o.Body) > 0 {
		o.Body = bytes.Clone(o.Body)
	} else {
		o.Body = nil
	}
	select {
	case cur.ch <- forwardResult{out: o}:
		return true
	default: // a duplicate answer: the first one stands
		return false
	}
}

// failPeer ends every forward waiting on peer with err: a connection to
// it broke, so their outcomes are unknown (they may still commit). Later
// answers find no waiter and are dropped.
func (w *waiters) failPeer(peer raftmsg.NodeID, err error) {
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, cur := range s.m {
			if cur.peer != peer {
				continue
			}
			select {
			case cur.ch <- forwardResult{out: Outcome{RequestID: id, Status: StatusUnknown}, err: err}:
			default:
			}
		}
		s.mu.Unlock()
	}
}
