package model

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/edgekv/edgekv/chaos/history"
)

func ops(h ...history.Op) []porcupine.Operation {
	for i := range h {
		h[i].ID = i
	}
	return Operations(h)
}

func keysOf(p []porcupine.Operation) map[string]bool {
	m := map[string]bool{}
	for _, o := range p {
		for _, k := range o.Input.(*history.Op).Keys() {
			m[k] = true
		}
	}
	return m
}

func TestPartitionJoinsKeysTouchedTogether(t *testing.T) {
	ok := history.OK
	in := ops(
		history.Op{Kind: history.Put, Key: "a", Value: "1", Outcome: ok, Rev: 1},
		history.Op{Kind: history.Put, Key: "b", Value: "2", Outcome: ok, Rev: 2},
		history.Op{Kind: history.Put, Key: "c", Value: "3", Outcome: ok, Rev: 3},
		history.Op{Kind: history.Batch, Ops: []history.BatchOp{{Op: history.Put, Key: "b", Value: "4"}, {Op: history.Delete, Key: "c"}}, Outcome: ok, Rev: 4},
		history.Op{Kind: history.Put, Key: "p/1", Value: "5", Outcome: ok, Rev: 5},
		history.Op{Kind: history.Put, Key: "p/2", Value: "6", Outcome: ok, Rev: 6},
		history.Op{Kind: history.DeletePrefix, Prefix: "p/", Outcome: ok, Rev: 7, Deleted: 2},
		history.Op{Kind: history.Get, Key: "d", Outcome: ok},
	)
	parts := Partition(in)
	want := []map[string]bool{{"a": true}, {"b": true, "c": true}, {"p/1": true, "p/2": true}, {"d": true}}
	if len(parts) != len(want) {
		t.Fatalf("%d partitions, want %d", len(parts), len(want))
	}
	total := 0
	for i, p := range parts {
		total += len(p)
		got := keysOf(p)
		if len(got) != len(want[i]) {
			t.Fatalf("partition %d has keys %v, want %v", i, got, want[i])
		}
		for k := range want[i] {
			if !got[k] {
				t.Fatalf("partition %d has keys %v, want %v", i, got, want[i])
			}
		}
	}
	if total != len(in) {
		t.Fatalf("partitions hold %d ops, want %d", total, len(in))
	}
}

func TestOperationsDropsWhatCarriesNoInformation(t *testing.T) {
	in := ops(
		history.Op{Kind: history.Put, Key: "a", Value: "1", Outcome: history.Unknown, Call: 1, Return: 2},
		history.Op{Kind: history.Get, Key: "a", Consistency: history.Stale, Outcome: history.OK, Call: 3, Return: 4},
		history.Op{Kind: history.Get, Key: "a", Outcome: history.Unknown, Call: 3, Return: 4},
		history.Op{Kind: history.Get, Key: "a", Outcome: history.Fail, Code: 503, Call: 3, Return: 4},
		history.Op{Kind: history.Put, Key: "a", Value: "2", Outcome: history.Fail, Code: 429, Call: 3, Return: 4},
		history.Op{Kind: history.Put, Key: "a", Value: "3", Outcome: history.Fail, Code: 412, Cond: history.Cond{IfMatch: 9}, Call: 5, Return: 6},
		history.Op{Kind: history.Delete, Key: "a", Outcome: history.Fail, Code: 404, Call: 5, Return: 6},
		history.Op{Kind: history.Get, Key: "a", Consistency: history.Lease, Outcome: history.OK, Call: 7, Return: 8},
	)
	if len(in) != 4 {
		t.Fatalf("%d ops kept, want 4 (unknown put, 412, 404 delete, lease get)", len(in))
	}
	if in[0].Return != math.MaxInt64 {
		t.Fatalf("unknown op returns at %d, want infinity", in[0].Return)
	}
	if in[1].Return != 6 {
		t.Fatalf("known op's return changed to %d", in[1].Return)
	}
}

// TestUnboundRevisionBranches: a CAS with an unknown outcome against a key
// whose revision is not known yet may have succeeded or not.
func TestUnboundRevisionBranches(t *testing.T) {
	s := State{Floor: 4}
	unknownPut := &history.Op{Kind: history.Put, Key: "a", Value: "v1", Outcome: history.Unknown}
	next := Step(s, unknownPut, unknownPut)
	if len(next) != 1 {
		t.Fatalf("%d states after an unknown put", len(next))
	}
	s = next[0].(State)
	if k, _ := s.lookup("a"); k.Rev != 0 || k.Lo != 5 || s.Floor != 4 {
		t.Fatalf("unknown put: %s", DescribeState(s))
	}
	cas := &history.Op{Kind: history.Put, Key: "a", Value: "v2", Cond: history.Cond{IfMatch: 7}, Outcome: history.Unknown}
	next = Step(s, cas, cas)
	if len(next) != 2 {
		t.Fatalf("%d states after an undecidable unknown cas, want 2", len(next))
	}
	// If-Match 3 is below the unknown put's lowest possible revision.
	stale := &history.Op{Kind: history.Put, Key: "a", Value: "v3", Cond: history.Cond{IfMatch: 3}, Outcome: history.Unknown}
	if next = Step(s, stale, stale); len(next) != 1 || !Equal(next[0], s) {
		t.Fatalf("cas below the lower bound: %d states", len(next))
	}
	// A read binds it, and raises the floor.
	r := &history.Op{Kind: history.Get, Key: "a", Outcome: history.OK, Found: true, ReadValue: "v1", Rev: 6}
	bound := Step(s, r, r)
	if len(bound) != 1 {
		t.Fatal("read of the unknown put's value at revision 6 rejected")
	}
	if k, _ := bound[0].(State).lookup("a"); k.Rev != 6 || bound[0].(State).Floor != 6 {
		t.Fatalf("revision not bound: %s", DescribeState(bound[0]))
	}
	w := &history.Op{Kind: history.Put, Key: "b", Value: "w", Outcome: history.OK, Rev: 6}
	if len(Step(bound[0], w, w)) != 0 {
		t.Fatal("a later write at the bound revision accepted")
	}
	r.Rev = 4 // below the floor when the put took effect
	if len(Step(s, r, r)) != 0 {
		t.Fatal("read at a revision below the lower bound accepted")
	}
}

func TestHashAgreesWithEqual(t *testing.T) {
	a := State{Floor: 3, Keys: []keyState{{Key: "a", Value: "1", Rev: 2}, {Key: "b", Value: "2", Lo: 3}}}
	b := a.clone()
	if !Equal(a, b) || Hash(a) != Hash(b) {
		t.Fatal("equal states differ")
	}
	b.Keys[1].Lo = 4
	if Equal(a, b) {
		t.Fatal("different bounds compare equal")
	}
}

func TestOperationsRefinesUnknownWrites(t *testing.T) {
	h := history.History{
		// Read by #3: returns no later than #3 did.
		{ID: 0, Kind: history.Put, Key: "a", Value: "seen", Outcome: history.Unknown, Call: 1, Return: 2},
		// Nobody read it, nobody depends on b: dropped.
		{ID: 1, Kind: history.Put, Key: "b", Value: "unseen", Outcome: history.Unknown, Call: 1, Return: 2},
		// Nobody read it, but a later delete depends on c: kept.
		{ID: 2, Kind: history.Put, Key: "c", Value: "unseen-c", Outcome: history.Unknown, Call: 1, Return: 2},
		{ID: 3, Kind: history.Get, Key: "a", Outcome: history.OK, Found: true, ReadValue: "seen", Call: 5, Return: 9},
		{ID: 4, Kind: history.Get, Key: "a", Outcome: history.OK, Found: true, ReadValue: "seen", Call: 10, Return: 12},
		{ID: 5, Kind: history.Delete, Key: "c", Outcome: history.Fail, Code: 404, Call: 10, Return: 12},
		// Conditional: never dropped.
		{ID: 6, Kind: history.Put, Key: "d", Value: "cas", Cond: history.Cond{IfAbsent: true}, Outcome: history.Unknown, Call: 1, Return: 2},
	}
	got := map[int]int64{}
	for _, o := range Operations(h) {
		got[o.Input.(*history.Op).ID] = o.Return
	}
	want := map[int]int64{0: 9, 2: math.MaxInt64, 3: 9, 4: 12, 5: 12, 6: math.MaxInt64}
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for id, ret := range want {
		if got[id] != ret {
			t.Fatalf("op %d returns at %d, want %d (kept %v)", id, got[id], ret, got)
		}
	}
	// The dropped op cannot change the verdict: with or without it, a read
	// of b's old state is fine.
	m := New()
	if !porcupine.CheckOperations(m, Operations(h)) {
		t.Fatal("refined history rejected")
	}
}
