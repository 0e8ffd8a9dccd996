package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// realCluster is a cluster of real processes on loopback.
type realCluster struct {
	t     *testing.T
	bin   string
	names []string
	flags map[string][]string
	procs map[string]*proc
}

func startCluster(t *testing.T, size int) *realCluster {
	return startClusterWith(t, binary(t), size)
}

// startClusterWith starts size members of the binary at bin.
func startClusterWith(t *testing.T, bin string, size int) *realCluster {
	t.Helper()
	return startClusterFlags(t, bin, size)
}

// leader returns the name of the member every running member names as
// leader (a follower's KV answers carry X-Edgekv-Leader; the leader's do
// not).
func (c *realCluster) leader() string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		lead, agreed := "", true
		for name, p := range c.procs {
			r := p.do("GET", "/v1/kv/leader-probe?consistency=stale", "")
			l := r.header.Get("X-Edgekv-Leader")
			if l == "" {
				l = name // no header: it says it leads (or knows no leader; checked below)
			}
			if lead != "" && l != lead {
				agreed = false
			}
			lead = l
		}
		if agreed && lead != "" {
			if _, ok := c.procs[lead]; ok {
				return lead
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatal("members do not agree on a running leader")
		}
		<-tick.C
	}
}

func (c *realCluster) follower() string {
	lead := c.leader()
	for _, name := range c.names {
		if _, ok := c.procs[name]; ok && name != lead {
			return name
		}
	}
	c.t.Fatal("no follower")
	return ""
}

// readEverywhere checks key on every running member (linearizable reads).
func (c *realCluster) readEverywhere(key, value string, rev uint64) {
	c.t.Helper()
	for name, p := range c.procs {
		g := p.must(200, "GET", "/v1/kv/"+key, "")
		if g.body != value || g.header.Get("ETag") != fmt.Sprintf("%q", fmt.Sprint(rev)) {
			c.t.Fatalf("%s: %s = %q ETag %s, want %q rev %d", name, key, g.body, g.header.Get("ETag"), value, rev)
		}
	}
}

func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	c := startCluster(t, 3)
	f := c.follower()
	rev := revisionOf(t, c.procs[f].must(200, "PUT", "/v1/kv/from-follower", "hello").body)
	c.readEverywhere("from-follower", "hello", rev)

	// /v1/cluster on the leader: three voters, all reachable, no lag left
	// once the write is everywhere.
	lead0 := c.leader()
	var cs struct {
		Name, Leader string
		Members      []struct {
			Name      string
			Voter     bool
			Reachable bool
		}
	}
	body := c.procs[lead0].must(200, "GET", "/v1/cluster", "").body
	if err := json.Unmarshal([]byte(body), &cs); err != nil || cs.Name != lead0 || cs.Leader != lead0 || len(cs.Members) != 3 {
		t.Fatalf("/v1/cluster on the leader: %s (%v)", body, err)
	}
	for _, m := range cs.Members {
		if !m.Voter || !m.Reachable {
			t.Fatalf("/v1/cluster member %+v", m)
		}
	}
	if m := c.procs[f].must(200, "GET", "/metrics", "").body; !strings.Contains(m, "edgekv_raft_proposals_total 1") {
		t.Fatalf("follower /metrics does not count its one write:\n%.2000s", m)
	}

	// CAS through a follower: 200 then 412 (the leader's answer).
	etag := fmt.Sprintf("%q", fmt.Sprint(rev))
	r2 := c.procs[f].must(200, "PUT", "/v1/kv/from-follower", "v2", "If-Match", etag)
	c.procs[f].must(412, "PUT", "/v1/kv/from-follower", "v3", "If-Match", etag)
	// Idempotent retry through another member returns the first revision.
	i1 := revisionOf(t, c.procs[f].must(200, "PUT", "/v1/kv/idem", "x", "Idempotency-Key", "once").body)
	i2 := revisionOf(t, c.procs[c.leader()].must(200, "PUT", "/v1/kv/idem", "x", "Idempotency-Key", "once").body)
	if i1 != i2 {
		t.Fatalf("retry revision %d, first %d", i2, i1)
	}

	// kill -9 the leader: a new one is elected and writes continue.
	old := c.leader()
	c.procs[old].kill()
	delete(c.procs, old)
	lead := c.leader()
	if lead == old {
		t.Fatal("killed member still leads")
	}
	// The retry of a write acknowledged by the dead leader returns the
	// first outcome from the new one and is not applied again.
	i3 := revisionOf(t, c.procs[lead].must(200, "PUT", "/v1/kv/idem", "x", "Idempotency-Key", "once").body)
	if i3 != i1 {
		t.Fatalf("retry after failover: revision %d, first %d", i3, i1)
	}
	c.procs[lead].must(409, "PUT", "/v1/kv/idem", "other", "Idempotency-Key", "once")
	after := revisionOf(t, c.procs[c.follower()].must(200, "PUT", "/v1/kv/after-failover", "yes").body)
	c.readEverywhere("after-failover", "yes", after)
	c.readEverywhere("from-follower", "v2", revisionOf(t, r2.body))

	// The killed member restarts from its data dir and catches up.
	p := start(t, c.flags[old]...)
	c.procs[old] = p
	p.waitReady()
	c.readEverywhere("after-failover", "yes", after)

	// Two of three members gone: the survivor has no quorum. A write is
	// refused (503) or, if it was appended before the leader noticed, its
	// outcome is unknown (504); a linearizable read is refused (503); a
	// stale read is still served. 503 carries Retry-After.
	survivor := c.follower()
	for name, q := range c.procs {
		if name != survivor {
			q.kill()
			delete(c.procs, name)
		}
	}
	s := c.procs[survivor]
	w := s.do("PUT", "/v1/kv/no-quorum", "x")
	if w.status != 503 && w.status != 504 {
		t.Fatalf("write without quorum: %d %s, want 503 or 504", w.status, w.body)
	}
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r := s.do("GET", "/v1/kv/after-failover", "")
		if r.status == 503 && r.header.Get("Retry-After") != "" && strings.Contains(r.body, `"unavailable"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("linearizable read without quorum: %d %s, want 503 with Retry-After", r.status, r.body)
		}
		<-tick.C
	}
	if r := s.must(200, "GET", "/v1/kv/after-failover?consistency=stale", ""); r.body != "yes" {
		t.Fatalf("stale read: %q", r.body)
	}
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d: %s", code, s.stderr.String())
	}
}

// TestWipedMemberIsRefused: a member whose data dir was lost comes back
// with a new random id; its peers do not know that id and refuse it, so
// it is never silently re-bootstrapped into the cluster (SPEC §1).
func TestWipedMemberIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	c := startCluster(t, 3)
	victim := c.follower()
	if code := c.procs[victim].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	delete(c.procs, victim)
	dir := c.flags[victim][3]
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p := start(t, c.flags[victim]...)
	// The other two keep serving writes.
	var live *proc
	for _, q := range c.procs {
		live = q
	}
	rev := revisionOf(t, live.must(200, "PUT", "/v1/kv/while-wiped", "x").body)
	// The wiped member never receives them: watch it for a few seconds.
	until := time.Now().Add(3 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(until) {
		if r := p.do("GET", "/v1/kv/while-wiped?consistency=stale", ""); r.status != 404 {
			t.Fatalf("wiped member serves data written after it was wiped: %d %s", r.status, r.body)
		}
		<-tick.C
	}
	if r := p.do("GET", "/readyz", ""); r.status != 503 {
		t.Fatalf("wiped member says ready: %d %s", r.status, r.body)
	}
	c.readEverywhere("while-wiped", "x", rev)
}

// Five members bootstrap from --initial-cluster alone (each learns the
// others' random member ids through the peer handshake), and keep serving
// with two of them, the leader among them, killed -9: a minority of five.
func TestFiveNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	c := startCluster(t, 5)
	rev := revisionOf(t, c.procs[c.follower()].must(200, "PUT", "/v1/kv/five", "a").body)
	c.readEverywhere("five", "a", rev)

	old := c.leader()
	for _, victim := range []string{old, c.follower()} {
		c.procs[victim].kill()
		delete(c.procs, victim)
	}
	if lead := c.leader(); lead == old {
		t.Fatal("killed member still leads")
	}
	rev2 := revisionOf(t, c.procs[c.follower()].must(200, "PUT", "/v1/kv/five", "b").body)
	if rev2 <= rev {
		t.Fatalf("revision after failover %d, before %d", rev2, rev)
	}
	c.readEverywhere("five", "b", rev2)
}
