package node

import (
	"testing"
	"time"

	"github.com/edgekv/edgekv/httpapi"
)

func TestLeaseArithmetic(t *testing.T) {
	if got, want := leaseDuration(100*time.Millisecond, 10), 810*time.Millisecond; got != want {
		t.Fatalf("leaseDuration(100ms, 10) = %v, want %v: (10-1) ticks less 10%% drift", got, want)
	}
	if got := leaseDuration(100*time.Millisecond, 1); got != 0 {
		t.Fatalf("one election tick leaves no lease, got %v", got)
	}
	const lease = 810 * time.Millisecond
	sent := int64(5 * time.Second)
	for _, c := range []struct {
		now  int64
		want bool
		what string
	}{
		{sent, true, "at the send time"},
		{sent + int64(lease) - 1, true, "just before the lease ends"},
		{sent + int64(lease), false, "when it ends"},
		{sent + int64(10*time.Second), false, "after a pause longer than the election timeout"},
		{sent - 1, false, "before the round was sent (never trusted)"},
	} {
		if got := leaseHolds(sent, c.now, lease); got != c.want {
			t.Errorf("leaseHolds %s = %v, want %v", c.what, got, c.want)
		}
	}
	if leaseHolds(sent, sent, 0) {
		t.Error("a zero lease holds")
	}

	var r roundTimes
	r.note(7, 100)
	if at, ok := r.lookup(7); !ok || at != 100 {
		t.Fatalf("lookup(7) = %d, %v", at, ok)
	}
	r.note(7+leaseRoundsKept, 200) // same slot, newer round
	if _, ok := r.lookup(7); ok {
		t.Fatal("an evicted round is still found: its send time would be wrong")
	}
	if _, ok := r.lookup(0); ok {
		t.Fatal("round 0 (no round) is found")
	}
}

// A leader serves lease reads from its own state while its lease holds —
// even cut off from every follower — and never after the majority could
// have elected a new leader: once a new leader has committed a newer value,
// the old leader's lease read must not return the old one (thesis §6.4.1).
func TestLeaseReadsHoldOnlyWhileNoOtherLeaderCanExist(t *testing.T) {
	// 200 ticks of 10 ms: a 2 s election timeout and a 1.79 s lease, far
	// longer than one read takes even on a loaded machine.
	c := newClusterWith(t, 3, time.Second, 200)
	old := c.leader()
	put(t, old, "k", "v1")

	leaseGet := func(n *Node) (string, error) {
		g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Lease})
		return string(g.Value), err
	}
	waitFor(t, "a lease read served under the leader's lease", func() bool {
		before := old.leaseReadsServed.Load()
		v, err := leaseGet(old)
		return err == nil && v == "v1" && old.leaseReadsServed.Load() > before
	})
	f := c.follower()
	if v, err := leaseGet(f); err != nil || v != "v1" || f.leaseReadsServed.Load() != 0 {
		t.Fatalf("lease read on a follower = %q, %v, served under a lease %d times; want v1 through ReadIndex",
			v, err, f.leaseReadsServed.Load())
	}

	// Cut the leader off: lease reads need no round trip, so it still
	// answers them; a linearizable read cannot be answered.
	c.net.Isolate(old.ID(), true)
	before := old.leaseReadsServed.Load()
	if v, err := leaseGet(old); err != nil || v != "v1" || old.leaseReadsServed.Load() != before+1 {
		t.Fatalf("isolated leader's lease read right after the cut = %q, %v; want v1 under the lease", v, err)
	}
	if _, err := old.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Linearizable}); err == nil {
		t.Fatal("an isolated leader answered a linearizable read")
	}

	// The majority elects a new leader and commits v2.
	var others []*Node
	for id, n := range c.nodes {
		if id != old.ID() {
			others = append(others, n)
		}
	}
	waitFor(t, "v2 committed by the majority", func() bool {
		_, err := others[0].Backend().Put(ctx, httpapi.PutRequest{Key: []byte("k"), Value: []byte("v2")})
		return err == nil
	})
	if v, err := leaseGet(old); err == nil {
		t.Fatalf("the old leader served a lease read (%q) after a new leader committed v2", v)
	}
}

// A leader paused for longer than the election timeout (no ticks, no
// network: its core still believes it leads and holds a confirmed round)
// must not answer a lease read when it resumes: the lease is measured on
// the monotonic clock, which kept moving while the process stood still.
func TestPausedLeaderServesNoLeaseReadAfterResuming(t *testing.T) {
	c := newClusterWith(t, 3, time.Second, 200)
	old := c.leader()
	put(t, old, "k", "v1")
	waitFor(t, "a lease read served under the leader's lease", func() bool {
		before := old.leaseReadsServed.Load()
		_, err := old.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Lease})
		return err == nil && old.leaseReadsServed.Load() > before
	})

	c.frozen[old.ID()].Store(true) // the pause: no more ticks...
	c.net.Isolate(old.ID(), true)  // ...and nothing in or out
	var other *Node
	for id, n := range c.nodes {
		if id != old.ID() {
			other = n
		}
	}
	waitFor(t, "v2 committed by a new leader", func() bool {
		_, err := other.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("k"), Value: []byte("v2")})
		return err == nil
	})

	if !old.IsLeader() {
		t.Fatal("the paused leader stepped down: the scenario needs a core that still believes it leads")
	}
	served := old.leaseReadsServed.Load()
	g, err := old.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Lease})
	if err == nil || old.leaseReadsServed.Load() != served {
		t.Fatalf("the resumed old leader answered a lease read with %q (err %v) after a new leader committed v2", g.Value, err)
	}
}
