package nemesis

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestScenariosAreNamedAndNonEmpty(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Scenarios {
		if s.Name == "" || seen[s.Name] || len(s.Faults) == 0 || s.Nodes < 3 {
			t.Errorf("scenario %+v", s.Name)
		}
		seen[s.Name] = true
		got, ok := Lookup(s.Name)
		if !ok || got.Name != s.Name {
			t.Errorf("Lookup(%q)", s.Name)
		}
		for _, f := range s.Faults {
			if f.Name == "" || f.Start == nil {
				t.Errorf("%s: fault without name or Start", s.Name)
			}
			if f.Hold[1] < f.Hold[0] {
				t.Errorf("%s: %s hold %v", s.Name, f.Name, f.Hold)
			}
		}
	}
	if _, ok := Lookup("no-such"); ok {
		t.Error("Lookup of an unknown name")
	}
}

// Pauses must outlast the randomized election timeout (at most twice the
// cluster default), or they test nothing.
func TestPausesOutlastElections(t *testing.T) {
	for _, f := range []Fault{PauseLeader, PauseRandom} {
		if f.Hold[0] < 3*500*time.Millisecond {
			t.Errorf("%s holds from %v", f.Name, f.Hold[0])
		}
	}
}

func TestAcksFireOnceWhenArmed(t *testing.T) {
	var a Acks
	a.Acked() // not armed: nothing
	var mu sync.Mutex
	fired := 0
	a.arm(func() { mu.Lock(); fired++; mu.Unlock() })
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); a.Acked() }()
	}
	wg.Wait()
	if fired != 1 {
		t.Fatalf("fired %d times", fired)
	}
	a.arm(func() { fired++ })
	a.disarm()
	a.Acked()
	if fired != 1 {
		t.Fatal("fired after disarm")
	}
}

func TestDrawStaysInRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := [2]time.Duration{time.Second, 3 * time.Second}
	for range 1000 {
		if d := draw(rng, r); d < r[0] || d >= r[1] {
			t.Fatalf("draw %v outside %v", d, r)
		}
	}
	if d := draw(rng, [2]time.Duration{time.Second, 0}); d != time.Second {
		t.Fatalf("degenerate range: %v", d)
	}
}
