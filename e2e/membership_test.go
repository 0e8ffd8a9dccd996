package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clusterView is GET /v1/cluster.
type clusterView struct {
	Name    string `json:"name"`
	Leader  string `json:"leader"`
	Term    uint64 `json:"term"`
	Members []struct {
		Name       string `json:"name"`
		Peer       string `json:"peer"`
		Client     string `json:"client"`
		Voter      bool   `json:"voter"`
		Reachable  bool   `json:"reachable"`
		MatchIndex uint64 `json:"match_index"`
		Lag        uint64 `json:"lag"`
	} `json:"members"`
}

func (p *proc) cluster() clusterView {
	p.t.Helper()
	var v clusterView
	body := p.must(200, "GET", "/v1/cluster", "").body
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		p.t.Fatalf("/v1/cluster: %v: %s", err, body)
	}
	return v
}

func (v clusterView) voter(name string) (voter, found bool) {
	for _, m := range v.Members {
		if m.Name == name {
			return m.Voter, true
		}
	}
	return false, false
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// loadWriter writes distinct keys through the running members, one
// writer goroutine each. A write answered 503 or 504, or whose connection
// failed, is retried with the same Idempotency-Key on the next member
// (504 and a dropped connection mean "unknown": the key makes the retry
// safe); any other answer but 200 is a failed write. Every acknowledged
// write is remembered to be read back.
type loadWriter struct {
	mu       sync.Mutex
	targets  []string          // client addresses
	acked    map[string]string // key → value
	failed   []string
	retried  map[int]int // status (0: connection error) → count
	stop     chan struct{}
	wg       sync.WaitGroup
	attempts int
}

func startLoad(targets []string, writers int) *loadWriter {
	l := &loadWriter{targets: targets, acked: map[string]string{}, retried: map[int]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < writers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key, value := fmt.Sprintf("load-%d-%d", w, i), fmt.Sprintf("v%d-%d", w, i)
				l.write(client, w+i, key, value)
			}
		}()
	}
	return l
}

func (l *loadWriter) setTargets(targets []string) {
	l.mu.Lock()
	l.targets = targets
	l.mu.Unlock()
}

// write puts key until it is acknowledged, refused for good, or 30 s pass.
func (l *loadWriter) write(client *http.Client, start int, key, value string) {
	deadline := time.Now().Add(30 * time.Second)
	for attempt := start; ; attempt++ {
		l.mu.Lock()
		target := l.targets[attempt%len(l.targets)]
		l.attempts++
		l.mu.Unlock()
		req, _ := http.NewRequest("PUT", "http://"+target+"/v1/kv/"+key, strings.NewReader(value))
		req.Header.Set("Idempotency-Key", key)
		status, body := 0, ""
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
		}
		l.mu.Lock()
		switch {
		case status == 200:
			l.acked[key] = value
			l.mu.Unlock()
			return
		case status == 0 || status == 503 || status == 504:
			l.retried[status]++
			if time.Now().After(deadline) {
				l.failed = append(l.failed, fmt.Sprintf("%s: still %d after 30s (%v %s)", key, status, err, body))
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		default:
			l.failed = append(l.failed, fmt.Sprintf("%s on %s: %d %s", key, target, status, body))
			l.mu.Unlock()
			return
		}
	}
}

// finish stops the writers and fails the test on any failed write.
func (l *loadWriter) finish(t *testing.T) map[string]string {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d writes acknowledged in %d attempts; retried after (status: count, 0 = connection error): %v", len(l.acked), l.attempts, l.retried)
	if len(l.failed) > 0 {
		t.Fatalf("%d failed writes, first: %s", len(l.failed), l.failed[0])
	}
	return l.acked
}

func (l *loadWriter) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (c *realCluster) clients() []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.client)
	}
	return out
}

// checkAcked reads every acknowledged write back from p (linearizable).
func checkAcked(t *testing.T, p *proc, acked map[string]string) {
	t.Helper()
	for k, v := range acked {
		if r := p.do("GET", "/v1/kv/"+k, ""); r.status != 200 || r.body != v {
			t.Fatalf("acknowledged write %s=%s reads %d %q", k, v, r.status, r.body)
		}
	}
}

// TestJoinPromoteThenRemoveUnderLoad: a fourth node started with --join
// (pointed at a follower, which forwards to the leader) becomes a learner,
// catches up and is promoted by the leader on its own; then a follower is
// removed through the new node and exits 0. All the while clients write
// through every member and see no failure but 503/504 (retried).
func TestJoinPromoteThenRemoveUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes")
	}
	c := startCluster(t, 3)
	load := startLoad(c.clients(), 4)
	eventually(t, "some load acknowledged", 10*time.Second, func() bool { return load.ackedCount() > 50 })

	// Every member's client address becomes known everywhere (each
	// member announces its own through the log).
	for name, p := range c.procs {
		eventually(t, name+" knows every client address", 10*time.Second, func() bool {
			for _, m := range p.cluster().Members {
				if m.Client != c.procs[m.Name].client {
					return false
				}
			}
			return true
		})
	}

	via := c.follower()
	flags := []string{
		"--name", "n4", "--data-dir", t.TempDir(),
		"--listen-client", freeAddr(t), "--listen-peer", freeAddr(t),
		"--initial-cluster-token", "e2e-" + t.Name(), "--join", c.procs[via].client,
		"--heartbeat-interval", "20ms", "--election-timeout", "500ms", "--request-timeout", "3s",
	}
	n4 := start(t, flags...)
	c.procs["n4"], c.flags["n4"] = n4, flags
	c.names = append(c.names, "n4")
	eventually(t, "n4 promoted to voter by the leader", 30*time.Second, func() bool {
		v, ok := c.procs[c.leader()].cluster().voter("n4")
		return ok && v
	})
	load.setTargets(c.clients())
	// The leader's metrics show the change and replicate to n4.
	eventually(t, "membership metrics on the leader", 10*time.Second, func() bool {
		m := c.procs[c.leader()].must(200, "GET", "/metrics", "").body
		return strings.Contains(m, `edgekv_membership_changes_total{change="add-learner"} 1`) &&
			strings.Contains(m, `edgekv_membership_changes_total{change="promote"} 1`) &&
			strings.Contains(m, `edgekv_cluster_members{role="voter"} 4`) &&
			strings.Contains(m, `edgekv_replication_lag_entries{peer="n4"}`) &&
			strings.Contains(m, `edgekv_replication_peer_reachable{peer="n4"} 1`)
	})
	if !strings.Contains(n4.stderr.String(), "joined the cluster as a learner") {
		t.Fatalf("n4 log does not show the join: %s", n4.stderr.String())
	}
	eventually(t, "more load after the join", 10*time.Second, func() bool { return load.ackedCount() > 300 })

	// remove takes a member out through `via` (forwarded if via does not
	// lead); the removed member exits 0 by itself.
	remove := func(victim string, via *proc) {
		t.Helper()
		var rest []string
		for name, p := range c.procs {
			if name != victim {
				rest = append(rest, p.client)
			}
		}
		load.setTargets(rest)
		via.must(200, "DELETE", "/v1/cluster/members/"+victim, "")
		select {
		case <-c.procs[victim].exited:
			if code := c.procs[victim].state.ExitCode(); code != 0 {
				t.Fatalf("removed member exited %d: %s", code, c.procs[victim].stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("removed member %s did not exit: %s", victim, c.procs[victim].stderr.String())
		}
		delete(c.procs, victim)
	}
	// First a follower other than n4, asked of n4.
	lead := c.leader()
	victim := ""
	for _, name := range c.names {
		if name != lead && name != "n4" {
			victim = name
		}
	}
	remove(victim, n4)
	removedFlags := c.flags[victim]
	eventually(t, "more load after the removal", 10*time.Second, func() bool { return load.ackedCount() > 500 })

	// Then the leader itself (moved off n4 first if n4 leads): it hands
	// over on its own; writes in flight meet 503/504 and are retried.
	if c.leader() == "n4" {
		for name := range c.procs {
			if name != "n4" {
				n4.must(200, "POST", "/v1/cluster/transfer-leader", fmt.Sprintf(`{"to":%q}`, name))
			}
		}
	}
	lead = c.leader()
	remove(lead, c.procs[lead])
	eventually(t, "more load after the leader's removal", 10*time.Second, func() bool { return load.ackedCount() > 700 })
	acked := load.finish(t)

	v := c.procs[c.leader()].cluster()
	if len(v.Members) != 2 {
		t.Fatalf("members after two removals: %+v", v.Members)
	}
	for _, gone := range []string{victim, lead} {
		if _, ok := v.voter(gone); ok {
			t.Fatalf("removed member %s still listed: %+v", gone, v.Members)
		}
	}
	checkAcked(t, n4, acked)

	// The removed member's data dir refuses to start again.
	code, _, stderr := runOnce(t, removedFlags...)
	if code == 0 || !strings.Contains(stderr, "was removed from the cluster") {
		t.Fatalf("restarting a removed member: exit %d: %s", code, stderr)
	}

	// The joined member restarts from its data dir (--join is ignored
	// then) as the voter it became, with everything it had.
	if code := n4.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("n4 exited %d on SIGTERM: %s", code, n4.stderr.String())
	}
	n4 = start(t, flags...)
	c.procs["n4"] = n4
	n4.waitReady()
	if !strings.Contains(n4.stderr.String(), "--join is ignored") {
		t.Fatalf("restarted n4 does not say it ignored --join: %s", n4.stderr.String())
	}
	// Two voters: a leader once both are up (503 until then).
	var put response
	eventually(t, "a write after n4's restart", 20*time.Second, func() bool {
		put = n4.do("PUT", "/v1/kv/after-n4-restart", "w", "Idempotency-Key", "after-n4-restart")
		return put.status == 200
	})
	c.readEverywhere("after-n4-restart", "w", revisionOf(t, put.body))
	if v, ok := c.procs[c.leader()].cluster().voter("n4"); !ok || !v {
		t.Fatal("restarted n4 is no voter")
	}
}

// TestTransferLeaderEndpoint: POST /v1/cluster/transfer-leader sent to a
// follower moves leadership to the named member.
func TestTransferLeaderEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	c := startCluster(t, 3)
	old := c.leader()
	target, via := "", ""
	for _, name := range c.names {
		switch {
		case name == old:
		case target == "":
			target = name
		default:
			via = name
		}
	}
	// The follower forwards as soon as it knows the leader's address.
	eventually(t, "the leader's client address known", 10*time.Second, func() bool {
		for _, m := range c.procs[via].cluster().Members {
			if m.Name == old && m.Client != "" {
				return true
			}
		}
		return false
	})
	r := c.procs[via].must(200, "POST", "/v1/cluster/transfer-leader", fmt.Sprintf(`{"to":%q}`, target))
	var res struct{ Leader string }
	if err := json.Unmarshal([]byte(r.body), &res); err != nil || res.Leader != target {
		t.Fatalf("transfer answer %s (%v), want leader %s", r.body, err, target)
	}
	if got := c.leader(); got != target {
		t.Fatalf("leader %s after transfer to %s", got, target)
	}
	rev := revisionOf(t, c.procs[old].must(200, "PUT", "/v1/kv/after-transfer", "x").body)
	c.readEverywhere("after-transfer", "x", rev)
	// Transfer to a member that does not exist.
	c.procs[target].must(404, "POST", "/v1/cluster/transfer-leader", `{"to":"nobody"}`)
}

// TestUnsafeMembershipRequestsRefused: each refusal is a 4xx JSON error
// with a code, and changes nothing.
func TestUnsafeMembershipRequestsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	single := start(t, nodeFlags(t, t.TempDir())...)
	single.waitReady()
	single.must(200, "PUT", "/v1/kv/warm", "up") // the leader has committed in its term
	name := single.cluster().Name
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"DELETE", "/v1/cluster/members/" + name, "", 409, "last_voter"},
		{"DELETE", "/v1/cluster/members/nobody", "", 404, "unknown_member"},
		{"POST", "/v1/cluster/members/nobody/promote", "", 404, "unknown_member"},
		{"POST", "/v1/cluster/members/" + name + "/promote", "", 409, "member_exists"},
		{"POST", "/v1/cluster/members", `{"name":"` + name + `","peer":"127.0.0.1:1","id":"00000000000000aa"}`, 409, "member_exists"},
		{"POST", "/v1/cluster/members", `{"name":"x","peer":"127.0.0.1:1","id":"0b","cluster_id":"0000000000000001"}`, 400, "bad_request"},
		{"POST", "/v1/cluster/members", `{"name":"x"`, 400, "bad_request"},
		{"POST", "/v1/cluster/members", `{"name":"x","peer":"127.0.0.1:1","extra":1}`, 400, "bad_request"},
		{"POST", "/v1/cluster/members", `{"peer":"127.0.0.1:1"}`, 400, "bad_request"},
		{"POST", "/v1/cluster/transfer-leader", `{"to":"` + name + `"}`, 200, ""},
		{"POST", "/v1/cluster/transfer-leader", ``, 409, "no_transferee"},
		{"GET", "/v1/cluster/members", "", 405, "method_not_allowed"},
	} {
		r := single.do(c.method, c.path, c.body)
		var e struct{ Error, Code string }
		json.Unmarshal([]byte(r.body), &e)
		if r.status != c.status || e.Code != c.code || c.status >= 400 && e.Error == "" {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, r.status, r.body, c.status, c.code)
		}
	}
	if v := single.cluster(); len(v.Members) != 1 || v.Leader != name {
		t.Fatalf("refused requests changed the cluster: %+v", v)
	}

	// A wiped member cannot join under its old name while that identity
	// is a member: the join is refused with a clear error, exit 1.
	c := startCluster(t, 3)
	victim := c.follower()
	flags := c.flags[victim]
	c.procs[victim].kill()
	delete(c.procs, victim)
	if err := os.RemoveAll(flags[3]); err != nil {
		t.Fatal(err)
	}
	joinFlags := []string{
		"--name", victim, "--data-dir", flags[3], "--listen-client", flags[5], "--listen-peer", flags[7],
		"--initial-cluster-token", "e2e-" + t.Name(), "--join", c.procs[c.leader()].client,
		"--heartbeat-interval", "20ms", "--election-timeout", "500ms",
	}
	code, _, stderr := runOnce(t, joinFlags...)
	if code != 1 || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "remove it first") {
		t.Fatalf("wiped member rejoining under its name: exit %d: %s", code, stderr)
	}
	// Following the runbook: remove, wipe, re-add works.
	c.procs[c.leader()].must(200, "DELETE", "/v1/cluster/members/"+victim, "")
	if err := os.RemoveAll(flags[3]); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	p := start(t, joinFlags...)
	c.procs[victim] = p
	eventually(t, victim+" back as a voter", 30*time.Second, func() bool {
		v, ok := c.procs[c.leader()].cluster().voter(victim)
		return ok && v
	})
	rev := revisionOf(t, p.must(200, "PUT", "/v1/kv/readded", "y").body)
	c.readEverywhere("readded", "y", rev)
}
