package batch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRingRejectsBadCapacity(t *testing.T) {
	for _, c := range []int{0, -1, maxRingCapacity + 1} {
		if _, err := NewRing[int](c); err == nil {
			t.Errorf("NewRing(%d): want error", c)
		}
	}
	for c, want := range map[int]int{1: 1, 2: 2, 3: 4, 1000: 1024, 1024: 1024} {
		r, err := NewRing[int](c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Cap() != want {
			t.Errorf("NewRing(%d).Cap() = %d, want %d", c, r.Cap(), want)
		}
	}
}

func TestRingFIFOFullEmptyAndWrap(t *testing.T) {
	r, err := NewRing[int](8)
	if err != nil {
		t.Fatal(err)
	}
	next, want := 0, 0
	// Several laps around the ring, filling it completely each time.
	for lap := 0; lap < 5; lap++ {
		for i := 0; i < 8; i++ {
			if !r.TryPush(next) {
				t.Fatalf("lap %d: push %d refused with %d queued", lap, next, i)
			}
			next++
		}
		if r.TryPush(-1) {
			t.Fatalf("lap %d: push into a full ring accepted", lap)
		}
		if p, ok := r.peek(); !ok || *p != want {
			t.Fatalf("lap %d: peek = %v,%v want %d", lap, p, ok, want)
		}
		for i := 0; i < 8; i++ {
			v, ok := r.TryPop()
			if !ok || v != want {
				t.Fatalf("lap %d: pop = %d,%v want %d", lap, v, ok, want)
			}
			want++
		}
		if v, ok := r.TryPop(); ok {
			t.Fatalf("lap %d: pop from empty ring returned %d", lap, v)
		}
		if _, ok := r.peek(); ok {
			t.Fatalf("lap %d: peek on empty ring succeeded", lap)
		}
	}
}

func TestRingPopClearsCell(t *testing.T) {
	r, _ := NewRing[*int](2)
	x := 7
	r.TryPush(&x)
	if v, ok := r.TryPop(); !ok || v != &x {
		t.Fatal("pop lost the value")
	}
	for i := range r.slots {
		if r.slots[i].val != nil {
			t.Fatalf("cell %d still references a popped value", i)
		}
	}
}

// encode packs a producer number and its sequence so the consumer can
// check per-producer FIFO order, loss and duplication.
func encode(producer, seq int) uint64 { return uint64(producer)<<32 | uint64(seq) }

func decode(v uint64) (producer, seq int) { return int(v >> 32), int(v & 0xffffffff) }

// TestRingManyProducersOneConsumer hammers a small ring (so it is full
// most of the time and wraps thousands of times) and checks that nothing is
// lost, duplicated or reordered within a producer.
func TestRingManyProducersOneConsumer(t *testing.T) {
	producers, perProducer := 32, 20000
	if testing.Short() {
		perProducer = 2000
	}
	r, _ := NewRing[uint64](64)
	var wg sync.WaitGroup
	var stop atomic.Bool // set when the test fails, so producers exit
	defer func() { stop.Store(true); wg.Wait() }()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < perProducer; s++ {
				for !r.TryPush(encode(p, s)) {
					if stop.Load() {
						return
					}
					runtime.Gosched()
				}
			}
		}()
	}
	nextSeq := make([]int, producers)
	for got := 0; got < producers*perProducer; {
		v, ok := r.TryPop()
		if !ok {
			runtime.Gosched()
			continue
		}
		p, s := decode(v)
		if p >= producers || s != nextSeq[p] {
			t.Fatalf("producer %d: got seq %d, want %d (lost, duplicated or reordered)", p, s, nextSeq[p])
		}
		nextSeq[p]++
		got++
	}
	stop.Store(true)
	wg.Wait()
	if v, ok := r.TryPop(); ok {
		t.Fatalf("extra item %x after all were received", v)
	}
}

// TestRingManyProducersManyConsumers checks the MPMC use (the registry's
// free list): every item is received exactly once.
func TestRingManyProducersManyConsumers(t *testing.T) {
	producers, consumers, perProducer := 8, 8, 20000
	if testing.Short() {
		perProducer = 2000
	}
	total := producers * perProducer
	r, _ := NewRing[uint64](32)
	seen := make([]atomic.Uint32, total)
	var received atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < perProducer; s++ {
				for !r.TryPush(uint64(p*perProducer + s)) {
					runtime.Gosched()
				}
			}
		}()
	}
	for c := 0; c < consumers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for received.Load() < int64(total) {
				v, ok := r.TryPop()
				if !ok {
					runtime.Gosched()
					continue
				}
				seen[v].Add(1)
				received.Add(1)
			}
		}()
	}
	wg.Wait()
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("item %d received %d times", i, n)
		}
	}
}
