package node

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// LogStore is the durable log of one member.
type LogStore interface {
	// Save records hs (unless empty) and appends ents durably before it
	// returns; an entry at index i replaces i and every later entry. Group
	// commit across concurrent callers is the store's business; the
	// runtime calls it from one goroutine and merges queued Readys itself.
	Save(hs raftmsg.HardState, ents []raftmsg.Entry) error
}

// Recovered is the durable state a member restarts from.
type Recovered struct {
	HardState raftmsg.HardState
	// Entries are every durable entry, contiguous from index 1 (snapshots
	// are not produced yet: the consensus core keeps the whole log).
	Entries []raftmsg.Entry
}

// ErrStoreFailed is returned by MemStore.Save after FailSaves.
var ErrStoreFailed = errors.New("node: memstore: injected save failure")

// MemStore is an in-memory LogStore for tests: what Save accepted is what
// a "restart" (Recovered) gets back, so it models a disk whose fsync
// always completes; nothing unsynced exists to lose.
type MemStore struct {
	mu      sync.Mutex
	hs      raftmsg.HardState
	ents    []raftmsg.Entry
	saves   int
	failing bool
	// transient, when set, is returned by every Save (FailWith).
	transient error
	// blocked stalls every Save until Unblock (a disk that does not answer).
	blocked   bool
	unblocked sync.Cond
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	s := &MemStore{}
	s.unblocked.L = &s.mu
	return s
}

// Block stalls every later Save until Unblock.
func (s *MemStore) Block() {
	s.mu.Lock()
	s.blocked = true
	s.mu.Unlock()
}

// Unblock lets stalled and later Saves proceed.
func (s *MemStore) Unblock() {
	s.mu.Lock()
	s.blocked = false
	s.unblocked.Broadcast()
	s.mu.Unlock()
}

// Save implements LogStore.
func (s *MemStore) Save(hs raftmsg.HardState, ents []raftmsg.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.blocked {
		s.unblocked.Wait() // a stalled disk
	}
	if s.failing {
		return ErrStoreFailed
	}
	if s.transient != nil {
		return s.transient
	}
	if len(ents) > 0 {
		first := ents[0].Index
		last := uint64(len(s.ents))
		if first == 0 || first > last+1 {
			return fmt.Errorf("node: memstore: append at %d after last index %d", first, last)
		}
		s.ents = s.ents[:first-1]
		for _, e := range ents {
			e.Data = slices.Clone(e.Data) // the caller's buffers are not ours
			s.ents = append(s.ents, e)
		}
	}
	if !hs.IsEmpty() {
		s.hs = hs
	}
	s.saves++
	return nil
}

// FailSaves makes every later Save fail (a dead disk).
func (s *MemStore) FailSaves() {
	s.mu.Lock()
	s.failing = true
	s.mu.Unlock()
}

// FailWith makes every Save return err, which must mean "nothing written"
// (a full disk), until called again with nil.
func (s *MemStore) FailWith(err error) {
	s.mu.Lock()
	s.transient = err
	s.mu.Unlock()
}

// Saves is the number of successful Save calls (group commit shows as
// fewer saves than Readys).
func (s *MemStore) Saves() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}

// Recovered returns a copy of the durable state, as a restart would read it.
func (s *MemStore) Recovered() Recovered {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Recovered{HardState: s.hs, Entries: make([]raftmsg.Entry, len(s.ents))}
	for i, e := range s.ents {
		e.Data = slices.Clone(e.Data)
		out.Entries[i] = e
	}
	return out
}
