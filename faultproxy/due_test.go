package faultproxy

import (
	"testing"
	"time"
)

// TestDueTimerNeverEndsEarly: the precise wait may be late on a loaded
// machine, never early, and a wait of zero or less returns at once (a
// zero timerfd value would disarm it and block the read forever).
func TestDueTimerNeverEndsEarly(t *testing.T) {
	due, err := newDueTimer()
	if err != nil {
		t.Fatal(err)
	}
	defer due.close()
	for _, d := range []time.Duration{-time.Millisecond, 0, time.Nanosecond, 300 * time.Microsecond, 1500 * time.Microsecond} {
		start := time.Now()
		if err := due.sleep(d); err != nil {
			t.Fatalf("sleep(%v): %v", d, err)
		}
		if got := time.Since(start); got < d {
			t.Fatalf("sleep(%v) returned after %v", d, got)
		}
	}
}

// TestLatenessIsCounted: every chunk delivered under a latency is counted
// with how late it was, and none under no latency.
func TestLatenessIsCounted(t *testing.T) {
	p := startProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, []byte("plain"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.DelayedChunks != [2]int64{} || st.Lateness != [2]time.Duration{} {
		t.Fatalf("no latency set, stats %+v", st)
	}
	p.SetFaults(Faults{Latency: 5 * time.Millisecond})
	const trips = 5
	for range trips {
		if _, err := roundTrip(c, []byte("ping"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats()
	for _, dir := range []Direction{Forward, Backward} {
		if st.DelayedChunks[dir] != trips || st.Lateness[dir] < 0 {
			t.Fatalf("%v: %d delayed chunks late by %v in all, want %d and not negative", dir, st.DelayedChunks[dir], st.Lateness[dir], trips)
		}
	}
}

// BenchmarkDelayedRoundTrip reports how late the proxy delivers delayed
// chunks (late-µs/chunk), the error it adds to every emulated round trip.
func BenchmarkDelayedRoundTrip(b *testing.B) {
	p := startProxy(b, echoServer(b))
	p.SetFaults(Faults{Latency: 3 * time.Millisecond})
	c := dial(b, p.Addr())
	msg := []byte("ping")
	for b.Loop() {
		if _, err := roundTrip(c, msg, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	st := p.Stats()
	if n := st.DelayedChunks[Forward] + st.DelayedChunks[Backward]; n > 0 {
		b.ReportMetric(float64((st.Lateness[Forward]+st.Lateness[Backward]).Microseconds())/float64(n), "late-µs/chunk")
	}
}
