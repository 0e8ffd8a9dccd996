package e2e

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// startClusterFlags starts size members of the binary at bin with extra
// flags on every member (startClusterWith plus flags).
func startClusterFlags(t *testing.T, bin string, size int, extra ...string) *realCluster {
	t.Helper()
	c := &realCluster{t: t, bin: bin, flags: map[string][]string{}, procs: map[string]*proc{}}
	peers := make([]string, size)
	var initial []string
	for i := range size {
		name := fmt.Sprintf("n%d", i+1)
		c.names = append(c.names, name)
		peers[i] = freeAddr(t)
		initial = append(initial, name+"="+peers[i])
	}
	for i, name := range c.names {
		c.flags[name] = append([]string{
			"--name", name, "--data-dir", t.TempDir(),
			"--listen-client", freeAddr(t), "--listen-peer", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "e2e-" + t.Name(),
			"--heartbeat-interval", "20ms", "--election-timeout", "500ms", "--request-timeout", "3s",
		}, extra...)
	}
	for _, name := range c.names {
		c.procs[name] = startBinary(t, bin, c.flags[name]...)
	}
	for _, name := range c.names {
		c.procs[name].awaitServing()
	}
	for _, p := range c.procs {
		p.waitReady()
	}
	return c
}

// flagValue returns the value of --name in flags.
func flagValue(flags []string, name string) string {
	for i := 0; i+1 < len(flags); i++ {
		if flags[i] == name {
			return flags[i+1]
		}
	}
	return ""
}

// metric returns the value of the sample line starting with series in
// the member's /metrics (0 when absent).
func (p *proc) metric(series string) float64 {
	p.t.Helper()
	body := p.must(200, "GET", "/metrics", "").body
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				p.t.Fatalf("metric %s: %q: %v", series, line, err)
			}
			return v
		}
	}
	return 0
}

// TestStoppedMemberCatchesUpBySnapshot: with --snapshot-entries 10, a
// member stopped while the others write past several snapshots comes back,
// is sent the leader's snapshot (its log was compacted away), installs it
// and serves every key from its own state.
func TestStoppedMemberCatchesUpBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	c := startClusterFlags(t, binary(t), 3, "--snapshot-entries", "10")
	lead := c.leader()
	var stopped string
	for _, name := range c.names {
		if name != lead {
			stopped = name
			break
		}
	}
	c.procs[lead].must(200, "PUT", "/v1/kv/first", "1")
	if code := c.procs[stopped].stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("%s exited %d on SIGTERM", stopped, code)
	}
	delete(c.procs, stopped)
	revs := map[string]string{}
	for i := 0; i < 120; i++ {
		key := fmt.Sprintf("k%03d", i)
		r := c.procs[lead].must(200, "PUT", "/v1/kv/"+key, "value-"+key)
		revs[key] = r.header.Get("ETag")
	}
	lp := c.procs[lead]
	if taken := lp.metric(`edgekv_snapshots_total{op="taken"}`); taken < 3 {
		t.Fatalf("the leader took %v snapshots over 120 writes with --snapshot-entries 10", taken)
	}
	if !strings.Contains(lp.stderr.String(), "snapshot taken, log compacted") {
		t.Fatalf("no snapshot log line on the leader: %s", lp.stderr.String())
	}
	// Restart the two running members: they recover from their snapshots
	// plus the log after them, and their transports no longer hold the
	// appends queued for the stopped member while it was down (which
	// would let it catch up without a snapshot).
	for _, name := range c.names {
		if name == stopped {
			continue
		}
		if code := c.procs[name].stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("%s exited %d on SIGTERM", name, code)
		}
	}
	for _, name := range c.names {
		if name != stopped {
			c.procs[name] = startBinary(t, c.bin, c.flags[name]...)
		}
	}
	for _, name := range c.names {
		if name != stopped {
			c.procs[name].awaitServing()
			if !regexp.MustCompile(`storage: recovered.*snapshot_index=[1-9]`).MatchString(c.procs[name].stderr.String()) {
				t.Fatalf("%s did not restart from a snapshot: %s", name, c.procs[name].stderr.String())
			}
		}
	}
	for _, name := range c.names {
		if name != stopped {
			c.procs[name].waitReady()
		}
	}
	lead = c.leader()
	lp = c.procs[lead]
	for key, etag := range revs {
		if g := lp.must(200, "GET", "/v1/kv/"+key, ""); g.body != "value-"+key || g.header.Get("ETag") != etag {
			t.Fatalf("%s after the restart from snapshots: %q ETag %s, want ETag %s", key, g.body, g.header.Get("ETag"), etag)
		}
	}
	p := startBinary(t, c.bin, c.flags[stopped]...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("leader %s:\n%s\nrestarted %s:\n%s", lead, lp.stderr.String(), stopped, p.stderr.String())
		}
	})
	p.awaitServing()
	c.procs[stopped] = p
	waitUntil(t, "the restarted member to install a snapshot", func() bool {
		return strings.Contains(p.stderr.String(), "snapshot installed from the leader")
	})
	if got := p.metric(`edgekv_snapshots_total{op="received"}`); got < 1 {
		t.Fatalf("received snapshots metric %v after an install", got)
	}
	if got := lp.metric(`edgekv_snapshots_total{op="sent"}`); got < 1 {
		t.Fatalf("sent snapshots metric %v on the leader", got)
	}
	waitUntil(t, "the restarted member to apply the last write", func() bool {
		return p.do("GET", "/v1/kv/k119?consistency=stale", "").status == 200
	})
	for key, etag := range revs {
		g := p.must(200, "GET", "/v1/kv/"+key+"?consistency=stale", "")
		if g.body != "value-"+key || g.header.Get("ETag") != etag {
			t.Fatalf("%s on the caught-up member: %q ETag %s, want %q ETag %s", key, g.body, g.header.Get("ETag"), "value-"+key, etag)
		}
	}
	if g := p.must(200, "GET", "/v1/kv/first?consistency=stale", ""); g.body != "1" {
		t.Fatalf("first = %q", g.body)
	}
	// It takes part in the cluster again: a write through it is read back
	// everywhere.
	rev := revisionOf(t, p.must(200, "PUT", "/v1/kv/after", "caught-up").body)
	c.readEverywhere("after", "caught-up", rev)
}
