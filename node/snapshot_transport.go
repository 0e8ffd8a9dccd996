package node

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

var _ SnapshotTransport = memTransport{}

// SendSnapshot implements SnapshotTransport for MemNetwork: the stream is
// handed to the receiver at once, on the caller's goroutine (the sending
// member's snapshotter), and the result reported to the sender's
// SnapshotDone before it returns. A cut link fails before any byte moves.
func (t memTransport) SendSnapshot(m raftmsg.Message, data io.ReaderAt, sizeBytes int64) error {
	n := t.net
	n.mu.RLock()
	r := n.members[m.To]
	sender := n.members[t.from]
	blocked := n.down[t.from] || n.down[m.To] || n.cut[[2]raftmsg.NodeID{t.from, m.To}]
	n.mu.RUnlock()
	rr, ok := r.(SnapshotReceiver)
	if !ok || blocked {
		return fmt.Errorf("node: memnetwork: no snapshot link to %d", m.To)
	}
	if m.Type != raftmsg.MsgSnap || sizeBytes <= 0 {
		return errors.New("node: memnetwork: SendSnapshot needs a MsgSnap and its bytes")
	}
	m.From = t.from
	m.Snapshot.Conf.Voters = slices.Clone(m.Snapshot.Conf.Voters)
	m.Snapshot.Conf.Learners = slices.Clone(m.Snapshot.Conf.Learners)
	err := rr.ReceiveSnapshot(m, io.NewSectionReader(data, 0, sizeBytes))
	if s, ok := sender.(SnapshotReceiver); ok {
		s.SnapshotDone(m.To, m.Snapshot.Index, err)
	}
	return nil
}

// close releases what the snapshot machinery holds once every goroutine
// of the member has stopped.
func (s *snapState) close() {
	if s.held != nil {
		s.held.held.Discard()
		s.held = nil
	}
	s.sendMu.Lock()
	for to, f := range s.sending {
		f.Close()
		delete(s.sending, to)
	}
	s.sendMu.Unlock()
}
