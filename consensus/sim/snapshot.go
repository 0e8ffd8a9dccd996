package sim

import (
	"fmt"
	"slices"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// Snapshots in the simulator (paper §7, thesis §5). The state machine of
// a node is modelled by the hash of the committed prefix it applied, so a
// snapshot "file" is that hash at the snapshot's index. Nodes compact at
// random applied indexes; the runtime attaches its durable snapshot to
// each MsgSnap (a stream that the network may lose or delay, and whose
// outcome it reports back with ReportSnapshot); a receiver holds the file
// aside, installs it only when a Ready names it, makes it durable before
// that Ready's entries and restores its state machine from it.

// snapNode is a node's snapshot state as its runtime holds it.
type snapNode struct {
	// durSnap and durSnapState: the durable snapshot (meta and state hash);
	// durLog holds the durable entries after durSnap.Index.
	durSnap      raftmsg.SnapshotMeta
	durSnapState uint64
	// appliedState: the state machine, as the hash of the applied prefix.
	appliedState uint64
	// historyUnknown: started as a joiner (not in its base, no snapshot):
	// it cannot take snapshots until it installs one.
	historyUnknown bool
	// incarnation counts starts: reports owed to an earlier process are
	// dropped.
	incarnation int
	// held: received snapshot files not yet installed or discarded;
	// reports: the outcome of snapshot streams this node sent, and sends
	// that failed, to be told to the core (both volatile).
	held    []heldSnap
	reports []snapReport
}

type heldSnap struct {
	meta  raftmsg.SnapshotMeta
	state uint64
}

type snapReport struct {
	to          raftmsg.NodeID
	ok          bool
	unreachable bool // ReportUnreachable rather than ReportSnapshot
	incarnation int
}

// snapFlight is what travels beside a MsgSnap: the file, and who waits for
// the stream's outcome.
type snapFlight struct {
	state       uint64
	report      bool // this copy's outcome is reported (duplicates are not)
	incarnation int  // of the sender
}

// maybeCompact snapshots sn at its applied index, now and then.
func (s *sim) maybeCompact(sn *simNode) error {
	if s.compactPercent == 0 || sn.node == nil || sn.paused(s.now) || s.rng.IntN(100) >= s.compactPercent {
		return nil
	}
	// The runtime asks at the index it applied; a snapshot installed but
	// not yet taken in a Ready is newer: wait for it.
	if sn.node.HasReady() || sn.lastApplied <= sn.durSnap.Index || sn.lastApplied <= sn.node.Status().SnapshotIndex {
		return nil
	}
	idx := sn.lastApplied
	meta, err := sn.node.SnapshotMeta(idx)
	if sn.historyUnknown {
		// Its base is the configuration it was told at join time: the one
		// at idx may differ, so the core must refuse.
		if err == nil {
			return fmt.Errorf("%w: joiner %d without a snapshot gives a snapshot meta %+v", ErrViolation, sn.id, meta)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: node %d SnapshotMeta(%d): %v", ErrViolation, sn.id, idx, err)
	}
	if meta.Index != idx || idx > uint64(len(s.global)) || meta.Term != s.globalTerm[idx-1] {
		return fmt.Errorf("%w: node %d snapshot meta %d/%d at applied %d, committed term there %d", ErrViolation, sn.id, meta.Index, meta.Term, idx, s.termOfCommitted(idx))
	}
	if want := s.committedConfAt(idx); !sameConf(meta.Conf, want) {
		return fmt.Errorf("%w: node %d snapshot at %d has configuration %+v, the committed one there is %+v", ErrViolation, sn.id, idx, meta.Conf, want)
	}
	base := sn.durSnap.Index
	if idx-base > uint64(len(sn.durLog)) {
		return fmt.Errorf("%w: node %d applied %d beyond its durable log ending at %d", ErrViolation, sn.id, idx, base+uint64(len(sn.durLog)))
	}
	// Durable first (the file, then the log segments it covers go), then
	// the core may drop its entries and send it.
	sn.durSnap, sn.durSnapState = meta, sn.appliedState
	sn.durLog = slices.Clone(sn.durLog[idx-base:])
	if err := sn.node.Compact(meta); err != nil {
		return fmt.Errorf("%w: node %d Compact(%d): %v", ErrViolation, sn.id, idx, err)
	}
	s.stats.SnapsTaken++
	s.tracef("compact %d at %d/%d", sn.id, meta.Index, meta.Term)
	return s.afterStep(sn)
}

func (s *sim) termOfCommitted(idx uint64) uint64 {
	if idx == 0 || idx > uint64(len(s.globalTerm)) {
		return 0
	}
	return s.globalTerm[idx-1]
}

// attachSnapshot is the sender's runtime streaming its durable snapshot
// file with a MsgSnap: the core must only name a snapshot made durable.
func (s *sim) attachSnapshot(m *raftmsg.Message) (snapFlight, error) {
	from := s.maybeNode(m.From)
	if from.durSnap.Index != m.Snapshot.Index || from.durSnap.Term != m.Snapshot.Term {
		return snapFlight{}, fmt.Errorf("%w: node %d sends snapshot %d/%d, its durable one is %d/%d", ErrViolation, m.From, m.Snapshot.Index, m.Snapshot.Term, from.durSnap.Index, from.durSnap.Term)
	}
	s.stats.SnapsSent++
	return snapFlight{state: from.durSnapState, report: true, incarnation: from.incarnation}, nil
}

// reportSnapshot queues the outcome of a snapshot stream for its sender.
func (s *sim) reportSnapshot(f *inFlight, ok bool) {
	if !f.snap.report {
		return
	}
	if !ok {
		s.stats.SnapsFailed++
	}
	from := s.maybeNode(f.m.From)
	from.reports = append(from.reports, snapReport{to: f.m.To, ok: ok, incarnation: f.snap.incarnation})
}

// runReports tells the core what its runtime learnt about its sends.
func (s *sim) runReports(sn *simNode) error {
	for len(sn.reports) > 0 && sn.node != nil {
		r := sn.reports[0]
		sn.reports = sn.reports[1:]
		if r.incarnation != sn.incarnation {
			continue
		}
		if r.unreachable {
			sn.node.ReportUnreachable(r.to)
		} else {
			sn.node.ReportSnapshot(r.to, r.ok)
		}
		if err := s.afterStep(sn); err != nil {
			return err
		}
	}
	return nil
}

// receiveSnapshot holds a delivered snapshot file aside (bounded: only the
// newest few) before the message is stepped.
func (s *sim) receiveSnapshot(to *simNode, f *inFlight) {
	to.held = append(to.held, heldSnap{meta: f.m.Snapshot, state: f.snap.state})
	if len(to.held) > 4 {
		to.held = slices.Delete(to.held, 0, len(to.held)-4)
	}
}

// installReady handles a Ready's Snapshot: the held file it names becomes
// the state machine (and, once persisted, the durable snapshot). Every
// other held file is discarded (refused or superseded).
func (s *sim) installReady(sn *simNode, meta raftmsg.SnapshotMeta) (heldSnap, error) {
	defer func() { sn.held = sn.held[:0] }()
	if meta.IsEmpty() {
		return heldSnap{}, nil
	}
	var h heldSnap
	found := false
	for _, x := range sn.held {
		if x.meta.Index == meta.Index && x.meta.Term == meta.Term {
			h, found = x, true
		}
	}
	if !found {
		return heldSnap{}, fmt.Errorf("%w: node %d installs snapshot %d/%d, which it never received", ErrViolation, sn.id, meta.Index, meta.Term)
	}
	idx := meta.Index
	// The installed state equals every other node's state at that index:
	// the committed prefix.
	if idx > uint64(len(s.global)) || h.state != s.global[idx-1] || meta.Term != s.globalTerm[idx-1] {
		return heldSnap{}, fmt.Errorf("%w: node %d installs snapshot %d/%d whose state is not the committed state there (committed %d entries)", ErrViolation, sn.id, idx, meta.Term, len(s.global))
	}
	if idx <= sn.lastApplied {
		return heldSnap{}, fmt.Errorf("%w: node %d installs snapshot %d over applied %d", ErrViolation, sn.id, idx, sn.lastApplied)
	}
	if want := s.committedConfAt(idx); !sameConf(meta.Conf, want) {
		return heldSnap{}, fmt.Errorf("%w: node %d installs snapshot %d with configuration %+v, the committed one there is %+v", ErrViolation, sn.id, idx, meta.Conf, want)
	}
	h.meta = meta
	sn.lastApplied, sn.appliedState = idx, h.state
	sn.historyUnknown = false
	s.setCommittedView(&sn.view, idx)
	if err := sn.node.AckApplied(idx); err != nil {
		return heldSnap{}, fmt.Errorf("%w: node %d AckApplied(%d) after installing: %v", ErrViolation, sn.id, idx, err)
	}
	s.stats.SnapsInstalled++
	s.tracef("install %d snapshot %d/%d", sn.id, idx, meta.Term)
	s.updateLive()
	return h, nil
}

// setCommittedView makes v the committed prefix up to idx, with its
// conf-change entries (a snapshot replaced the log).
func (s *sim) setCommittedView(v *logView, idx uint64) {
	v.terms = append(v.terms[:0], s.globalTerm[:idx]...)
	v.prefix = append(v.prefix[:0], s.global[:idx]...)
	v.base = raftmsg.ConfState{Voters: slices.Clone(s.bootstrap)}
	v.confs = v.confs[:0]
	for _, c := range s.confHistory {
		if c.index <= idx {
			v.confs = append(v.confs, c)
		}
	}
}

// committedConfAt is the configuration in force at committed index idx.
func (s *sim) committedConfAt(idx uint64) raftmsg.ConfState {
	cs := raftmsg.ConfState{Voters: s.bootstrap}
	for _, c := range s.confHistory {
		if c.index > idx {
			break
		}
		cs = c.cs
	}
	return cs
}

// sameConf compares configurations, treating nil and empty alike.
func sameConf(a, b raftmsg.ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners)
}

// termAt is a node's term at index i: entries compacted into its snapshot
// are committed ones (checked when the snapshot was taken or installed).
func (s *sim) termAt(sn *simNode, i uint64) (uint64, bool) {
	if t, ok := sn.node.LogTerm(i); ok {
		return t, true
	}
	if i > 0 && i <= sn.node.LastIndex() && i <= uint64(len(s.globalTerm)) {
		return s.globalTerm[i-1], true
	}
	return 0, false
}

// checkAckDurable: an append or snapshot acknowledgement leaves a node only
// once what it acknowledges is durable there (paper Figure 2: respond only
// after updating stable storage; for a snapshot, after installing it).
func (s *sim) checkAckDurable(m *raftmsg.Message) error {
	if m.Type != raftmsg.MsgAppResp || m.Reject || m.Index == 0 {
		return nil
	}
	if from := s.maybeNode(m.From); from.dur.len() < m.Index {
		return fmt.Errorf("%w: node %d acknowledges index %d to %d with a durable log ending at %d", ErrViolation, m.From, m.Index, m.To, from.dur.len())
	}
	return nil
}
