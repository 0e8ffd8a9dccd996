package batch_test

import (
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgekv/edgekv/batch"
)

// result is what the runtime's apply loop hands back to a handler.
type result struct {
	revision uint64
	err      error
}

// Example_proposerLoop shows the whole protocol: a handler acquires a
// waiter, submits and waits; the proposer goroutine batches, "proposes"
// (here: commits at once), finishes the batch and completes the waiters.
func Example_proposerLoop() {
	clock := batch.NewMonotonicClock()
	set := metrics.NewSet()
	b, err := batch.New(batch.Config{Clock: clock, Metrics: set})
	if err != nil {
		panic(err)
	}
	reg, err := batch.NewRegistry[result](2*batch.DefaultMaxPending, 1)
	if err != nil {
		panic(err)
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})

	// The proposer goroutine: the only caller of Next, Park, Unpark, Finish.
	go func() {
		defer close(stopped)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		revision := uint64(0)
		for {
			now := clock.Now()
			for bt, ok := b.Next(now); ok; bt, ok = b.Next(now) {
				// A real runtime copies bt.Proposals into Raft entries here
				// and finishes the batch when its last entry commits.
				for _, p := range bt.Proposals {
					revision++
					reg.Complete(p.RequestID, result{revision: revision})
				}
				b.Finish(bt.ID, clock.Now(), true)
			}
			wait, ok := b.Park(now)
			if !ok {
				continue
			}
			if wait != batch.NoDeadline {
				timer.Reset(wait)
			}
			select {
			case <-b.Wakeup():
			case <-timer.C:
			case <-stop:
				b.Unpark()
				return
			}
			timer.Stop()
			b.Unpark()
		}
	}()

	// A handler.
	put := func(cmd []byte) {
		w, reason := reg.Acquire()
		if reason == batch.ReasonNone {
			if reason = b.Submit(batch.Proposal{RequestID: w.ID(), Data: cmd}); reason != batch.ReasonNone {
				w.Cancel()
			}
		}
		if reason != batch.ReasonNone {
			fmt.Println("refused:", reason.String()) // 429, 413 or 503 by reason
			return
		}
		res, ok := w.Wait(5 * time.Second)
		if !ok {
			fmt.Println("timeout") // 504: outcome unknown
			return
		}
		fmt.Println("committed at revision", res.revision)
	}
	put([]byte("put a=1"))
	put([]byte("put b=2"))

	close(stop)
	<-stopped
	b.Close()
	put([]byte("put c=3"))
	// Output:
	// committed at revision 1
	// committed at revision 2
	// refused: closed
}
