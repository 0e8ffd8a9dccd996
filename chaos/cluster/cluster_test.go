package cluster

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
)

var bin struct {
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	if bin.path == "" && bin.err == nil {
		bin.dir, bin.err = os.MkdirTemp("", "edgekv-cluster-bin-")
		if bin.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			bin.path, bin.err = Build(ctx, "crashtest", bin.dir)
			cancel()
		}
	}
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

func put(t *testing.T, addr, key, value string) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// leaderSeenBy is the leader node i names (-1 for none or no answer).
func leaderSeenBy(c *Cluster, i int) int {
	st, err := c.Status(context.Background(), i)
	if err != nil || st.Leader == "" {
		return -1
	}
	if n := c.nodeByName(st.Leader); n != nil {
		return n.Index
	}
	return -1
}

// TestFaultsReachTheCluster proves the runner's faults act on the real
// binary: every peer link carries traffic through its proxy (no node
// bypasses the proxies), isolating the leader makes the others elect a
// new one, a one-way cut of everything the leader sends does too, a paused
// leader is replaced, and killed members restart from their data dirs.
func TestFaultsReachTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	ctx := context.Background()
	c, err := Start(ctx, Config{Binary: binary(t), Nodes: 3, Dir: t.TempDir(), Token: "cluster-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if code := put(t, c.Node(0).Client, "k", "v"); code != 200 {
		t.Fatalf("put: %d", code)
	}
	// The evidence of a stuck node: its readiness, status and goroutines.
	diag := c.Diagnostics(ctx, 0)
	for _, want := range []string{"==== GET /readyz\n200\n", "==== GET /v1/cluster\n200\n", "goroutine ", "node.(*Node).runRaft"} {
		if !strings.Contains(diag, want) {
			t.Fatalf("diagnostics lack %q:\n%.2000s", want, diag)
		}
	}
	for from := range 3 {
		for to := range 3 {
			if from == to {
				continue
			}
			eventually(t, 10*time.Second, "traffic on every link", func() bool {
				return c.Link(from, to).Stats().BytesForwarded[faultproxy.Forward] > 0
			})
		}
	}

	others := func(l int) []int {
		var o []int
		for i := range 3 {
			if i != l {
				o = append(o, i)
			}
		}
		return o
	}
	// newLeaderAmong waits until both other members name the same leader,
	// not old.
	newLeaderAmong := func(what string, old int) {
		t.Helper()
		o := others(old)
		eventually(t, 20*time.Second, what, func() bool {
			a, b := leaderSeenBy(c, o[0]), leaderSeenBy(c, o[1])
			return a >= 0 && a != old && a == b
		})
	}

	l := c.Leader(ctx)
	if l < 0 {
		t.Fatal("no leader")
	}
	c.Isolate(l)
	newLeaderAmong("a new leader after isolating the leader", l)
	if code := put(t, c.Node(l).Client, "k", "from-isolated"); code == 200 {
		t.Fatal("the isolated old leader acknowledged a write")
	}
	c.Heal()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	l = c.Leader(ctx)
	for _, j := range others(l) {
		c.CutOneWay(l, j)
	}
	newLeaderAmong("a new leader when nothing the leader sends arrives", l)
	c.Heal()

	l = c.Leader(ctx)
	if err := c.Node(l).Pause(); err != nil {
		t.Fatal(err)
	}
	newLeaderAmong("a new leader while the leader is paused", l)
	if err := c.Node(l).Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	c.KillAll()
	for _, n := range c.Nodes() {
		if n.Running() {
			t.Fatalf("%s still running after KillAll", n.Name)
		}
	}
	if err := c.RestartAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a write after restarting every member", func() bool {
		return put(t, c.Node(1).Client, "k", "after-restart") == 200
	})
	if s := c.NetStats(); s.Cut == 0 || s.Refused == 0 {
		t.Fatalf("proxies never cut or refused a connection: %+v", s)
	}

	// Exits the runner did not cause are reported (a product crash must
	// never be hidden by the next restart).
	if e := c.UnexpectedExits(); len(e) != 0 {
		t.Fatalf("unexpected exits before any: %v", e)
	}
	n := c.Node(2)
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if e := c.UnexpectedExits(); len(e) != 1 || !strings.Contains(e[0], "n3 exited on its own") || n.Running() {
		t.Fatalf("unexpected exits %v, running %v", e, n.Running())
	}
}

func TestSupportsFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := context.Background()
	if ok, err := SupportsFlag(ctx, binary(t), "election-timeout"); err != nil || !ok {
		t.Fatalf("--election-timeout: %v %v", ok, err)
	}
	if ok, err := SupportsFlag(ctx, binary(t), "no-such-flag"); err != nil || ok {
		t.Fatalf("--no-such-flag: %v %v", ok, err)
	}
}
