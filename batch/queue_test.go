package batch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestQueue[T any](t *testing.T, maxCount int, maxBytes int64) (*Queue[T], *FakeClock) {
	t.Helper()
	clk := &FakeClock{}
	q, err := NewQueue[T](maxCount, maxBytes, clk)
	if err != nil {
		t.Fatal(err)
	}
	return q, clk
}

func TestQueueBadConfig(t *testing.T) {
	clk := &FakeClock{}
	if _, err := NewQueue[int](0, 10, clk); err == nil {
		t.Error("count 0 accepted")
	}
	if _, err := NewQueue[int](10, 0, clk); err == nil {
		t.Error("bytes 0 accepted")
	}
	if _, err := NewQueue[int](10, 10, nil); err == nil {
		t.Error("nil clock accepted")
	}
}

func TestQueueCountBoundRejectsAndClears(t *testing.T) {
	q, _ := newTestQueue[int](t, 5, 1<<20) // ring rounds to 8, bound stays 5
	for i := 0; i < 5; i++ {
		if r := q.TryPush(i, 1); r != ReasonNone {
			t.Fatalf("push %d: %v", i, r)
		}
	}
	for i := 0; i < 3; i++ {
		if r := q.TryPush(99, 1); r != ReasonFullCount {
			t.Fatalf("push past the count bound: %v, want full_count", r)
		}
	}
	if q.Len() != 5 || q.Rejected(ReasonFullCount) != 3 || q.Accepted() != 5 {
		t.Fatalf("len %d rejected %d accepted %d", q.Len(), q.Rejected(ReasonFullCount), q.Accepted())
	}
	// Nothing is sticky: one pop makes room for exactly one push.
	if v, _, _, ok := q.Pop(); !ok || v != 0 {
		t.Fatalf("pop = %d,%v", v, ok)
	}
	if r := q.TryPush(5, 1); r != ReasonNone {
		t.Fatalf("push after a pop: %v", r)
	}
	if r := q.TryPush(6, 1); r != ReasonFullCount {
		t.Fatalf("second push after one pop: %v", r)
	}
	for want := 1; want <= 5; want++ {
		if v, _, _, ok := q.Pop(); !ok || v != want {
			t.Fatalf("pop = %d,%v want %d", v, ok, want)
		}
	}
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("drained queue reports len %d bytes %d", q.Len(), q.Bytes())
	}
}

func TestQueueByteBoundAndTooLarge(t *testing.T) {
	q, _ := newTestQueue[int](t, 100, 1000)
	if r := q.TryPush(0, 1001); r != ReasonTooLarge {
		t.Fatalf("oversized item: %v", r)
	}
	if r := q.TryPush(1, 1000); r != ReasonNone {
		t.Fatalf("item of exactly the bound: %v", r)
	}
	if r := q.TryPush(2, 1); r != ReasonFullBytes {
		t.Fatalf("push past the byte bound: %v", r)
	}
	if q.Len() != 1 || q.Bytes() != 1000 {
		t.Fatalf("a refused push left a reservation: len %d bytes %d", q.Len(), q.Bytes())
	}
	q.Pop()
	for i := 0; i < 10; i++ {
		if r := q.TryPush(i, 100); r != ReasonNone {
			t.Fatalf("push %d after drain: %v", i, r)
		}
	}
	if r := q.TryPush(10, 1); r != ReasonFullBytes {
		t.Fatalf("push past the byte bound: %v", r)
	}
	if !ReasonFullBytes.Retryable() || ReasonTooLarge.Retryable() || ReasonClosed.Retryable() {
		t.Fatal("Retryable misclassifies")
	}
}

func TestQueueClose(t *testing.T) {
	q, _ := newTestQueue[int](t, 10, 100)
	q.TryPush(1, 1)
	q.Close()
	if r := q.TryPush(2, 1); r != ReasonClosed {
		t.Fatalf("push after close: %v", r)
	}
	if v, _, _, ok := q.Pop(); !ok || v != 1 {
		t.Fatal("item admitted before Close was lost")
	}
	select {
	case <-q.Wakeup():
	default:
		t.Fatal("Close did not wake the consumer")
	}
	if q.Park(1) {
		t.Fatal("Park succeeded on a closed queue: the consumer would sleep forever")
	}
}

func TestQueueStampsAcceptTime(t *testing.T) {
	q, clk := newTestQueue[int](t, 10, 100)
	clk.Advance(5 * time.Millisecond)
	q.TryPush(1, 7)
	size, at, ok := q.Peek()
	if !ok || size != 7 || at != int64(5*time.Millisecond) {
		t.Fatalf("peek = %d,%d,%v", size, at, ok)
	}
}

func TestQueueParkWakesOnFirstItem(t *testing.T) {
	q, _ := newTestQueue[int](t, 10, 100)
	if !q.Park(1) {
		t.Fatal("Park on an empty queue refused")
	}
	q.TryPush(1, 0) // a zero-byte item must still wake an "any item" park
	select {
	case <-q.Wakeup():
	default:
		t.Fatal("push did not wake the parked consumer")
	}
	q.Unpark()
	if q.Park(1) {
		t.Fatal("Park with a ready item must refuse (no sleeping with work queued)")
	}
}

func TestQueueParkByteThreshold(t *testing.T) {
	q, _ := newTestQueue[int](t, 100, 1000)
	q.TryPush(0, 10)
	if !q.Park(100) {
		t.Fatal("Park below the threshold refused")
	}
	for i := 0; i < 8; i++ { // 90 bytes queued: below 100
		q.TryPush(i, 10)
	}
	select {
	case <-q.Wakeup():
		t.Fatal("woken below the threshold")
	default:
	}
	q.TryPush(9, 10) // 100 bytes
	select {
	case <-q.Wakeup():
	default:
		t.Fatal("not woken at the threshold")
	}
	q.Unpark()
	if !q.Park(ParkNoWake) {
		t.Fatal("ParkNoWake refused")
	}
	q.TryPush(10, 10)
	select {
	case <-q.Wakeup():
		t.Fatal("ParkNoWake consumer was woken by a producer")
	default:
	}
	q.Unpark()
}

// TestQueueManyProducersParkingConsumer runs producers against a consumer
// that sleeps whenever the queue is empty, as the proposer does. A lost
// wake-up shows as the consumer stuck while items are queued (caught by
// the deadline); loss, duplication or reordering by the sequence check;
// a broken bound by the consumer's samples of Len and Bytes.
func TestQueueManyProducersParkingConsumer(t *testing.T) {
	producers, perProducer := 64, 3000
	if testing.Short() {
		perProducer = 300
	}
	const maxCount, maxBytes = 100, 1000 // bytes bind first: items are 1..16 bytes
	q, err := NewQueue[uint64](maxCount, maxBytes, NewMonotonicClock())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 0; s < perProducer; s++ {
				for {
					r := q.TryPush(encode(p, s), int64(1+(p+s)%16))
					if r == ReasonNone {
						break
					}
					if !r.Retryable() {
						t.Errorf("unexpected refusal %v", r)
						return
					}
					runtime.Gosched()
				}
			}
		}()
	}
	nextSeq := make([]int, producers)
	deadline := time.After(60 * time.Second)
	for got := 0; got < producers*perProducer; {
		if n, b := q.Len(), q.Bytes(); n > maxCount || b > maxBytes {
			t.Fatalf("bound broken: len %d bytes %d", n, b)
		}
		v, size, _, ok := q.Pop()
		if ok {
			p, s := decode(v)
			if s != nextSeq[p] || size != int64(1+(p+s)%16) {
				t.Fatalf("producer %d: got seq %d size %d, want seq %d", p, s, size, nextSeq[p])
			}
			nextSeq[p]++
			got++
			continue
		}
		if !q.Park(1) {
			continue
		}
		select {
		case <-q.Wakeup():
		case <-deadline:
			t.Fatalf("consumer asleep with %d items queued after %d received: lost wake-up", q.Len(), got)
		}
		q.Unpark()
	}
	wg.Wait()
	if q.Len() != 0 || q.Bytes() != 0 {
		t.Fatalf("after draining: len %d bytes %d", q.Len(), q.Bytes())
	}
	if q.Accepted() != uint64(producers*perProducer) {
		t.Fatalf("accepted %d, want %d", q.Accepted(), producers*perProducer)
	}
}

// The read path: a bounded read queue refuses at once when full (503 in
// HTTP), the proposer drains every queued read into one ReadIndex round,
// and the waiters are completed when the round is confirmed.
func TestReadQueueBoundedRoundTrip(t *testing.T) {
	clk := &FakeClock{}
	reads, err := NewReadQueue(3, clk)
	if err != nil {
		t.Fatal(err)
	}
	reg := newTestRegistry(t, 8, 0)
	var waiters []*Waiter[uint64]
	for i := 0; i < 4; i++ {
		w, _ := reg.Acquire()
		r := reads.TryPush(ReadRequest{RequestID: w.ID()}, ReadRequestBytes)
		if i < 3 && r != ReasonNone {
			t.Fatalf("read %d refused: %v", i, r)
		}
		if i == 3 {
			if r != ReasonFullCount {
				t.Fatalf("read past the bound: %v", r)
			}
			w.Cancel()
			continue
		}
		waiters = append(waiters, w)
	}
	// One ReadIndex round for every queued read.
	const readIndex = 77
	var round []uint64
	for {
		rr, _, _, ok := reads.Pop()
		if !ok {
			break
		}
		round = append(round, rr.RequestID)
	}
	for _, id := range round {
		reg.Complete(id, readIndex)
	}
	for _, w := range waiters {
		if idx, ok := w.Wait(time.Second); !ok || idx != readIndex {
			t.Fatalf("read got %d,%v", idx, ok)
		}
	}
	if r := reads.TryPush(ReadRequest{}, ReadRequestBytes); r != ReasonNone {
		t.Fatalf("after the round the read queue still refuses: %v", r)
	}
}

// TestQueuePingPongNoLostWakeup makes the producer push each item just as
// the consumer is parking (it waits for the previous item to be popped),
// over and over, so that the push races the consumer's Park; a lost
// wake-up leaves the consumer asleep with an item queued.
func TestQueuePingPongNoLostWakeup(t *testing.T) {
	rounds := 100_000
	if testing.Short() {
		rounds = 10_000
	}
	q, err := NewQueue[int](4, 1<<20, NewMonotonicClock())
	if err != nil {
		t.Fatal(err)
	}
	var popped atomic.Int64
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < rounds && !stop.Load(); i++ {
			for popped.Load() < int64(i) && !stop.Load() {
				runtime.Gosched()
			}
			if r := q.TryPush(i, 1); r != ReasonNone {
				t.Errorf("push %d: %v", i, r)
				return
			}
		}
	}()
	defer func() { stop.Store(true); <-done }()
	for i := 0; i < rounds; {
		if v, _, _, ok := q.Pop(); ok {
			if v != i {
				t.Fatalf("got %d, want %d", v, i)
			}
			i++
			popped.Store(int64(i))
			continue
		}
		if !q.Park(1) {
			continue
		}
		select {
		case <-q.Wakeup():
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: consumer asleep with %d item(s) queued: lost wake-up", i, q.Len())
		}
		q.Unpark()
	}
}

// TestQueuePushDuringParkIsNotLost pushes at the exact point of Park where
// a wrong ordering (re-check before announcing the sleep) loses the wake.
func TestQueuePushDuringParkIsNotLost(t *testing.T) {
	for _, threshold := range []int64{1, 10} {
		q, _ := newTestQueue[int](t, 10, 100)
		q.testHookParking = func() { q.TryPush(1, 10) }
		if q.Park(threshold) {
			select {
			case <-q.Wakeup():
			default:
				t.Fatalf("threshold %d: consumer would sleep with an item queued and no wake-up", threshold)
			}
		}
		q.Unpark()
	}
}
