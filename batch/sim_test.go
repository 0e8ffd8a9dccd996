package batch

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The simulation drives a Batcher with a FakeClock, Poisson arrivals and a
// fake "raft+fsync" consumer whose commit time is a function of the batch,
// all in one goroutine, event by event: a seed replays a run exactly.

// simPhase is a stretch of simulated time with its own load and cluster.
type simPhase struct {
	name     string
	duration time.Duration
	// ratePerSec is the mean arrival rate (Poisson).
	ratePerSec float64
	// commit returns when a batch emitted at emitNanos commits, given when
	// the previous batch committed (Raft commits in log order, so the
	// simulator also clamps the result to prevCommitNanos).
	commit func(emitNanos, prevCommitNanos int64, entries int, bytes int64) int64
}

// fixedLatency models a pipelined cluster: every batch takes latency.
func fixedLatency(latency time.Duration) func(int64, int64, int, int64) int64 {
	return func(emit, _ int64, _ int, _ int64) int64 { return emit + int64(latency) }
}

// serialFsync models a WAL that syncs one batch at a time: a batch starts
// its sync when the previous one is done, and the sync costs a fixed part
// plus a part per entry.
func serialFsync(fixed, perEntry time.Duration) func(int64, int64, int, int64) int64 {
	return func(emit, prevCommit int64, entries int, _ int64) int64 {
		return max(emit, prevCommit) + int64(fixed) + int64(entries)*int64(perEntry)
	}
}

type phaseResult struct {
	name            string
	batches         int
	entries         int
	maxWaitNanos    int64
	sumWaitNanos    int64
	rejected        int
	maxPending      int
	endPending      int
	endLatencyNanos int64
}

func (r phaseResult) avgBatch() float64 {
	if r.batches == 0 {
		return 0
	}
	return float64(r.entries) / float64(r.batches)
}

func (r phaseResult) avgWait() time.Duration {
	if r.entries == 0 {
		return 0
	}
	return time.Duration(r.sumWaitNanos / int64(r.entries))
}

type simFlight struct {
	id       uint64
	commitAt int64
}

// runSim plays the phases and returns one result per phase plus a hash of
// every batch (id, size, time) for the replay check. Measurements of a
// phase skip its first warmupShare, while the latency estimate converges.
func runSim(t *testing.T, seed uint64, cfg Config, phases []simPhase, warmupShare float64) ([]phaseResult, uint64) {
	t.Helper()
	b, clk := newTestBatcher(t, cfg)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := fnv.New64a()
	var (
		results    []phaseResult
		flights    []simFlight
		lastCommit int64
		deadline   = int64(math.MaxInt64)
		parked     bool
		nextID     uint64
	)
	phaseStart := int64(0)
	for _, ph := range phases {
		res := phaseResult{name: ph.name}
		phaseEnd := phaseStart + int64(ph.duration)
		measureFrom := phaseStart + int64(float64(ph.duration)*warmupShare)
		meanGap := 1e9 / ph.ratePerSec
		nextArrival := clk.Now() + int64(rng.ExpFloat64()*meanGap)
		for {
			now := min(nextArrival, deadline, phaseEnd)
			if len(flights) > 0 {
				now = min(now, flights[0].commitAt)
			}
			clk.Set(max(now, clk.Now()))
			now = clk.Now()
			if now >= phaseEnd {
				break
			}
			measuring := now >= measureFrom
			arrivalOnly := true
			for len(flights) > 0 && flights[0].commitAt <= now {
				b.Finish(flights[0].id, now, true)
				flights = flights[1:]
				arrivalOnly = false
			}
			if deadline <= now {
				arrivalOnly = false
				deadline = math.MaxInt64
			}
			for nextArrival <= now {
				nextID++
				if r := b.Submit(Proposal{RequestID: nextID, Data: make([]byte, 64)}); r != ReasonNone {
					if !r.Retryable() {
						t.Fatalf("refusal %v", r)
					}
					if measuring {
						res.rejected++
					}
				}
				nextArrival += max(int64(rng.ExpFloat64()*meanGap), 1)
			}
			// A real proposer that parked is asleep: it only runs now if a
			// producer woke it, a Finish arrived or its timer fired.
			woken := false
			select {
			case <-b.Wakeup():
				woken = true
			default:
			}
			wasParked := parked
			if parked {
				b.Unpark()
				parked = false
			}
			for {
				_, oldest, _ := b.queue.Peek()
				bt, ok := b.Next(now)
				if !ok {
					break
				}
				if arrivalOnly && wasParked && !woken {
					t.Fatalf("t=%v: a batch became due on an arrival that did not wake the parked proposer", time.Duration(now))
				}
				fmt.Fprintf(h, "%d:%d:%d;", bt.ID, len(bt.Proposals), now)
				if measuring {
					res.batches++
					res.entries += len(bt.Proposals)
					res.maxWaitNanos = max(res.maxWaitNanos, now-oldest)
				}
				lastCommit = max(ph.commit(now, lastCommit, len(bt.Proposals), bt.Bytes), lastCommit)
				flights = append(flights, simFlight{bt.ID, lastCommit})
			}
			if measuring {
				res.maxPending = max(res.maxPending, b.Stats().PendingProposals)
			}
			wait, ok := b.Park(now)
			if !ok {
				t.Fatalf("t=%v: Park refused right after Next found nothing", time.Duration(now))
			}
			parked = true
			if wait != NoDeadline {
				deadline = now + int64(wait)
			}
		}
		s := b.Stats()
		res.endPending = s.PendingProposals
		res.endLatencyNanos = s.CommitLatencyNanos
		results = append(results, res)
		phaseStart = phaseEnd
	}
	return results, h.Sum64()
}

func logResults(t *testing.T, results []phaseResult) {
	t.Helper()
	t.Logf("%-14s %8s %10s %10s %10s %9s %9s", "phase", "batches", "avg size", "max wait", "latency", "rejected", "max pend")
	for _, r := range results {
		t.Logf("%-14s %8d %10.1f %10v %10v %9d %9d", r.name, r.batches, r.avgBatch(),
			time.Duration(r.maxWaitNanos), time.Duration(r.endLatencyNanos), r.rejected, r.maxPending)
	}
}

// TestSimBatchSizeFollowsLatency: at a constant arrival rate, the mean
// batch size tracks rate x min(commit latency, max batch delay) as the
// cluster's latency goes up and back down, and no proposal waits longer
// than the max batch delay.
func TestSimBatchSizeFollowsLatency(t *testing.T) {
	const rate = 100_000.0 // proposals per second
	const maxDelay = 2 * time.Millisecond
	latencies := []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
		5 * time.Millisecond, 200 * time.Microsecond}
	var phases []simPhase
	for _, l := range latencies {
		phases = append(phases, simPhase{name: "lat " + l.String(), duration: 100 * time.Millisecond,
			ratePerSec: rate, commit: fixedLatency(l)})
	}
	cfg := Config{MaxBatchDelay: maxDelay}
	results, hash1 := runSim(t, 42, cfg, phases, 0.3)
	logResults(t, results)
	for i, r := range results {
		expect := rate * min(latencies[i], maxDelay).Seconds()
		if got := r.avgBatch(); got < 0.6*expect || got > 1.6*expect {
			t.Errorf("%s: mean batch %.1f, want about %.0f (rate x min(latency, max delay))", r.name, got, expect)
		}
		if r.maxWaitNanos > int64(maxDelay) {
			t.Errorf("%s: a proposal waited %v > max batch delay", r.name, time.Duration(r.maxWaitNanos))
		}
		if r.rejected != 0 {
			t.Errorf("%s: %d refusals at a sustainable load", r.name, r.rejected)
		}
	}
	for i := 1; i < 4; i++ {
		if results[i].avgBatch() <= results[i-1].avgBatch() {
			t.Errorf("batch size did not grow with latency: %s %.1f -> %s %.1f", results[i-1].name,
				results[i-1].avgBatch(), results[i].name, results[i].avgBatch())
		}
	}
	if results[4].avgBatch() >= results[3].avgBatch()/2 {
		t.Errorf("batch size did not come down with latency: %.1f -> %.1f", results[3].avgBatch(), results[4].avgBatch())
	}
	// Same seed, same run, to the batch.
	if _, hash2 := runSim(t, 42, cfg, phases, 0.3); hash2 != hash1 {
		t.Fatalf("replay of seed 42 differs: %x vs %x", hash1, hash2)
	}
}

// TestSimSerialFsyncBatchesGrowWithSyncCost: with a WAL that syncs one
// batch at a time, a dearer sync makes bigger batches (group commit), so
// throughput holds where one-entry batches would fall behind.
func TestSimSerialFsyncBatchesGrowWithSyncCost(t *testing.T) {
	const rate = 50_000.0
	phases := []simPhase{
		{name: "sync 50µs", duration: 100 * time.Millisecond, ratePerSec: rate, commit: serialFsync(50*time.Microsecond, 200*time.Nanosecond)},
		{name: "sync 1ms", duration: 100 * time.Millisecond, ratePerSec: rate, commit: serialFsync(time.Millisecond, 200*time.Nanosecond)},
		{name: "sync 50µs again", duration: 100 * time.Millisecond, ratePerSec: rate, commit: serialFsync(50*time.Microsecond, 200*time.Nanosecond)},
	}
	results, _ := runSim(t, 7, Config{}, phases, 0.3)
	logResults(t, results)
	// At 1ms per sync and 50k/s, one-entry batches would need 50 s of sync
	// per second; batching must make it sustainable (no refusals, no
	// backlog) with batches of at least rate x sync time.
	slow := results[1]
	if slow.rejected != 0 || slow.endPending > 500 {
		t.Errorf("slow sync not absorbed: %d refusals, %d pending", slow.rejected, slow.endPending)
	}
	if slow.avgBatch() < 0.8*rate*time.Millisecond.Seconds() {
		t.Errorf("slow sync: mean batch %.1f, want >= %.0f", slow.avgBatch(), 0.8*rate*time.Millisecond.Seconds())
	}
	if results[0].avgBatch() >= slow.avgBatch()/4 || results[2].avgBatch() >= slow.avgBatch()/4 {
		t.Errorf("batch size did not follow the sync cost: %.1f, %.1f, %.1f",
			results[0].avgBatch(), slow.avgBatch(), results[2].avgBatch())
	}
}

// TestSimOverloadRejectsThenRecovers: arrivals at twice what the cluster
// can commit fill the queue; refusals come at once and the queue never
// passes its bound; when the load drops the backlog drains, refusals stop
// and waits return to their unloaded level, with nothing to reset.
func TestSimOverloadRejectsThenRecovers(t *testing.T) {
	// Capacity: a batch costs 100µs + 20µs per entry, serially: under
	// 50,000 entries per second whatever the batch size.
	commit := serialFsync(100*time.Microsecond, 20*time.Microsecond)
	phases := []simPhase{
		{name: "normal", duration: 100 * time.Millisecond, ratePerSec: 10_000, commit: commit},
		{name: "overload", duration: 200 * time.Millisecond, ratePerSec: 100_000, commit: commit},
		{name: "drain", duration: 300 * time.Millisecond, ratePerSec: 10_000, commit: commit},
		{name: "recovered", duration: 100 * time.Millisecond, ratePerSec: 10_000, commit: commit},
	}
	const maxPending = 2000
	results, _ := runSim(t, 99, Config{MaxPending: maxPending}, phases, 0.2)
	logResults(t, results)
	normal, over, recovered := results[0], results[1], results[3]
	if over.rejected == 0 {
		t.Errorf("overload produced no refusals")
	}
	if over.maxPending > maxPending {
		t.Errorf("pending %d passed the bound %d", over.maxPending, maxPending)
	}
	if recovered.rejected != 0 || recovered.endPending > 100 {
		t.Errorf("did not recover: %d refusals, %d pending", recovered.rejected, recovered.endPending)
	}
	if recovered.maxWaitNanos > 2*normal.maxWaitNanos+int64(200*time.Microsecond) {
		t.Errorf("waits did not return to normal: %v after, %v before",
			time.Duration(recovered.maxWaitNanos), time.Duration(normal.maxWaitNanos))
	}
}
