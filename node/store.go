package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/storage/snapfile"
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
	// Snapshot is the newest durable snapshot's meta (empty if none) and
	// SnapshotPayload its kv payload, which New reads whole; the caller
	// closes whatever backs it after New returns.
	Snapshot        raftmsg.SnapshotMeta
	SnapshotPayload io.Reader
	// Entries are every durable entry after the snapshot (or from index
	// 1), contiguous.
	Entries []raftmsg.Entry
}

// ErrStoreFailed is returned by MemStore.Save after FailSaves.
var ErrStoreFailed = errors.New("node: memstore: injected save failure")

// MemStore is an in-memory LogStore for tests: what Save accepted is what
// a "restart" (Recovered) gets back, so it models a disk whose fsync
// always completes; nothing unsynced exists to lose.
type MemStore struct {
	mu   sync.Mutex
	hs   raftmsg.HardState
	ents []raftmsg.Entry // after snap.Index, contiguous
	// snapFile is the newest snapshot as a snapfile (storage's format, so
	// the bytes a leader sends are the bytes a follower verifies); snap
	// its meta, zero when none.
	snapFile []byte
	snap     raftmsg.SnapshotMeta
	// snapshots counts SaveSnapshot and InstallSnapshot calls that
	// succeeded, installs those of InstallSnapshot.
	snapshots, installs int
	saves               int
	failing             bool
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
		last := s.snap.Index + uint64(len(s.ents))
		if first <= s.snap.Index || first > last+1 {
			return fmt.Errorf("node: memstore: append at %d after last index %d (snapshot %d)", first, last, s.snap.Index)
		}
		s.ents = s.ents[:first-1-s.snap.Index]
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
	if s.snap.Index > 0 {
		o, err := openSnapfileBytes(s.snapFile)
		if err != nil {
			panic(fmt.Sprintf("node: memstore: own snapshot unreadable: %v", err)) // we wrote and verified it
		}
		out.Snapshot, out.SnapshotPayload = o.Meta, o.Payload
	}
	return out
}

var _ SnapshotStore = (*MemStore)(nil)

// SaveSnapshot implements SnapshotStore (uncompressed snapfile in memory).
func (s *MemStore) SaveSnapshot(meta raftmsg.SnapshotMeta, membership []byte, writePayload func(io.Writer) error) error {
	// Written outside the lock, as storage does: Save goes on meanwhile.
	var buf bytes.Buffer
	if _, err := snapfile.Write(&buf, meta, membership, snapfile.CodecNone, writePayload); err != nil {
		return fmt.Errorf("node: memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return ErrStoreFailed
	}
	last := s.snap.Index + uint64(len(s.ents))
	if meta.Index <= s.snap.Index || meta.Index > last {
		return fmt.Errorf("node: memstore: snapshot at %d outside (%d, %d]", meta.Index, s.snap.Index, last)
	}
	s.ents = slices.Clone(s.ents[meta.Index-s.snap.Index:])
	s.snapFile, s.snap = buf.Bytes(), meta
	s.snapshots++
	return nil
}

// OpenSnapshotFile implements SnapshotStore.
func (s *MemStore) OpenSnapshotFile() (SnapshotFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.Index == 0 {
		return nil, nil
	}
	return memFile{Reader: bytes.NewReader(s.snapFile), meta: s.snap}, nil
}

type memFile struct {
	*bytes.Reader
	meta raftmsg.SnapshotMeta
}

func (f memFile) Meta() raftmsg.SnapshotMeta { return f.meta }
func (f memFile) Close() error               { return nil }

// HoldSnapshot implements SnapshotStore.
func (s *MemStore) HoldSnapshot(r io.Reader) (HeldSnapshot, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("node: memstore: receive snapshot: %w", err)
	}
	o, err := openSnapfileBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("node: memstore: received snapshot: %w", err)
	}
	o.Close()
	return &memHeld{raw: raw, meta: o.Meta}, nil
}

// InstallSnapshot implements SnapshotStore: the log is reset.
func (s *MemStore) InstallSnapshot(held HeldSnapshot) (raftmsg.SnapshotMeta, error) {
	h, ok := held.(*memHeld)
	if !ok || h.raw == nil {
		return raftmsg.SnapshotMeta{}, errors.New("node: memstore: install of a snapshot it does not hold")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return raftmsg.SnapshotMeta{}, ErrStoreFailed
	}
	if h.meta.Index <= s.snap.Index {
		return raftmsg.SnapshotMeta{}, fmt.Errorf("node: memstore: snapshot at %d is not newer than %d", h.meta.Index, s.snap.Index)
	}
	s.snapFile, s.snap, s.ents = h.raw, h.meta, nil
	h.raw = nil
	s.snapshots++
	s.installs++
	return s.snap, nil
}

// OpenSnapshot implements SnapshotStore.
func (s *MemStore) OpenSnapshot() (*OpenedSnapshot, error) {
	s.mu.Lock()
	raw := s.snapFile
	s.mu.Unlock()
	if raw == nil {
		return nil, nil
	}
	return openSnapfileBytes(raw)
}

// SnapshotStats returns the newest snapshot's meta, the snapshots saved
// or installed, the installs among them, and the first index the log
// still holds (tests).
func (s *MemStore) SnapshotStats() (meta raftmsg.SnapshotMeta, snapshots, installs int, firstIndex uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, s.snapshots, s.installs, s.snap.Index + 1
}
