package batch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testProposer is a reference proposer loop over a Batcher and a Registry,
// with a fake cluster that commits each batch latency after it left. It is
// what the runtime's loop does around Raft (see Example_proposerLoop),
// used here by the benchmarks and the mutex-profile test.
type testProposer struct {
	b       *Batcher
	reg     *Registry[uint64]
	clock   Clock
	latency time.Duration
	// flights is a FIFO of batches waiting for their commit time, each with
	// its request ids copied out (the batch slice is reused by Next).
	flights []testFlight
	head, n int
	stop    chan struct{}
	done    sync.WaitGroup
	batches atomic.Uint64
	// parks counts the proposer's sleeps: each allows one wake-up.
	parks atomic.Uint64
}

type testFlight struct {
	id       uint64
	commitAt int64
	ids      []uint64
}

func startTestProposer(t testing.TB, b *Batcher, reg *Registry[uint64], latency time.Duration) *testProposer {
	t.Helper()
	cfg := b.Config()
	p := &testProposer{b: b, reg: reg, clock: cfg.Clock, latency: latency, stop: make(chan struct{})}
	p.flights = make([]testFlight, cfg.MaxInflightBatches)
	for i := range p.flights {
		p.flights[i].ids = make([]uint64, 0, cap(b.out))
	}
	p.done.Add(1)
	go p.run()
	t.Cleanup(p.close)
	return p
}

func (p *testProposer) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.done.Wait()
}

func (p *testProposer) commitDue(now int64) {
	for p.n > 0 && p.flights[p.head].commitAt <= now {
		f := &p.flights[p.head]
		for _, id := range f.ids {
			p.reg.Complete(id, id)
		}
		p.b.Finish(f.id, now, true)
		p.head = (p.head + 1) % len(p.flights)
		p.n--
	}
}

func (p *testProposer) run() {
	defer p.done.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		now := p.clock.Now()
		p.commitDue(now)
		for {
			bt, ok := p.b.Next(now)
			if !ok {
				break
			}
			p.batches.Add(1)
			if p.n == len(p.flights) {
				panic("batcher handed out more batches than its in-flight bound")
			}
			f := &p.flights[(p.head+p.n)%len(p.flights)]
			f.id, f.commitAt, f.ids = bt.ID, now+int64(p.latency), f.ids[:0]
			for i := range bt.Proposals {
				f.ids = append(f.ids, bt.Proposals[i].RequestID)
			}
			p.n++
			p.commitDue(now) // zero latency: commit at once
		}
		wait, ok := p.b.Park(now)
		if !ok {
			continue
		}
		p.parks.Add(1)
		if p.n > 0 {
			wait = min(wait, time.Duration(p.flights[p.head].commitAt-now))
		}
		if wait != NoDeadline {
			timer.Reset(wait)
		}
		select {
		case <-p.b.Wakeup():
		case <-timer.C:
		case <-p.stop:
			p.b.Unpark()
			return
		}
		timer.Stop()
		p.b.Unpark()
	}
}

// runClosedLoop runs producers that each Acquire, Submit and Wait, for ops
// operations in total, and returns how many were refused (and retried).
func runClosedLoop(t testing.TB, b *Batcher, reg *Registry[uint64], producers int, ops int64, ready func()) (refused int64) {
	t.Helper()
	var remaining atomic.Int64
	remaining.Store(ops)
	var refusedCount atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	payload := make([]byte, 100)
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for remaining.Add(-1) >= 0 {
				for {
					w, r := reg.Acquire()
					if r != ReasonNone {
						refusedCount.Add(1)
						continue
					}
					// The id is read before Wait: Wait releases the waiter, and
					// another producer may take its slot at once.
					id := w.ID()
					if r := b.Submit(Proposal{RequestID: id, Data: payload}); r != ReasonNone {
						w.Cancel()
						refusedCount.Add(1)
						continue
					}
					if res, ok := w.Wait(10 * time.Second); !ok || res != id && res != 0 {
						t.Errorf("request not completed: ok %v", ok)
						return
					}
					break
				}
			}
		}()
	}
	ready()
	close(start)
	wg.Wait()
	return refusedCount.Load()
}
