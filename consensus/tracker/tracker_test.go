package tracker

import "testing"

func TestInflightsBoundedByCount(t *testing.T) {
	in := NewInflights(3, 0)
	for i := uint64(1); i <= 3; i++ {
		if in.Full() {
			t.Fatalf("full after %d of 3", i-1)
		}
		in.Add(i*10, 100)
	}
	if !in.Full() {
		t.Fatal("not full at 3 of 3")
	}
	in.FreeLE(15)
	if in.Full() || in.Count() != 2 || in.Bytes() != 200 {
		t.Fatalf("after FreeLE(15): count=%d bytes=%d full=%v", in.Count(), in.Bytes(), in.Full())
	}
	in.Add(40, 1) // wraps the ring
	in.FreeLE(30)
	if in.Count() != 1 || in.Bytes() != 1 {
		t.Fatalf("after wrap: count=%d bytes=%d", in.Count(), in.Bytes())
	}
	in.FreeLE(100)
	if in.Count() != 0 || in.Bytes() != 0 {
		t.Fatalf("after FreeLE(100): count=%d bytes=%d", in.Count(), in.Bytes())
	}
}

func TestInflightsBoundedByBytes(t *testing.T) {
	in := NewInflights(100, 1000)
	in.Add(1, 600)
	if in.Full() || in.RoomBytes() != 400 {
		t.Fatalf("full=%v room=%d", in.Full(), in.RoomBytes())
	}
	in.Add(2, 400)
	if !in.Full() || in.RoomBytes() != 0 {
		t.Fatalf("full=%v room=%d at exactly maxBytes", in.Full(), in.RoomBytes())
	}
	in.FreeLE(1)
	if in.Full() {
		t.Fatal("still full after freeing 600 bytes")
	}
}

func TestInflightsAddToFullPanics(t *testing.T) {
	in := NewInflights(1, 0)
	in.Add(1, 1)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic adding to a full window")
		}
	}()
	in.Add(2, 1)
}

func TestProgressProbeThenReplicate(t *testing.T) {
	p := NewProgress(4, 0)
	p.Reset(11)
	if p.IsPaused() {
		t.Fatal("a fresh probe is paused")
	}
	p.SentEntries(12, 10)
	if !p.IsPaused() || p.Next != 11 {
		t.Fatalf("after a probe: paused=%v next=%d", p.IsPaused(), p.Next)
	}
	// Stale rejection of a different probe is ignored.
	if p.MaybeBackOff(7, 5) {
		t.Fatal("stale rejection accepted")
	}
	if !p.MaybeBackOff(10, 6) || p.Next != 6 || p.IsPaused() {
		t.Fatalf("backoff: next=%d paused=%v", p.Next, p.IsPaused())
	}
	if !p.MaybeUpdate(8) || p.Match != 8 || p.Next != 9 {
		t.Fatalf("update: %v", p)
	}
	p.BecomeReplicate()
	p.SentEntries(12, 10)
	p.SentEntries(15, 10)
	if p.Next != 16 || p.Inflights.Count() != 2 {
		t.Fatalf("replicate: %v", p)
	}
	// A rejection at or below Match is stale in replicate state.
	if p.MaybeBackOff(8, 1) {
		t.Fatal("stale replicate rejection accepted")
	}
	if !p.MaybeBackOff(12, 3) || p.State != StateProbe || p.Next != 9 {
		t.Fatalf("replicate backoff must not go below match+1: %v", p)
	}
}

func TestProgressNoAllocs(t *testing.T) {
	p := NewProgress(8, 1<<20)
	p.BecomeReplicate()
	var idx uint64
	if a := testing.AllocsPerRun(1000, func() {
		idx++
		p.SentEntries(idx, 100)
		p.MaybeUpdate(idx)
		p.Inflights.FreeLE(idx)
	}); a != 0 {
		t.Fatalf("allocs = %v", a)
	}
}
