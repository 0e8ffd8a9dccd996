package batch

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// submitPathFrames name the functions a client goroutine runs to hand a
// request to the proposer and get its waiter. (Waiting for the result is a
// one-to-one handoff on the waiter's own channel, not a shared lock, and
// is not listed.)
var submitPathFrames = []string{
	"edgekv/batch.(*Batcher).Submit",
	"].TryPush", // Queue and Ring
	"].Acquire", // Registry
}

// wakeFrames mark the one lock a submitter may meet: the scheduler's, when
// it readies the proposer goroutine that was asleep on an empty queue
// (runtime.ready). That happens once per idle-to-busy transition, not per
// request, and no user-level mutex is involved.
var wakeFrames = []string{"runtime.ready", "runtime.wakep"}

// TestSubmitPathHasNoContendedMutex runs many producers through Acquire,
// Submit and Wait with the mutex profiler sampling every contention event,
// then fails on any contended lock whose stack is on the submit path,
// except the scheduler wake described above.
func TestSubmitPathHasNoContendedMutex(t *testing.T) {
	prev := runtime.SetMutexProfileFraction(1)
	defer runtime.SetMutexProfileFraction(prev)

	b, err := New(Config{MaxPending: 1000})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry[uint64](2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	startTestProposer(t, b, reg, 50*time.Microsecond)
	runClosedLoop(t, b, reg, 128, 100_000, func() {})

	var buf bytes.Buffer
	if err := pprof.Lookup("mutex").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	var onPath, wakes int
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		if !containsAny(rec, submitPathFrames) {
			continue
		}
		if containsAny(rec, wakeFrames) {
			wakes++
			continue
		}
		onPath++
		t.Errorf("contended lock on the submit path:\n%s", rec)
	}
	t.Logf("submit-path contention records: %d (scheduler wake-ups of the proposer, allowed: %d)", onPath, wakes)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
