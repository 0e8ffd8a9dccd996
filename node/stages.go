package node

import (
	"sync/atomic"

	"github.com/edgekv/edgekv/consensus"
	"github.com/edgekv/edgekv/ebpf/stage"
)

// Stage markers of the write path (package ebpf/stage), for the eBPF
// tracer (--trace ebpf, `edgekv trace`) and the bpftrace scripts.
//
// Each batch this member proposes as leader is marked once per stage, by
// the goroutine that completes the stage, with the batcher's batch id:
//
//	Received   raft loop  it first saw the batch's first write queued in
//	                      the batcher, or emitted the batch at once
//	Proposed   raft loop  the core accepted the batch's entries
//	Persisted  persister  the fsync covering the batch's last entry returned
//	Committed  raft loop  the commit index reached the batch's last entry,
//	                      and so had the leader's own fsync
//	Applied    applier    the state machine applied it
//	Answered   applier    every waiter of the batch was completed, i.e. each
//	                      result was handed to its HTTP handler goroutine
//
// Marking is per batch, never per write: with a probe attached a marker
// hit costs about two microseconds of kernel time (ebpf/README.md), with
// none a few nanoseconds, so markers are always called.
//
// Committed waits for Persisted: with followers faster than the leader's
// own disk the commit index can pass an entry before the leader's fsync
// returns (Raft thesis §10.2.1), and the stages must stay in one order.
// persisted -> committed is then the wait for a quorum beyond the leader.
//
// Received is when the raft loop noticed the batch, not when its first
// write arrived: while the batcher's in-flight window is full the loop
// sleeps until a batch finishes, and received->proposed then leaves out
// that wait (edgekv_batch_oldest_wait_seconds has it exactly). Answered is
// marked in the applier rather than in package httpapi because only the
// node knows which batch a write travelled in; writing the HTTP response
// is the handler's own time after it.
//
// Batches of a follower are forwarded to the leader and not marked; nor
// are writes the leader receives forwarded from followers.
//
// The raft loop records each proposed batch (id, last log index) in a
// stageLedger; the persister, the raft loop and the applier each walk it
// with their own cursor, marking the batches whose last entry their stage
// has reached. Marking is in log order, which is batch order, so every
// batch crosses the stages in order (the tracer counts any other order as
// out_of_order, and the tests require none). Around a leadership change
// the marks are approximate: a batch may lose its later stages, and a
// member that becomes leader right after its log was truncated may mark
// one batch Committed before Persisted (persistedIndex still names the
// truncated log), which the tracer counts as out_of_order.

// stageLedgerLen bounds the batches between Proposed and Answered the
// ledger remembers. The batcher's in-flight window (a handful of
// batches) keeps far fewer there; a consumer lapped by more is detected
// and skips the lost records (they lack later stages, nothing worse).
const stageLedgerLen = 1024

// stageLedger is a single-producer, multi-consumer ring of proposed
// batches. Every field is atomic: the producer may overwrite a slot a
// lapped consumer is reading (a seqlock through slot.seq detects it).
type stageLedger struct {
	slots [stageLedgerLen]stageSlot
	// published counts records pushed; record p lives in slot p%len.
	published atomic.Uint64
	// validFrom: records before it belong to a leadership this member has
	// lost; their log entries may be replaced, so they are never marked.
	validFrom atomic.Uint64
}

type stageSlot struct {
	seq       atomic.Uint64 // p+1 while the slot holds record p; 0 while rewritten
	batchID   atomic.Uint64
	lastIndex atomic.Uint64
}

// push records a batch whose last entry is at lastIndex. Raft loop only,
// in log order.
func (l *stageLedger) push(batchID, lastIndex uint64) {
	p := l.published.Load()
	s := &l.slots[p%stageLedgerLen]
	s.seq.Store(0)
	s.batchID.Store(batchID)
	s.lastIndex.Store(lastIndex)
	s.seq.Store(p + 1)
	l.published.Store(p + 1)
}

// invalidate forgets every record pushed so far (leadership lost). Raft
// loop only; a consumer sees it before any entry the raft loop hands it
// afterwards (the channel send orders them).
func (l *stageLedger) invalidate() { l.validFrom.Store(l.published.Load()) }

// markUpTo calls mark (a stage marker) for every record after *cursor
// whose batch's last entry is at or below index, in order, and advances
// *cursor past them. One goroutine per cursor.
func (l *stageLedger) markUpTo(cursor *uint64, index uint64, mark func(batchID uint64)) {
	end := l.published.Load()
	p := max(*cursor, l.validFrom.Load())
	if end-p > stageLedgerLen {
		p = end - stageLedgerLen // lapped: the older records are gone
	}
	for ; p < end; p++ {
		slot := &l.slots[p%stageLedgerLen]
		id, last := slot.batchID.Load(), slot.lastIndex.Load()
		if slot.seq.Load() != p+1 {
			continue // overwritten since end was read: lapped
		}
		if last > index {
			break
		}
		mark(id)
	}
	*cursor = p
}

// stageMarks is the node's marking state; each field names its owner.
type stageMarks struct {
	ledger stageLedger
	// Raft loop only: the id of the last batch the batcher emitted, the
	// highest id marked Received, and the Committed cursor.
	lastEmitted, received, committed uint64
	// Persister only.
	persisted uint64
	// persistedIndex: the last index the persister saved (persister
	// writes, raft loop reads).
	persistedIndex atomic.Uint64
	// Applier only.
	applied, answered uint64
}

// markEmitted notes a batch the batcher emitted and marks it Received if
// this member leads and has not marked it yet. Raft loop only, before the
// batch is proposed.
func (n *Node) markEmitted(batchID uint64) {
	n.stages.lastEmitted = batchID
	if batchID > n.stages.received && n.raft.SoftState().Role == consensus.RoleLeader {
		stage.Received(batchID)
		n.stages.received = batchID
	}
}

// markProposed marks a batch the core accepted as leader, whose last
// entry is at lastIndex. Raft loop only.
func (n *Node) markProposed(batchID, lastIndex uint64) {
	stage.Proposed(batchID)
	n.stages.ledger.push(batchID, lastIndex)
}

// maybeMarkForming marks Received for the batch the batcher is filling,
// once: the next id it will emit, when writes are queued and this member
// leads. Raft loop only, after the batches due were emitted.
func (n *Node) maybeMarkForming() {
	next := n.stages.lastEmitted + 1
	if next <= n.stages.received || n.raft.SoftState().Role != consensus.RoleLeader {
		return
	}
	if queued, _ := n.batcher.Pending(); queued == 0 {
		return
	}
	stage.Received(next)
	n.stages.received = next
}

// markPersisted marks the batches whose last entry the persister has just
// made durable, up to lastIndex. Persister only, after the fsync.
func (n *Node) markPersisted(lastIndex uint64) {
	n.stages.ledger.markUpTo(&n.stages.persisted, lastIndex, stage.Persisted)
	n.stages.persistedIndex.Store(lastIndex)
}

// markCommitted marks the batches both committed and durable here. Raft
// loop only: after the commit index moved and after a persisted ack.
func (n *Node) markCommitted() {
	upTo := min(n.commit.Load(), n.stages.persistedIndex.Load())
	n.stages.ledger.markUpTo(&n.stages.committed, upTo, stage.Committed)
}
