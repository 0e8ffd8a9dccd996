// Package quorum holds the majority arithmetic of Raft: which log index a
// majority of voters has acknowledged (commit, Raft paper §5.3, §5.4.2) and
// whether an election round is won, lost or still open (§5.2).
//
// It is pure arithmetic over plain slices: it must never allocate on the
// commit path, never know about terms or roles, and never look at anything
// but the numbers it is given.
package quorum

// Majority is the number of votes out of voters that forms a quorum.
func Majority(voters int) int { return voters/2 + 1 }

// CommittedIndex returns the largest index that at least a majority of the
// voters have acknowledged: matches[i] is voter i's acknowledged index. The
// caller's scratch (len >= len(matches)) is clobbered so that the commit path
// allocates nothing. With no voters it returns 0.
func CommittedIndex(matches, scratch []uint64) uint64 {
	n := len(matches)
	if n == 0 {
		return 0
	}
	s := scratch[:n]
	copy(s, matches)
	// Insertion sort, descending: voter sets are small (3 to 7) and this
	// avoids sort.Slice's allocation.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && s[j] > s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	// The Majority()-th largest value is acknowledged by Majority() voters.
	return s[Majority(n)-1]
}

// VoteResult is the state of an election round.
type VoteResult uint8

const (
	// VotePending: neither side has a majority yet.
	VotePending VoteResult = iota
	// VoteWon: a majority granted.
	VoteWon
	// VoteLost: a majority can no longer be reached.
	VoteLost
)

func (r VoteResult) String() string {
	switch r {
	case VotePending:
		return "pending"
	case VoteWon:
		return "won"
	case VoteLost:
		return "lost"
	}
	return "VoteResult(?)"
}

// Tally decides a round with granted and rejected votes out of voters.
func Tally(granted, rejected, voters int) VoteResult {
	q := Majority(voters)
	switch {
	case granted >= q:
		return VoteWon
	case voters-rejected < q:
		return VoteLost
	default:
		return VotePending
	}
}
