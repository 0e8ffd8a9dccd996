package tracker

import "fmt"

// State is how the leader replicates to one follower.
type State uint8

const (
	// StateProbe: the match point is unknown; the leader sends one append
	// at a time and waits for the answer (or a heartbeat answer) before the
	// next, backing Next off on rejections (Raft paper §5.3).
	StateProbe State = iota
	// StateReplicate: the follower matched; the leader streams appends
	// optimistically, advancing Next as it sends, within the inflight
	// window.
	StateReplicate
	// StateSnapshot: the entries the follower needs are compacted away; a
	// snapshot is on its way and no append is sent until the runtime
	// reports the transfer's outcome or the follower acknowledges it
	// (snapshot.go).
	StateSnapshot
)

func (s State) String() string {
	switch s {
	case StateProbe:
		return "probe"
	case StateReplicate:
		return "replicate"
	case StateSnapshot:
		return "snapshot"
	}
	return "State(?)"
}

// Progress is the leader's view of one follower.
//
// Invariant: Match < Next. Entries up to Match are known to be durable on
// the follower and identical to the leader's.
type Progress struct {
	Match, Next uint64
	State       State
	// ProbeSent: in StateProbe, an append is outstanding; send no other
	// until an answer or a heartbeat answer arrives.
	ProbeSent bool
	// AckedRecently: an append was acknowledged since the last heartbeat
	// went out. A pipelining leader probes a follower only when its
	// acknowledgements stalled, not while they flow.
	AckedRecently bool
	// LastHeardTick is the leader's tick count when it last heard from this
	// follower in the current term (check-quorum, thesis §6.2).
	LastHeardTick uint64
	Inflights     *Inflights
	// PendingSnapshot: in StateSnapshot, the index of the snapshot sent.
	PendingSnapshot uint64
}

// NewProgress makes a follower's progress with its own inflight window.
func NewProgress(maxInflight int, maxInflightBytes uint64) *Progress {
	return &Progress{Inflights: NewInflights(maxInflight, maxInflightBytes)}
}

// Reset starts probing from next, as a new leader does (paper §5.3: "When
// a leader first comes to power, it initializes all nextIndex values to the
// index just after the last one in its log").
func (p *Progress) Reset(next uint64) {
	p.Match, p.Next = 0, next
	p.BecomeProbe()
}

// BecomeProbe goes back to probing, keeping Next (but never at or below
// Match); the caller moves Next afterwards when it knows better.
func (p *Progress) BecomeProbe() {
	p.State = StateProbe
	p.PendingSnapshot = 0
	p.ProbeSent = false
	p.Inflights.Reset()
	if p.Next <= p.Match {
		p.Next = p.Match + 1
	}
}

// BecomeReplicate starts streaming right after Match.
func (p *Progress) BecomeReplicate() {
	p.State = StateReplicate
	p.PendingSnapshot = 0
	p.ProbeSent = false
	p.Next = p.Match + 1
	p.Inflights.Reset()
}

// MaybeUpdate records that the follower matches up to index and reports
// whether Match grew. Stale (lower) acknowledgements change nothing.
func (p *Progress) MaybeUpdate(index uint64) bool {
	updated := false
	if index > p.Match {
		p.Match = index
		updated = true
		p.ProbeSent = false
		p.AckedRecently = true
	}
	if p.Next < index+1 {
		p.Next = index + 1
	}
	return updated
}

// SentEntries records an append message whose last entry is lastIndex.
func (p *Progress) SentEntries(lastIndex, bytes uint64) {
	switch p.State {
	case StateReplicate:
		p.Inflights.Add(lastIndex, bytes)
		p.Next = lastIndex + 1
	case StateProbe:
		p.ProbeSent = true
	}
}

// IsPaused reports whether no append with entries may be sent now.
func (p *Progress) IsPaused() bool {
	switch p.State {
	case StateProbe:
		return p.ProbeSent
	case StateReplicate:
		return p.Inflights.Full()
	}
	return true
}

// MaybeBackOff handles a rejection of the append whose previous index was
// rejected: it returns false if the rejection is stale (answers an older
// message), else moves Next back to hintNext (never at or below Match) and
// returns to probing. Paper §5.3: "After a rejection, the leader decrements
// nextIndex and retries"; hintNext lets it skip a whole conflicting term.
func (p *Progress) MaybeBackOff(rejected, hintNext uint64) bool {
	if p.State == StateSnapshot {
		// Answers an append sent before the snapshot: the snapshot decides.
		return false
	}
	if p.State == StateReplicate {
		if rejected <= p.Match {
			return false
		}
		p.BecomeProbe()
		p.Next = max(p.Match+1, min(hintNext, rejected))
		return true
	}
	// Probing: only the answer to the outstanding probe counts.
	if rejected != p.Next-1 {
		return false
	}
	p.Next = max(p.Match+1, min(hintNext, rejected))
	p.ProbeSent = false
	return true
}

func (p *Progress) String() string {
	return fmt.Sprintf("match=%d next=%d %v inflight=%d/%dB", p.Match, p.Next, p.State, p.Inflights.Count(), p.Inflights.Bytes())
}
