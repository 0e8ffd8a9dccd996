package quorum

import (
	"math/rand/v2"
	"testing"
)

// naiveCommitted is the definition: the largest index k such that at least
// a majority of voters have match >= k.
func naiveCommitted(matches []uint64) uint64 {
	var best uint64
	for _, k := range matches {
		count := 0
		for _, m := range matches {
			if m >= k {
				count++
			}
		}
		if count >= len(matches)/2+1 && k > best {
			best = k
		}
	}
	return best
}

func TestCommittedIndexAgainstDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	scratch := make([]uint64, 9)
	for iter := 0; iter < 20000; iter++ {
		n := 1 + r.IntN(9)
		m := make([]uint64, n)
		for i := range m {
			m[i] = r.Uint64N(12)
		}
		orig := append([]uint64(nil), m...)
		got, want := CommittedIndex(m, scratch), naiveCommitted(m)
		if got != want {
			t.Fatalf("CommittedIndex(%v) = %d, want %d", orig, got, want)
		}
		for i := range m {
			if m[i] != orig[i] {
				t.Fatalf("CommittedIndex modified its input: %v -> %v", orig, m)
			}
		}
	}
	if got := CommittedIndex(nil, scratch); got != 0 {
		t.Fatalf("no voters: got %d", got)
	}
}

func TestCommittedIndexExamples(t *testing.T) {
	scratch := make([]uint64, 5)
	for _, c := range []struct {
		m    []uint64
		want uint64
	}{
		{[]uint64{5}, 5},
		{[]uint64{5, 3, 4}, 4},
		{[]uint64{1, 1, 9}, 1},
		{[]uint64{9, 8, 0, 0}, 0}, // 4 voters need 3
		{[]uint64{9, 8, 7, 0}, 7},
		{[]uint64{2, 9, 4, 7, 1}, 4},
	} {
		if got := CommittedIndex(c.m, scratch); got != c.want {
			t.Errorf("CommittedIndex(%v) = %d, want %d", c.m, got, c.want)
		}
	}
}

func TestTally(t *testing.T) {
	for _, c := range []struct {
		granted, rejected, voters int
		want                      VoteResult
	}{
		{1, 0, 1, VoteWon},
		{1, 0, 3, VotePending},
		{2, 0, 3, VoteWon},
		{1, 2, 3, VoteLost},
		{1, 1, 3, VotePending},
		{2, 2, 4, VoteLost},
		{3, 1, 4, VoteWon},
		{2, 1, 5, VotePending},
		{2, 3, 5, VoteLost},
	} {
		if got := Tally(c.granted, c.rejected, c.voters); got != c.want {
			t.Errorf("Tally(%d,%d,%d) = %v, want %v", c.granted, c.rejected, c.voters, got, c.want)
		}
	}
}

func TestCommittedIndexAllocatesNothing(t *testing.T) {
	m := []uint64{4, 9, 2, 7, 5}
	scratch := make([]uint64, 5)
	if a := testing.AllocsPerRun(100, func() { CommittedIndex(m, scratch) }); a != 0 {
		t.Fatalf("allocs = %v", a)
	}
}
