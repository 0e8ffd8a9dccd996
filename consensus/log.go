package consensus

import (
	"fmt"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// raftLog is the in-memory log since the last snapshot, plus the indexes
// that say how far it has been handed to the runtime, made durable,
// committed and applied.
//
// Invariants (checked by checkInvariants):
//
//	snapIndex <= applied <= applying <= committed <= lastIndex
//	applying <= persisted <= lastIndex
//	snapIndex < unstableFrom <= lastIndex+1
//	ents[i].Index == snapIndex+1+i, terms non-decreasing
//
// Entries are never modified in place once appended: a truncation copies the
// kept prefix into a new array, so slices handed out in a Ready stay valid.
type raftLog struct {
	snapIndex, snapTerm uint64 // the entry just before ents[0]
	ents                []raftmsg.Entry
	committed           uint64
	applying            uint64 // highest index handed out to apply
	applied             uint64 // highest index the runtime applied
	persisted           uint64 // highest index known durable
	unstableFrom        uint64 // first index not yet handed out to persist
}

func (l *raftLog) lastIndex() uint64 { return l.snapIndex + uint64(len(l.ents)) }

func (l *raftLog) lastTerm() uint64 {
	if len(l.ents) == 0 {
		return l.snapTerm
	}
	return l.ents[len(l.ents)-1].Term
}

// term returns the term of the entry at i, and false when i is outside
// [snapIndex, lastIndex].
func (l *raftLog) term(i uint64) (uint64, bool) {
	switch {
	case i == l.snapIndex:
		return l.snapTerm, true
	case i < l.snapIndex || i > l.lastIndex():
		return 0, false
	}
	return l.ents[i-l.snapIndex-1].Term, true
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, ok := l.term(i)
	return ok && t == term
}

// slice returns entries [lo, hi) as a capacity-clipped subslice of the log,
// so a holder that appends to it cannot overwrite the log.
func (l *raftLog) slice(lo, hi uint64) []raftmsg.Entry {
	if lo >= hi {
		return nil
	}
	if lo <= l.snapIndex || hi > l.lastIndex()+1 {
		panic(fmt.Sprintf("consensus: slice [%d,%d) outside log (%d,%d]", lo, hi, l.snapIndex, l.lastIndex()))
	}
	a, b := lo-l.snapIndex-1, hi-l.snapIndex-1
	return l.ents[a:b:b]
}

// isUpToDate is the election restriction (Raft paper §5.4.1): "If the logs
// have last entries with different terms, then the log with the later term
// is more up-to-date. If the logs end with the same term, then whichever log
// is longer is more up-to-date."
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}

// findConflictByTerm returns the largest index <= index whose term is <=
// term (at least snapIndex): the fast-backtracking step (paper §5.3).
func (l *raftLog) findConflictByTerm(index, term uint64) uint64 {
	if index < l.snapIndex {
		// Before our snapshot (a leader's view of a lagging follower's
		// hint): the follower needs the snapshot, whatever the terms.
		return index
	}
	index = min(index, l.lastIndex())
	for index > l.snapIndex {
		if t, _ := l.term(index); t <= term {
			return index
		}
		index--
	}
	return l.snapIndex
}

// append adds entries right after lastIndex (the leader's path). The slice
// may grow in place: handed-out slices are capacity-clipped.
func (l *raftLog) append(ents ...raftmsg.Entry) {
	l.ents = append(l.ents, ents...)
}

// truncateAndAppend replaces everything from ents[0].Index on with ents.
// It returns the index truncated from, or 0 when nothing was replaced.
func (l *raftLog) truncateAndAppend(ents []raftmsg.Entry) (truncatedFrom uint64) {
	first := ents[0].Index
	switch {
	case first == l.lastIndex()+1:
		l.ents = append(l.ents, ents...)
		return 0
	case first <= l.committed || first <= l.snapIndex:
		panic(fmt.Sprintf("consensus: truncating committed entries at %d (committed %d)", first, l.committed))
	}
	keep := first - l.snapIndex - 1
	// A fresh array: slices of the old one may be held by the runtime.
	fresh := make([]raftmsg.Entry, keep, keep+uint64(len(ents))+16)
	copy(fresh, l.ents[:keep])
	l.ents = append(fresh, ents...)
	l.unstableFrom = min(l.unstableFrom, first)
	l.persisted = min(l.persisted, first-1)
	return first
}

// checkInvariants checks the indexes in O(1) and, with deep, every entry.
func (l *raftLog) checkInvariants(deep bool) error {
	switch {
	case !(l.snapIndex <= l.applied && l.applied <= l.applying && l.applying <= l.committed && l.committed <= l.lastIndex()):
		return fmt.Errorf("snap %d applied %d applying %d committed %d last %d", l.snapIndex, l.applied, l.applying, l.committed, l.lastIndex())
	case !(l.applying <= l.persisted && l.persisted <= l.lastIndex()):
		return fmt.Errorf("applying %d persisted %d last %d", l.applying, l.persisted, l.lastIndex())
	case !(l.snapIndex < l.unstableFrom && l.unstableFrom <= l.lastIndex()+1):
		return fmt.Errorf("snap %d unstableFrom %d last %d", l.snapIndex, l.unstableFrom, l.lastIndex())
	}
	if !deep {
		return nil
	}
	prev := l.snapTerm
	for i := range l.ents {
		e := &l.ents[i]
		if e.Index != l.snapIndex+1+uint64(i) || e.Term < prev {
			return fmt.Errorf("entry %d has index %d term %d after term %d", i, e.Index, e.Term, prev)
		}
		prev = e.Term
	}
	return nil
}
