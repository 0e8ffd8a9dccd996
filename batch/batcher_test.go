package batch

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

const us = int64(time.Microsecond)

func newTestBatcher(t *testing.T, cfg Config) (*Batcher, *FakeClock) {
	t.Helper()
	clk := &FakeClock{}
	cfg.Clock = clk
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, clk
}

// prop returns a proposal whose SizeBytes is exactly sizeBytes.
func prop(id uint64, sizeBytes int) Proposal {
	return Proposal{RequestID: id, Data: make([]byte, sizeBytes-raftmsg.EntryOverheadBytes)}
}

func mustSubmit(t *testing.T, b *Batcher, p Proposal) {
	t.Helper()
	if r := b.Submit(p); r != ReasonNone {
		t.Fatalf("submit %d: %v", p.RequestID, r)
	}
}

func mustNext(t *testing.T, b *Batcher, now int64) Batch {
	t.Helper()
	bt, ok := b.Next(now)
	if !ok {
		t.Fatalf("Next(%d): no batch", now)
	}
	return bt
}

func ids(bt Batch) []uint64 {
	out := make([]uint64, len(bt.Proposals))
	for i, p := range bt.Proposals {
		out[i] = p.RequestID
	}
	return out
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	b, _ := newTestBatcher(t, Config{})
	c := b.Config()
	if c.MaxBatchBytes != 1<<20 || c.MaxBatchDelay != 2*time.Millisecond || c.MaxPending != 10000 ||
		c.MaxPendingBytes != 64<<20 || c.MaxInflightBatches != DefaultMaxInflightBatches ||
		c.InflightTimeout != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []Config{
		{MaxBatchBytes: -1}, {MaxBatchDelay: -1}, {MaxPending: -1}, {MaxPendingBytes: -1},
		{MaxInflightBatches: -1}, {MaxInflightBatches: 1<<16 + 1}, {InflightTimeout: -1},
		{MaxPending: maxRingCapacity + 1}, {MaxPendingBytes: maxQueueBytes + 1},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v): want error", bad)
		}
	}
}

// An idle batcher hands out a lone proposal at once: no timer, no delay.
func TestIdleProposalLeavesAtOnce(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	// Even with a large measured latency (which would set a long hold).
	mustSubmit(t, b, prop(1, 100))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Millisecond), true)
	if b.CommitLatency() != time.Millisecond {
		t.Fatalf("latency = %v", b.CommitLatency())
	}
	mustSubmit(t, b, prop(2, 100))
	bt = mustNext(t, b, clk.Now())
	if bt.Trigger != TriggerIdle || len(bt.Proposals) != 1 || bt.Proposals[0].RequestID != 2 {
		t.Fatalf("idle proposal: %+v", bt)
	}
	if bt.EmittedAtNanos != clk.Now() {
		t.Fatal("idle proposal was delayed")
	}
	if s := b.Stats(); s.WaitNanos != 0 {
		t.Fatalf("idle proposals waited %d ns", s.WaitNanos)
	}
}

func TestEmptyQueueParksWithoutTimer(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	if _, ok := b.Next(clk.Now()); ok {
		t.Fatal("batch from an empty queue")
	}
	wait, ok := b.Park(clk.Now())
	if !ok || wait != NoDeadline {
		t.Fatalf("Park on empty = %v,%v; want NoDeadline,true", wait, ok)
	}
	mustSubmit(t, b, prop(1, 64))
	select {
	case <-b.Wakeup():
	default:
		t.Fatal("submit did not wake the parked proposer")
	}
	b.Unpark()
	if bt := mustNext(t, b, clk.Now()); bt.Trigger != TriggerIdle {
		t.Fatalf("trigger %v", bt.Trigger)
	}
}

// While a batch is in flight, new proposals are held for the smoothed
// commit latency, then leave together.
func TestHoldWhileInflightThenDelayTrigger(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	// Teach it a 500µs latency.
	mustSubmit(t, b, prop(1, 64))
	first := mustNext(t, b, clk.Now())
	b.Finish(first.ID, clk.Advance(500*time.Microsecond), true)

	mustSubmit(t, b, prop(2, 64))
	inflight := mustNext(t, b, clk.Now()) // idle again: leaves at once
	for id := uint64(3); id <= 5; id++ {
		mustSubmit(t, b, prop(id, 64))
		clk.Advance(100 * time.Microsecond)
		if _, ok := b.Next(clk.Now()); ok {
			t.Fatalf("proposal %d left while a batch was in flight and the hold was not over", id)
		}
	}
	// Proposal 3 arrived 300µs ago; the hold (500µs) ends in 200µs.
	wait, ok := b.Park(clk.Now())
	if !ok || wait != 200*time.Microsecond {
		t.Fatalf("Park = %v,%v; want 200µs,true", wait, ok)
	}
	b.Unpark()
	clk.Advance(wait - 1)
	if _, ok := b.Next(clk.Now()); ok {
		t.Fatal("left before the hold ended")
	}
	clk.Advance(1)
	bt := mustNext(t, b, clk.Now())
	if bt.Trigger != TriggerDelay || len(bt.Proposals) != 3 || bt.Proposals[0].RequestID != 3 {
		t.Fatalf("held batch: trigger %v ids %v", bt.Trigger, ids(bt))
	}
	b.Finish(inflight.ID, clk.Now(), true)
	b.Finish(bt.ID, clk.Now(), true)
}

// When the in-flight batch commits before the hold ends, the queued ones
// leave at once: the pipeline is idle, waiting longer gains nothing.
func TestCompletionReleasesHeldProposals(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Millisecond), true)
	mustSubmit(t, b, prop(2, 64))
	bt = mustNext(t, b, clk.Now())
	mustSubmit(t, b, prop(3, 64))
	mustSubmit(t, b, prop(4, 64))
	if _, ok := b.Next(clk.Advance(100 * time.Microsecond)); ok {
		t.Fatal("held proposals left early")
	}
	b.Finish(bt.ID, clk.Now(), true)
	got := mustNext(t, b, clk.Now())
	if got.Trigger != TriggerIdle || len(got.Proposals) != 2 {
		t.Fatalf("after completion: trigger %v ids %v", got.Trigger, ids(got))
	}
}

// Before any latency sample the hold is zero: nothing is held on a guess.
func TestNoHoldBeforeFirstSample(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	mustSubmit(t, b, prop(1, 64))
	mustNext(t, b, clk.Now())
	mustSubmit(t, b, prop(2, 64))
	if bt := mustNext(t, b, clk.Now()); bt.Trigger != TriggerDelay {
		t.Fatalf("trigger %v", bt.Trigger)
	}
}

// The hold follows the measured latency up and down and never exceeds
// MaxBatchDelay.
func TestHoldFollowsLatencyUpAndDownCapped(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxBatchDelay: 2 * time.Millisecond})
	commitWith := func(latency time.Duration, n int) {
		for i := 0; i < n; i++ {
			mustSubmit(t, b, prop(uint64(i+1), 64))
			bt := mustNext(t, b, clk.Now())
			b.Finish(bt.ID, clk.Advance(latency), true)
		}
	}
	near := func(got, want time.Duration) bool {
		d := got - want
		return d >= -want/20 && d <= want/20
	}
	commitWith(200*time.Microsecond, 40)
	if !near(b.CommitLatency(), 200*time.Microsecond) || !near(time.Duration(b.holdNanos()), 200*time.Microsecond) {
		t.Fatalf("after 200µs commits: latency %v hold %v", b.CommitLatency(), time.Duration(b.holdNanos()))
	}
	commitWith(1500*time.Microsecond, 40)
	if !near(time.Duration(b.holdNanos()), 1500*time.Microsecond) {
		t.Fatalf("after 1.5ms commits: hold %v", time.Duration(b.holdNanos()))
	}
	commitWith(20*time.Millisecond, 40)
	if !near(b.CommitLatency(), 20*time.Millisecond) || b.holdNanos() != int64(2*time.Millisecond) {
		t.Fatalf("after 20ms commits: latency %v hold %v (cap 2ms)", b.CommitLatency(), time.Duration(b.holdNanos()))
	}
	commitWith(300*time.Microsecond, 60)
	if !near(time.Duration(b.holdNanos()), 300*time.Microsecond) {
		t.Fatalf("back to 300µs commits: hold %v", time.Duration(b.holdNanos()))
	}
	// Failed batches are not latency samples.
	before := b.CommitLatency()
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Second), false)
	if b.CommitLatency() != before {
		t.Fatal("a failed batch moved the latency estimate")
	}
}

// A forwarded batch frees its place in the window at once, is counted as
// forwarded (not failed, not committed) and is no latency sample: its
// commit happens on the leader.
func TestForwardedBatchIsNeitherCommittedNorFailed(t *testing.T) {
	set := metrics.NewSet()
	b, clk := newTestBatcher(t, Config{MaxInflightBatches: 1, Metrics: set})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	mustSubmit(t, b, prop(2, 64))
	if _, ok := b.Next(clk.Now()); ok {
		t.Fatal("a second batch left with the window of one full")
	}
	b.Forwarded(bt.ID, clk.Advance(time.Second))
	st := b.Stats()
	if st.Forwarded != 1 || st.Failed != 0 || st.Committed != 0 || b.CommitLatency() != 0 {
		t.Fatalf("after Forwarded: %+v, latency %v", st, b.CommitLatency())
	}
	if _, ok := b.Next(clk.Now()); !ok {
		t.Fatal("the window stayed full after Forwarded")
	}
	var out bytes.Buffer
	set.WritePrometheus(&out)
	if !strings.Contains(out.String(), `edgekv_batch_finished_total{outcome="forwarded"} 1`) ||
		!strings.Contains(out.String(), `edgekv_batch_finished_total{outcome="failed"} 0`) {
		t.Fatalf("metrics:\n%s", out.String())
	}
}

// No batch passes MaxBatchBytes, except a lone oversized proposal, and a
// full batch leaves without waiting for the hold.
func TestByteBoundAndFullTrigger(t *testing.T) {
	// A deep window: this test finishes batches out of order, and a
	// finished batch behind an unfinished one still occupies the window.
	b, clk := newTestBatcher(t, Config{MaxBatchBytes: 1000, MaxInflightBatches: 64})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Millisecond), true)
	mustSubmit(t, b, prop(2, 64))
	inflight := mustNext(t, b, clk.Now())

	for id := uint64(10); id < 20; id++ {
		mustSubmit(t, b, prop(id, 300)) // 3 fit in 1000 bytes
	}
	mustSubmit(t, b, prop(20, 5000)) // oversized: goes alone
	mustSubmit(t, b, prop(21, 64))
	var got []uint64
	for b.Stats().PendingProposals > 0 {
		bt, ok := b.Next(clk.Now())
		if !ok {
			t.Fatalf("stuck with %d bytes queued (>= max batch bytes: must leave at once)", b.Stats().PendingBytes)
		}
		if bt.Bytes > 1000 && len(bt.Proposals) != 1 {
			t.Fatalf("batch of %d bytes with %d proposals passes the bound", bt.Bytes, len(bt.Proposals))
		}
		var sum int64
		for i := range bt.Proposals {
			sum += bt.Proposals[i].SizeBytes()
		}
		if sum != bt.Bytes {
			t.Fatalf("Bytes %d, proposals sum to %d", bt.Bytes, sum)
		}
		got = append(got, ids(bt)...)
		b.Finish(bt.ID, clk.Now(), true)
		if b.Stats().PendingBytes < 1000 {
			break
		}
	}
	if s := b.Stats(); s.Batches[TriggerFull] == 0 {
		t.Fatalf("no full-triggered batch: %+v", s.Batches)
	}
	if len(got) == 0 || got[0] != 10 {
		t.Fatalf("order: %v", got)
	}
	b.Finish(inflight.ID, clk.Now(), true)
}

func TestOversizedProposalAloneWhenIdle(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxBatchBytes: 1000})
	mustSubmit(t, b, prop(1, 4000))
	mustSubmit(t, b, prop(2, 100))
	bt := mustNext(t, b, clk.Now())
	if len(bt.Proposals) != 1 || bt.Bytes != 4000 {
		t.Fatalf("oversized: %v bytes %d", ids(bt), bt.Bytes)
	}
}

// Under load with a slow cluster, no proposal waits longer than
// MaxBatchDelay while the pipeline has room.
func TestDelayBoundHoldsUnderSlowCommits(t *testing.T) {
	const maxDelay = 2 * time.Millisecond
	b, clk := newTestBatcher(t, Config{MaxBatchDelay: maxDelay, MaxBatchBytes: 1 << 30, MaxPendingBytes: 1 << 30, MaxInflightBatches: 64})
	// Teach it a 50ms latency.
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(50*time.Millisecond), true)

	type flight struct {
		id   uint64
		done int64
	}
	var inflight []flight
	var maxWait int64
	for step := 0; step < 5000; step++ { // 10µs steps: 50ms of arrivals
		now := clk.Now()
		mustSubmit(t, b, prop(uint64(step+2), 64))
		for len(inflight) > 0 && inflight[0].done <= now {
			b.Finish(inflight[0].id, now, true)
			inflight = inflight[1:]
		}
		for {
			_, oldest, ready := b.queue.Peek()
			bt, ok := b.Next(now)
			if !ok {
				break
			}
			if !ready {
				t.Fatal("batch from an empty queue")
			}
			maxWait = max(maxWait, now-oldest)
			inflight = append(inflight, flight{bt.ID, now + int64(50*time.Millisecond)})
		}
		clk.Advance(10 * time.Microsecond)
	}
	if maxWait > int64(maxDelay) {
		t.Fatalf("a proposal waited %v > max batch delay %v", time.Duration(maxWait), maxDelay)
	}
	if maxWait < int64(maxDelay)/2 {
		t.Fatalf("max wait %v: the hold did not grow toward the cap", time.Duration(maxWait))
	}
}

func TestInflightBoundAndExpiry(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxInflightBatches: 2, InflightTimeout: time.Second})
	var out []Batch
	for id := uint64(1); id <= 3; id++ {
		mustSubmit(t, b, prop(id, 64))
		if bt, ok := b.Next(clk.Now()); ok {
			out = append(out, bt)
		}
	}
	if len(out) != 2 || b.Stats().InflightBatches != 2 {
		t.Fatalf("%d batches out, %d in flight; want 2,2", len(out), b.Stats().InflightBatches)
	}
	// At the bound: no batch, and the proposer sleeps until the oldest
	// batch would expire (or the runtime reports a Finish).
	wait, ok := b.Park(clk.Now())
	if !ok || wait != time.Second {
		t.Fatalf("Park at the in-flight bound = %v,%v; want 1s,true", wait, ok)
	}
	b.Unpark()
	// A Finish makes room.
	b.Finish(out[0].ID, clk.Advance(time.Millisecond), true)
	bt := mustNext(t, b, clk.Now())
	if bt.Proposals[0].RequestID != 3 {
		t.Fatalf("ids %v", ids(bt))
	}
	// Lose every Finish: the window clears by itself after the timeout.
	mustSubmit(t, b, prop(4, 64))
	if _, ok := b.Next(clk.Now()); ok {
		t.Fatal("batch past the in-flight bound")
	}
	clk.Advance(time.Second)
	bt = mustNext(t, b, clk.Now())
	if bt.Trigger != TriggerIdle || bt.Proposals[0].RequestID != 4 {
		t.Fatalf("after expiry: trigger %v ids %v", bt.Trigger, ids(bt))
	}
	s := b.Stats()
	if s.Expired != 2 || s.InflightBatches != 1 {
		t.Fatalf("expired %d in flight %d; want 2,1", s.Expired, s.InflightBatches)
	}
	// A late Finish of an expired batch is counted and ignored.
	b.Finish(out[1].ID, clk.Now(), true)
	if s := b.Stats(); s.LateFinishes != 1 || s.InflightBatches != 1 {
		t.Fatalf("late finish: %+v", s)
	}
}

func TestOutOfOrderFinish(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxInflightBatches: 3})
	var out []Batch
	for id := uint64(1); id <= 3; id++ {
		mustSubmit(t, b, prop(id, 64))
		out = append(out, mustNext(t, b, clk.Now()))
	}
	b.Finish(out[1].ID, clk.Now(), false) // middle one fails first
	if b.Stats().InflightBatches != 3 {
		t.Fatal("window moved past an unfinished batch")
	}
	mustSubmit(t, b, prop(4, 64))
	if _, ok := b.Next(clk.Now()); ok {
		t.Fatal("a batch would overwrite an unfinished record")
	}
	b.Finish(out[0].ID, clk.Now(), true)
	if b.Stats().InflightBatches != 1 {
		t.Fatalf("in flight %d, want 1", b.Stats().InflightBatches)
	}
	b.Finish(out[2].ID, clk.Now(), true)
	if b.Stats().InflightBatches != 0 {
		t.Fatal("window not empty")
	}
}

func TestFinishMisusePanics(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	mustPanic(t, "unknown id", func() { b.Finish(bt.ID+1, 0, true) })
	mustPanic(t, "id zero", func() { b.Finish(0, 0, true) })
	mustSubmit(t, b, prop(2, 64))
	bt2 := mustNext(t, b, clk.Now())
	b.Finish(bt2.ID, 0, true)
	mustPanic(t, "double finish", func() { b.Finish(bt2.ID, 0, true) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// Backpressure: past the bounds Submit refuses at once, the refusal is
// counted by reason, and the state clears as soon as the proposer drains,
// with no reset and no timer.
func TestBackpressureRejectsFastAndClears(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxPending: 100, MaxPendingBytes: 64 * 1000, MaxBatchBytes: 64 * 10})
	for i := 0; i < 100; i++ {
		mustSubmit(t, b, prop(uint64(i+1), 64))
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		if r := b.Submit(prop(999, 64)); r != ReasonFullCount {
			t.Fatalf("submit past max pending: %v", r)
		}
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Fatalf("1000 refusals took %v: not fast", el)
	}
	s := b.Stats()
	if s.Rejected[ReasonFullCount] != 1000 || s.PendingProposals != 100 {
		t.Fatalf("stats %+v", s)
	}
	// The cluster works through the backlog: 10 batches of 10.
	for s := b.Stats(); s.PendingProposals > 0; s = b.Stats() {
		bt, ok := b.Next(clk.Now())
		if !ok {
			t.Fatal("stuck with proposals queued")
		}
		b.Finish(bt.ID, clk.Advance(100*time.Microsecond), true)
	}
	if r := b.Submit(prop(1000, 64)); r != ReasonNone {
		t.Fatalf("after the backlog drained: %v (busy state did not clear)", r)
	}
	// The byte bound, and its clearing.
	b2, clk2 := newTestBatcher(t, Config{MaxPending: 100, MaxPendingBytes: 1000})
	for i := 0; i < 3; i++ {
		mustSubmit(t, b2, prop(uint64(i+1), 300))
	}
	if r := b2.Submit(prop(4, 300)); r != ReasonFullBytes {
		t.Fatalf("past the byte bound: %v", r)
	}
	if r := b2.Submit(prop(5, 2000)); r != ReasonTooLarge {
		t.Fatalf("larger than the byte bound: %v", r)
	}
	bt := mustNext(t, b2, clk2.Now())
	b2.Finish(bt.ID, clk2.Now(), true)
	if r := b2.Submit(prop(6, 300)); r != ReasonNone {
		t.Fatalf("after drain: %v", r)
	}
}

// A wedged pipeline (every Finish lost) still clears by itself.
func TestBackpressureClearsWhenFinishesAreLost(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxPending: 10, MaxInflightBatches: 1, InflightTimeout: 5 * time.Second})
	mustSubmit(t, b, prop(1, 64))
	mustNext(t, b, clk.Now()) // never finished
	for i := 0; i < 10; i++ {
		mustSubmit(t, b, prop(uint64(i+2), 64))
	}
	if r := b.Submit(prop(99, 64)); r != ReasonFullCount {
		t.Fatalf("want full_count, got %v", r)
	}
	wait, ok := b.Park(clk.Now())
	if !ok || wait != 5*time.Second {
		t.Fatalf("Park = %v,%v", wait, ok)
	}
	b.Unpark()
	clk.Advance(wait)
	bt := mustNext(t, b, clk.Now())
	if len(bt.Proposals) != 10 {
		t.Fatalf("after expiry %d proposals left, want 10", len(bt.Proposals))
	}
	if r := b.Submit(prop(100, 64)); r != ReasonNone {
		t.Fatalf("after expiry: %v", r)
	}
}

func TestCloseRefusesAndDrains(t *testing.T) {
	b, clk := newTestBatcher(t, Config{})
	mustSubmit(t, b, prop(1, 64))
	mustSubmit(t, b, prop(2, 64))
	b.Close()
	if r := b.Submit(prop(3, 64)); r != ReasonClosed {
		t.Fatalf("after close: %v", r)
	}
	if _, ok := b.Park(clk.Now()); ok {
		t.Fatal("Park after Close with work queued")
	}
	var got []uint64
	for {
		p, ok := b.PopPending()
		if !ok {
			break
		}
		got = append(got, p.RequestID)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("drained %v", got)
	}
}

func TestMetricsExposition(t *testing.T) {
	set := metrics.NewSet()
	b, clk := newTestBatcher(t, Config{MaxPending: 2, Metrics: set})
	mustSubmit(t, b, prop(1, 100))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(3*time.Millisecond), true)
	mustSubmit(t, b, prop(2, 100))
	mustSubmit(t, b, prop(3, 100))
	b.Submit(prop(4, 100))
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	out := buf.String()
	for _, want := range []string{
		"edgekv_batch_accepted_total 3\n",
		`edgekv_batch_rejected_total{reason="full_count"} 1` + "\n",
		`edgekv_batch_rejected_total{reason="full_bytes"} 0` + "\n",
		"edgekv_batch_pending_proposals 2\n",
		"edgekv_batch_pending_bytes 200\n",
		"edgekv_batch_inflight_batches 0\n",
		`edgekv_batch_batches_total{trigger="idle"} 1` + "\n",
		"edgekv_batch_entries_total 1\n",
		"edgekv_batch_bytes_total 100\n",
		`edgekv_batch_finished_total{outcome="committed"} 1` + "\n",
		"edgekv_batch_commit_latency_seconds 0.003\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// recordingObserver keeps every sample the batcher reports.
type recordingObserver struct {
	batches [][3]int64 // entries, bytes, oldest wait
	commits []int64
}

func (o *recordingObserver) ObserveBatch(entries int, sizeBytes, oldestWaitNanos int64) {
	o.batches = append(o.batches, [3]int64{int64(entries), sizeBytes, oldestWaitNanos})
}

func (o *recordingObserver) ObserveBatchCommit(commitNanos int64) {
	o.commits = append(o.commits, commitNanos)
}

// The Observer gets one sample per batch (size, bytes, oldest wait) and
// one per committed batch (latency from Next to Finish), none for a
// failed batch.
func TestObserverSamples(t *testing.T) {
	obs := &recordingObserver{}
	b, clk := newTestBatcher(t, Config{Observer: obs, MaxBatchDelay: 10 * time.Millisecond})
	mustSubmit(t, b, prop(1, 100))
	first := mustNext(t, b, clk.Now()) // idle: no wait
	clk.Advance(time.Millisecond)
	mustSubmit(t, b, prop(2, 100))
	clk.Advance(time.Millisecond)
	mustSubmit(t, b, prop(3, 150))
	b.Finish(first.ID, clk.Advance(2*time.Millisecond), true) // committed 4ms after it left
	second := mustNext(t, b, clk.Now())                       // idle again: both queued proposals
	b.Finish(second.ID, clk.Advance(time.Millisecond), false) // failed: no latency sample
	want := [][3]int64{{1, 100, 0}, {2, 250, int64(3 * time.Millisecond)}}
	if len(obs.batches) != len(want) || obs.batches[0] != want[0] || obs.batches[1] != want[1] {
		t.Fatalf("batch samples %v, want %v", obs.batches, want)
	}
	if len(obs.commits) != 1 || obs.commits[0] != int64(4*time.Millisecond) {
		t.Fatalf("commit samples %v, want [4ms]", obs.commits)
	}
}

// The full trigger fires exactly when the queued bytes reach the bound,
// not before, even though the hold has not ended.
func TestFullTriggerAtExactlyMaxBatchBytes(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxBatchBytes: 1000})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Millisecond), true)
	mustSubmit(t, b, prop(2, 64))
	mustNext(t, b, clk.Now()) // in flight from now on

	mustSubmit(t, b, prop(3, 250))
	mustSubmit(t, b, prop(4, 250))
	mustSubmit(t, b, prop(5, 250))
	mustSubmit(t, b, prop(6, 249)) // 999 bytes
	if got, ok := b.Next(clk.Now()); ok {
		t.Fatalf("999 of 1000 bytes left early: trigger %v", got.Trigger)
	}
	// A parked proposer is woken by the producer that completes the batch.
	if _, ok := b.Park(clk.Now()); !ok {
		t.Fatal("Park refused below the byte threshold")
	}
	mustSubmit(t, b, prop(7, 33)) // 1032 bytes queued
	select {
	case <-b.Wakeup():
	default:
		t.Fatal("a full batch did not wake the holding proposer")
	}
	b.Unpark()
	got := mustNext(t, b, clk.Now())
	if got.Trigger != TriggerFull || got.Bytes != 999 || len(got.Proposals) != 4 {
		t.Fatalf("full batch: trigger %v bytes %d ids %v", got.Trigger, got.Bytes, ids(got))
	}
}

// MaxBatchBytes = 1 is "batching off": one proposal per batch, none held.
func TestBatchingOff(t *testing.T) {
	b, clk := newTestBatcher(t, Config{MaxBatchBytes: 1, MaxInflightBatches: 64})
	mustSubmit(t, b, prop(1, 64))
	bt := mustNext(t, b, clk.Now())
	b.Finish(bt.ID, clk.Advance(time.Millisecond), true) // a 1ms hold if batching were on
	for id := uint64(2); id <= 6; id++ {
		mustSubmit(t, b, prop(id, 64))
	}
	for id := uint64(2); id <= 6; id++ {
		bt := mustNext(t, b, clk.Now())
		if len(bt.Proposals) != 1 || bt.Proposals[0].RequestID != id {
			t.Fatalf("batching off: ids %v, want [%d]", ids(bt), id)
		}
	}
}
