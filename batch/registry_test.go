package batch

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func newTestRegistry(t *testing.T, capacity int, epoch uint16) *Registry[uint64] {
	t.Helper()
	r, err := NewRegistry[uint64](capacity, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryBadCapacity(t *testing.T) {
	for _, c := range []int{0, -1, maxRegistrySlot + 1} {
		if _, err := NewRegistry[int](c, 0); err == nil {
			t.Errorf("capacity %d accepted", c)
		}
	}
}

func TestRegistryCompleteThenWait(t *testing.T) {
	r := newTestRegistry(t, 4, 7)
	w, reason := r.Acquire()
	if reason != ReasonNone {
		t.Fatal(reason)
	}
	id := w.ID()
	if id == 0 || id>>62 != 0 || id>>idEpochShift != 7 {
		t.Fatalf("id %x: zero, top bits set, or epoch not 7", id)
	}
	if !r.Complete(id, 42) {
		t.Fatal("Complete of a waiting id refused")
	}
	if completeWithin(t, r, id, 43) {
		t.Fatal("second Complete of the same id accepted")
	}
	res, ok := w.Wait(time.Second)
	if !ok || res != 42 {
		t.Fatalf("Wait = %d,%v", res, ok)
	}
	if s := r.Stats(); s.InUse != 0 || s.Completed != 1 || s.Stale != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRegistryWaitBlocksUntilComplete(t *testing.T) {
	r := newTestRegistry(t, 4, 0)
	w, _ := r.Acquire()
	id := w.ID()
	got := make(chan uint64, 1)
	go func() {
		res, ok := w.Wait(time.Minute)
		if !ok {
			res = 0
		}
		got <- res
	}()
	r.Complete(id, 9)
	select {
	case res := <-got:
		if res != 9 {
			t.Fatalf("result %d", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after Complete")
	}
}

func TestRegistryTimeoutAbandonsAndIgnoresLateComplete(t *testing.T) {
	r := newTestRegistry(t, 1, 0) // one slot: reuse is immediate
	w, _ := r.Acquire()
	old := w.ID()
	if _, ok := w.Wait(time.Millisecond); ok {
		t.Fatal("Wait without Complete succeeded")
	}
	w2, reason := r.Acquire()
	if reason != ReasonNone {
		t.Fatal("slot not returned after timeout")
	}
	if w2.ID() == old {
		t.Fatal("slot reuse repeated an id")
	}
	if r.Complete(old, 1) {
		t.Fatal("late Complete of a timed-out id reached the slot's next user")
	}
	r.Complete(w2.ID(), 2)
	if res, ok := w2.Wait(time.Second); !ok || res != 2 {
		t.Fatalf("next user got %d,%v; want 2 (a stale token or result leaked)", res, ok)
	}
	if s := r.Stats(); s.TimedOut != 1 || s.Stale != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRegistryExhaustionAndCancel(t *testing.T) {
	r := newTestRegistry(t, 3, 0)
	var held []*Waiter[uint64]
	seen := map[uint64]bool{}
	for i := 0; i < 3; i++ {
		w, reason := r.Acquire()
		if reason != ReasonNone {
			t.Fatal(reason)
		}
		held = append(held, w)
		seen[w.ID()] = true
	}
	if _, reason := r.Acquire(); reason != ReasonFullCount {
		t.Fatalf("acquire past capacity: %v", reason)
	}
	held[1].Cancel()
	w, reason := r.Acquire()
	if reason != ReasonNone || seen[w.ID()] {
		t.Fatalf("after cancel: %v, id reused %v", reason, seen[w.ID()])
	}
	// Cancel after a Complete won the race still returns the waiter.
	r.Complete(held[0].ID(), 5)
	held[0].Cancel()
	if s := r.Stats(); s.InUse != 2 || s.Exhausted != 1 {
		t.Fatalf("stats %+v", s)
	}
	for _, bad := range []uint64{0, 1 << 63, 3 | 1<<20} {
		if r.Complete(bad, 0) {
			t.Fatalf("Complete(%x) of a foreign id accepted", bad)
		}
	}
}

// TestRegistryIDsUniqueAcrossReuse cycles each slot many times.
func TestRegistryIDsUniqueAcrossReuse(t *testing.T) {
	r := newTestRegistry(t, 8, 3)
	seen := map[uint64]bool{}
	for i := 0; i < 10000; i++ {
		w, _ := r.Acquire()
		if seen[w.ID()] {
			t.Fatalf("id %x issued twice", w.ID())
		}
		seen[w.ID()] = true
		w.Cancel()
	}
}

// TestRegistryConcurrentNoCrossTalk runs many submitters with short
// timeouts against a completer that answers each id with the id itself,
// late or never for some, and fires stale ids: a waiter must only ever
// see its own id as result.
func TestRegistryConcurrentNoCrossTalk(t *testing.T) {
	workers, perWorker := 64, 500
	if testing.Short() {
		perWorker = 100
	}
	r := newTestRegistry(t, 32, 1)
	ids := make(chan uint64, 1024)
	var wg, completer sync.WaitGroup
	var answered, timedOut atomic.Int64
	completer.Add(1)
	go func() {
		defer completer.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		var stale []uint64
		for id := range ids {
			switch rng.IntN(10) {
			case 0: // never answered: its waiter times out
			case 1:
				stale = append(stale, id) // answered late, below
			default:
				r.Complete(id, id)
			}
			if len(stale) > 8 {
				for _, s := range stale {
					r.Complete(s, s)
				}
				stale = stale[:0]
			}
		}
	}()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perWorker; j++ {
				w, reason := r.Acquire()
				if reason != ReasonNone {
					j-- // all slots busy: try again
					runtime.Gosched()
					continue
				}
				id := w.ID()
				ids <- id
				res, ok := w.Wait(2 * time.Millisecond)
				if ok && res != id {
					t.Errorf("waiter %x got result %x", id, res)
					return
				}
				if ok {
					answered.Add(1)
				} else {
					timedOut.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	completer.Wait()
	if s := r.Stats(); s.InUse != 0 {
		t.Fatalf("%d waiters leaked", s.InUse)
	}
	if answered.Load() == 0 || timedOut.Load() == 0 {
		t.Fatalf("answered %d timed out %d: both paths must be exercised", answered.Load(), timedOut.Load())
	}
}

func TestRegistryMetrics(t *testing.T) {
	set := metrics.NewSet()
	r := newTestRegistry(t, 2, 0)
	r.RegisterMetrics(set, "edgekv_batch_waiters")
	w, _ := r.Acquire()
	r.Complete(w.ID(), 1)
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{"edgekv_batch_waiters_in_use 1\n", "edgekv_batch_waiters_completed_total 1\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("lacks %q in\n%s", want, buf.String())
		}
	}
	w.Wait(time.Second)
}

// completeWithin calls Complete and fails the test if it blocks (Complete
// must never block, whatever the id's state).
func completeWithin(t *testing.T, r *Registry[uint64], id, result uint64) bool {
	t.Helper()
	got := make(chan bool, 1)
	go func() { got <- r.Complete(id, result) }()
	select {
	case ok := <-got:
		return ok
	case <-time.After(10 * time.Second):
		t.Fatalf("Complete(%x) blocked", id)
		return false
	}
}
