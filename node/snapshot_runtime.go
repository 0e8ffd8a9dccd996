package node

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/kv"
	"github.com/edgekv/edgekv/ops"
)

// Snapshots in the runtime (Raft paper §7, thesis §5; consensus doc,
// "Snapshots and log compaction").
//
// Taking: after each apply notification the raft loop checks whether
// Config.SnapshotEntries entries were applied since the newest snapshot;
// if so it asks the core for the meta of the published view's applied
// index and hands view and meta to the snapshotter goroutine, which writes
// the snapshot file (SnapshotStore.SaveSnapshot: the view is immutable, so
// applying and the hot path go on meanwhile; at most one snapshot is
// being written). Once the file is durable the raft loop calls Compact: the
// core drops its entries up to the index and storage drops the log
// segments below it.
//
// Sending: a MsgSnap in Ready.Messages is never given to Transport.Send:
// the snapshotter opens the newest snapshot file and streams it with
// SnapshotTransport.SendSnapshot; the transport reports the end through
// SnapshotDone, which the raft loop turns into ReportSnapshot.
//
// Receiving (ReceiveSnapshot, on the transport's goroutine): the file is
// received into a held copy beside the durable state (HoldSnapshot:
// verified, but not part of the data dir's state) and offered to the raft
// loop, which Steps the MsgSnap. The core installs only a snapshot newer
// than its commit index: installing an older one would drop committed
// entries the snapshot does not hold. If the next Ready carries
// Ready.Snapshot, the persister installs the held file (the log is reset)
// BEFORE it writes that Ready's hard state and entries and before any
// message after it leaves (the acknowledgement to the leader among them),
// and the applier restores the state machine from it before applying
// anything after it. Otherwise the core refused it (or kept its log, Figure
// 13 rule 6) and the held copy is discarded. ReceiveSnapshot returns once
// the snapshot is durable or was refused, so the leader's SnapshotDone
// means "handled".

// snapCallsLen bounds the closures waiting for the raft loop: at most one
// snapshot report per peer (consensus.MaxVoters, one stream per follower),
// one snapshotter result, one offer per inbound snapshot stream, and
// unreachable reports, which take at most half (ReportUnreachable).
const snapCallsLen = 256

// sendQueueLen bounds MsgSnap waiting for the snapshotter; past it the
// send is reported failed and the core retries later.
const sendQueueLen = 64

// SnapshotTransport is a Transport that can stream snapshot files
// (*wire.Transport, and MemNetwork's). The result of a stream that was
// started (nil error) arrives later through the sending member's
// SnapshotDone.
type SnapshotTransport interface {
	SendSnapshot(m raftmsg.Message, data io.ReaderAt, sizeBytes int64) error
}

// SnapshotReceiver is the snapshot side of a member (*Node).
type SnapshotReceiver interface {
	// ReceiveSnapshot takes one snapshot stream from the leader.
	ReceiveSnapshot(m raftmsg.Message, data io.Reader) error
	// SnapshotDone reports the end of a stream this member sent.
	SnapshotDone(to raftmsg.NodeID, index uint64, err error)
}

var _ SnapshotReceiver = (*Node)(nil)

// snapState is the snapshot part of a Node.
type snapState struct {
	store  SnapshotStore // nil: snapshots disabled
	calls  chan func()   // run on the raft loop
	takeQ  chan takeJob  // capacity 1: one snapshot written at a time
	sendQ  chan raftmsg.Message
	sendMu sync.Mutex
	// sending holds the files the transport is streaming, closed when
	// SnapshotDone reports the stream's end. Guarded by sendMu.
	sending map[raftmsg.NodeID]SnapshotFile

	// Raft loop only.
	taking    bool       // a takeJob is with the snapshotter
	lastIndex uint64     // the newest snapshot's index
	held      *snapOffer // stepped, waiting for the core's verdict
}

type takeJob struct {
	meta raftmsg.SnapshotMeta
	view *kv.View
}

// snapOffer is a received snapshot file offered to the raft loop.
type snapOffer struct {
	msg     raftmsg.Message
	held    HeldSnapshot
	verdict chan error // capacity 1
}

// snapInstall is a snapshot the core accepted: the persister installs it,
// then closes done; the applier waits for done before restoring.
type snapInstall struct {
	meta    raftmsg.SnapshotMeta
	held    HeldSnapshot
	verdict chan error // the receiver's answer, capacity 1
	done    chan struct{}
	err     error // set before done is closed
}

// applyJob is what the applier takes: committed entries, after a snapshot
// to restore first when install is not nil.
type applyJob struct {
	ents    []raftmsg.Entry
	install *snapInstall
}

func (s *snapState) init(cfg Config) {
	s.store, _ = cfg.Store.(SnapshotStore)
	s.calls = make(chan func(), snapCallsLen)
	s.takeQ = make(chan takeJob, 1)
	s.sendQ = make(chan raftmsg.Message, sendQueueLen)
	s.sending = make(map[raftmsg.NodeID]SnapshotFile)
	s.lastIndex = cfg.Recovered.Snapshot.Index
}

// ---- taking (raft loop side)

// maybeSnapshot starts a snapshot when enough entries were applied since
// the newest one.
func (n *Node) maybeSnapshot() {
	s := &n.snap
	if s.store == nil || n.cfg.SnapshotEntries == 0 || s.taking {
		return
	}
	v := n.machine.View()
	index := v.AppliedIndex()
	// The view must be one the core knows applied (SnapshotMeta's rule);
	// a newer one is acknowledged with the next notification.
	if index < s.lastIndex+n.cfg.SnapshotEntries || index > n.ackedApplied {
		return
	}
	meta, err := n.raft.SnapshotMeta(index)
	if err != nil {
		n.log.Debug("node: no snapshot now", "index", index, "err", err)
		return
	}
	select {
	case s.takeQ <- takeJob{meta: meta, view: v}:
		s.taking = true
	default:
	}
}

// snapshotSaved runs on the raft loop once the snapshotter wrote meta's
// snapshot (or failed to).
func (n *Node) snapshotSaved(meta raftmsg.SnapshotMeta, rawBytes uint64, err error) {
	n.snap.taking = false
	if err != nil {
		n.log.Warn("node: snapshot not written; the log is kept", "index", meta.Index, "err", err)
		return
	}
	if err := n.raft.Compact(meta); err != nil {
		// An installed snapshot overtook it: nothing to compact.
		n.log.Debug("node: snapshot not compacted", "index", meta.Index, "err", err)
		return
	}
	n.snap.lastIndex = max(n.snap.lastIndex, meta.Index)
	if n.metrics != nil {
		n.metrics.ObserveSnapshot(ops.SnapshotTaken, rawBytes)
	}
	n.log.Info("node: snapshot taken, log compacted", "index", meta.Index, "term", meta.Term, "bytes", rawBytes)
	// Entries applied while it was written may already call for the next.
	n.maybeSnapshot()
}

// ---- sending (raft loop side)

// sendSnapshot hands a MsgSnap to the snapshotter, or reports it failed.
func (n *Node) sendSnapshot(m raftmsg.Message) {
	_, streams := n.tr.(SnapshotTransport)
	if n.snap.store != nil && streams {
		select {
		case n.snap.sendQ <- m:
			return
		default:
		}
	}
	n.log.Debug("node: snapshot not sent", "to", n.memberName(m.To), "index", m.Snapshot.Index)
	n.raft.ReportSnapshot(m.To, false)
}

// ---- the snapshotter goroutine

func (n *Node) runSnapshotter() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case j := <-n.snap.takeQ:
			raw, err := n.writeSnapshot(j)
			n.onRaftLoop(func() { n.snapshotSaved(j.meta, raw, err) })
		case m := <-n.snap.sendQ:
			if err := n.streamSnapshot(m); err != nil {
				n.log.Warn("node: snapshot not sent", "to", n.memberName(m.To), "index", m.Snapshot.Index, "err", err)
				n.onRaftLoop(func() { n.raft.ReportSnapshot(m.To, false) })
			}
		}
	}
}

// onRaftLoop queues f for the raft loop (dropped when stopping).
func (n *Node) onRaftLoop(f func()) {
	select {
	case n.snap.calls <- f:
	case <-n.stop:
	}
}

func (n *Node) writeSnapshot(j takeJob) (uint64, error) {
	var blob []byte
	if n.cfg.MembershipBlob != nil {
		var err error
		if blob, err = n.cfg.MembershipBlob(); err != nil {
			return 0, err
		}
	}
	var raw uint64
	err := n.snap.store.SaveSnapshot(j.meta, blob, func(w io.Writer) error {
		cw := &countWriter{w: w}
		err := j.view.WriteSnapshot(cw)
		raw = cw.n
		return err
	})
	return raw, err
}

type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += uint64(k)
	return k, err
}

// streamSnapshot starts streaming the newest snapshot file to m.To; the
// transport reports the end through SnapshotDone.
func (n *Node) streamSnapshot(m raftmsg.Message) error {
	f, err := n.snap.store.OpenSnapshotFile()
	if err != nil {
		return err
	}
	if f == nil || f.Meta().Index < m.Snapshot.Index {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("no snapshot file at %d", m.Snapshot.Index)
	}
	// A newer file than the core named (written, not yet compacted) is
	// just as good: the follower acknowledges what it installed.
	m.Snapshot = f.Meta()
	n.snap.sendMu.Lock()
	if old := n.snap.sending[m.To]; old != nil {
		old.Close() // its stream's report was lost with a replaced peer
	}
	n.snap.sending[m.To] = f
	n.snap.sendMu.Unlock()
	if err := n.tr.(SnapshotTransport).SendSnapshot(m, f, f.Size()); err != nil {
		n.snap.sendMu.Lock()
		if n.snap.sending[m.To] == f {
			delete(n.snap.sending, m.To)
		}
		n.snap.sendMu.Unlock()
		f.Close()
		return err
	}
	return nil
}

// SnapshotDone implements SnapshotReceiver: the stream to `to` ended.
func (n *Node) SnapshotDone(to raftmsg.NodeID, index uint64, err error) {
	n.snap.sendMu.Lock()
	f := n.snap.sending[to]
	delete(n.snap.sending, to)
	n.snap.sendMu.Unlock()
	var size int64
	if f != nil {
		size = f.Size()
		f.Close()
	}
	if err != nil {
		n.log.Warn("node: snapshot stream failed", "to", n.memberName(to), "index", index, "err", err)
	} else {
		n.log.Info("node: snapshot sent", "to", n.memberName(to), "index", index, "bytes", size)
		if n.metrics != nil {
			n.metrics.ObserveSnapshot(ops.SnapshotSent, uint64(size))
		}
	}
	ok := err == nil
	select {
	case n.snap.calls <- func() { n.raft.ReportSnapshot(to, ok) }:
	default:
		// Cannot happen within snapCallsLen; the follower's next answer
		// moves it out of the snapshot state anyway.
		n.log.Warn("node: snapshot report dropped", "to", n.memberName(to))
	}
}

// ReportUnreachable tells the core that messages to id may have been
// lost (a connection failed): a pipelining follower goes back to probing.
// Never blocks; when the raft loop is busy the report is dropped (the
// follower's next answer corrects its progress anyway). It uses at most
// half of snapCalls, so that snapshot reports, which must not be lost,
// always find room.
func (n *Node) ReportUnreachable(id raftmsg.NodeID) {
	if len(n.snap.calls) >= snapCallsLen/2 {
		return
	}
	select {
	case n.snap.calls <- func() { n.raft.ReportUnreachable(id) }:
	default:
	}
}

// ---- receiving

var errSnapshotsOff = errors.New("node: this member does not keep snapshots")

// ReceiveSnapshot implements SnapshotReceiver. It returns nil once the
// snapshot is durable (installed) or the core answered it without
// installing it (stale: not newer than its commit index; or its log
// already holds the snapshot's last entry).
func (n *Node) ReceiveSnapshot(m raftmsg.Message, data io.Reader) error {
	if n.snap.store == nil {
		return errSnapshotsOff
	}
	if n.stopping.Load() {
		return errStopping
	}
	held, err := n.snap.store.HoldSnapshot(data)
	if err != nil {
		n.log.Warn("node: received snapshot refused", "from", n.memberName(m.From), "index", m.Snapshot.Index, "err", err)
		return err
	}
	if got := held.Meta(); got.Index != m.Snapshot.Index || got.Term != m.Snapshot.Term {
		held.Discard()
		return fmt.Errorf("node: snapshot file holds %d/%d, the message names %d/%d", got.Index, got.Term, m.Snapshot.Index, m.Snapshot.Term)
	}
	o := &snapOffer{msg: m, held: held, verdict: make(chan error, 1)}
	select {
	case n.snap.calls <- func() { n.offerSnapshot(o) }:
	case <-n.stop:
		held.Discard()
		return errStopping
	}
	select {
	case err := <-o.verdict:
		return err
	case <-n.stop:
		return errStopping
	}
}

var errStopping = errors.New("node: stopping")

// offerSnapshot runs on the raft loop: Step the MsgSnap and see whether
// the core takes the held file.
func (n *Node) offerSnapshot(o *snapOffer) {
	if prev := n.snap.held; prev != nil {
		// Never happens in practice (the Ready after a Step decides).
		prev.held.Discard()
		prev.verdict <- errors.New("node: superseded by a newer snapshot")
	}
	n.snap.held = o
	if err := n.raft.Step(o.msg); err != nil {
		n.snap.held = nil
		o.held.Discard()
		o.verdict <- fmt.Errorf("node: snapshot message refused: %w", err)
		return
	}
	n.handleReadys()
	if n.snap.held == o {
		// No Ready took it: stale, or the log already holds it (the core
		// answered the leader itself).
		n.snap.held = nil
		o.held.Discard()
		n.log.Info("node: received snapshot not installed (not newer than the commit index, or already in the log)",
			"index", o.msg.Snapshot.Index, "commit", n.commit.Load())
		o.verdict <- nil
	}
}

// takeHeld pairs the Ready's accepted snapshot with the held file.
func (n *Node) takeHeld(meta raftmsg.SnapshotMeta) *snapInstall {
	o := n.snap.held
	if o == nil || o.held.Meta().Index != meta.Index || o.held.Meta().Term != meta.Term {
		// Our bug: MsgSnap reaches the core only with its file (step
		// drops bare ones).
		panic(fmt.Sprintf("node: the core installs snapshot %d/%d, which is not the one held", meta.Index, meta.Term))
	}
	n.snap.held = nil
	n.snap.lastIndex = meta.Index
	return &snapInstall{meta: meta, held: o.held, verdict: o.verdict, done: make(chan struct{})}
}

// installHeld runs on the persister for a group whose last Ready carries
// a snapshot: the Readys before it are written first, then the held file
// replaces the log; the last Ready's own hard state and entries follow.
// It returns false when the member stops.
func (n *Node) installHeld(group []persistJob) bool {
	if pre := group[:len(group)-1]; len(pre) > 0 {
		hs, ents := n.mergeGroup(pre)
		if len(ents) > 0 || n.mustSync(hs) {
			if !n.save(hs, ents, pre[len(pre)-1].seq) {
				return false
			}
			if !hs.IsEmpty() {
				n.savedHS = hs
			}
		}
		clear(n.merged)
		n.merged = n.merged[:0]
	}
	inst := group[len(group)-1].install
	size := inst.held.Size()
	meta, err := n.snap.store.InstallSnapshot(inst.held)
	if err == nil && meta.Index != inst.meta.Index {
		err = fmt.Errorf("installed snapshot %d, want %d", meta.Index, inst.meta.Index)
	}
	inst.err = err
	close(inst.done)
	inst.verdict <- err
	if err != nil {
		// The core counts it durable: nothing safe can follow.
		n.fail(fmt.Errorf("node: install snapshot %d/%d: %w", inst.meta.Index, inst.meta.Term, err))
		return false
	}
	if n.metrics != nil {
		n.metrics.ObserveSnapshot(ops.SnapshotReceived, uint64(size))
	}
	n.log.Info("node: snapshot installed from the leader; log reset", "index", meta.Index, "term", meta.Term, "bytes", size)
	return true
}

// restoreInstalled runs on the applier: once the persister installed the
// snapshot, the state machine is replaced by it. False when stopping.
func (n *Node) restoreInstalled(inst *snapInstall) bool {
	select {
	case <-inst.done:
	case <-n.stop:
		return false
	}
	if inst.err != nil {
		return false // the persister failed the member
	}
	o, err := n.snap.store.OpenSnapshot()
	if err == nil && (o == nil || o.Meta.Index != inst.meta.Index) {
		if o != nil {
			o.Close()
		}
		err = fmt.Errorf("the store's snapshot is not %d", inst.meta.Index)
	}
	if err == nil {
		err = restoreRecovered(n.machine, Recovered{Snapshot: inst.meta, SnapshotPayload: o.Payload})
		if members, merr := decodeMembershipBlob(o.Membership); merr != nil {
			n.log.Warn("node: installed snapshot has an unreadable membership", "err", merr)
		} else {
			n.log.Debug("node: installed snapshot membership", "members", len(members))
			n.restoreMembers(memberRecordsOf(members), inst.meta.Index) // membership.go
		}
		o.Close()
	}
	if err != nil {
		n.fail(fmt.Errorf("node: restore installed snapshot %d: %w", inst.meta.Index, err))
		return false
	}
	if n.metrics != nil {
		v := n.machine.View()
		n.metrics.SetStore(v.SizeBytes(), n.machine.Config().QuotaBytes, uint64(v.Len()))
	}
	n.appliedIndex.Store(inst.meta.Index)
	notify(n.appliedNote)
	next := make(chan struct{})
	close(*n.applyWait.Swap(&next))
	return true
}
