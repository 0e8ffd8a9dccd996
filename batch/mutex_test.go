package batch

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"strconv"
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
	"]).TryPush", // Queue and Ring: (*Queue[...]).TryPush
	"]).Acquire", // Registry
}

// Two locks a submitter may meet, both once per sleep of the proposer
// (an idle-to-busy transition), never per request, and neither a
// user-level mutex:
//   - the scheduler's, when it readies the proposer goroutine that was
//     asleep on an empty queue (runtime.ready, runtime.wakep);
//   - the wake channel's own runtime lock, when the one producer that won
//     the wake (Queue.maybeWake's compare-and-swap) sends the token while
//     the proposer is still entering its select on that channel.
var (
	schedulerWakeFrames = []string{"runtime.ready", "runtime.wakep"}
	wakeTokenFrames     = []string{"]).maybeWake"}
)

// TestSubmitPathHasNoContendedMutex runs many producers through Acquire,
// Submit and Wait with the mutex profiler sampling every contention event,
// then fails on any contended lock whose stack is on the submit path,
// except the wake-ups described above, which must number no more than the
// proposer's sleeps.
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
	p := startTestProposer(t, b, reg, 50*time.Microsecond)
	runClosedLoop(t, b, reg, 128, 100_000, func() {})

	var buf bytes.Buffer
	if err := pprof.Lookup("mutex").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	var onPath int
	var wakeEvents uint64
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		if !containsAny(rec, submitPathFrames) {
			continue
		}
		if containsAny(rec, schedulerWakeFrames) || containsAny(rec, wakeTokenFrames) {
			wakeEvents += contentionCount(t, rec)
			continue
		}
		onPath++
		t.Errorf("contended lock on the submit path:\n%s", rec)
	}
	parks := p.parks.Load()
	if wakeEvents > parks {
		t.Errorf("%d contended wake-ups for %d sleeps of the proposer: a wake lock is taken per request", wakeEvents, parks)
	}
	t.Logf("submit-path contention records: %d; wake-up contention events: %d for %d proposer sleeps", onPath, wakeEvents, parks)
}

// contentionCount is the event count of one mutex-profile record, whose
// stack header line reads "<cycles> <count> @ <pcs>" (the profile's own
// header lines may precede the first record).
func contentionCount(t *testing.T, rec string) uint64 {
	t.Helper()
	for _, line := range strings.Split(rec, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[2] != "@" {
			continue
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			t.Fatalf("mutex profile record count %q: %v", fields[1], err)
		}
		return n
	}
	t.Fatalf("mutex profile record without a stack header:\n%s", rec)
	return 0
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestMutexRecordFrames: the frame patterns match the profile's own
// spelling of generic methods, "(*Queue[...]).maybeWake" (a record taken
// from a CI run), so the test above classifies what it claims to.
func TestMutexRecordFrames(t *testing.T) {
	rec := `--- mutex:
cycles/second=2096022018
sampling period=1
25137 1 @ 0x44f233 0x44f232 0x45081a 0x6bc58f 0x6bc9a8 0x6ae3c6 0x6ae323 0x4c8e41
#	0x44f232	runtime.unlock+0x532						/usr/local/go/src/runtime/lock_spinbit.go:261
#	0x44f231	runtime.chansend+0x531						/usr/local/go/src/runtime/chan.go:248
#	0x450819	runtime.selectnbsend+0x19					/usr/local/go/src/runtime/chan.go:785
#	0x6bc58e	github.com/edgekv/edgekv/batch.(*Queue[...]).maybeWake+0xce	batch/queue.go:216
#	0x6bc9a7	github.com/edgekv/edgekv/batch.(*Queue[...]).TryPush+0x2c7	batch/queue.go:157`
	if !containsAny(rec, wakeTokenFrames) {
		t.Error("the wake-token pattern misses (*Queue[...]).maybeWake")
	}
	if !containsAny(rec, submitPathFrames[1:2]) {
		t.Error("the submit-path pattern misses (*Queue[...]).TryPush")
	}
	if containsAny(rec, schedulerWakeFrames) {
		t.Error("a channel lock taken for a scheduler wake-up")
	}
	if got := contentionCount(t, rec); got != 1 {
		t.Errorf("contention count %d, want 1", got)
	}
}
