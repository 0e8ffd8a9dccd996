// Package cluster runs a cluster of real edgekv processes on loopback for
// the fault tests (issue 9), with every peer-to-peer connection passing
// through a fault-injecting proxy (faultproxy) that the test owns, and
// with process faults (kill -9, SIGSTOP/SIGCONT, restart) sent by PID.
//
// # Network
//
// edgekv's peer transport dials one set of connections per directed pair:
// messages from A to B travel only on connections A dialled to B's peer
// address (B answers on them only during the handshake and for snapshot
// flow control; B's own messages to A travel on connections B dialled).
// So one proxy per directed pair (links[from][to]) controls exactly what
// A can say to B, and a one-way partition is one blocked proxy.
//
// Members replicate one peer address per member, so every member must be
// told the same address for B: B's router. It reads the Hello that opens
// each connection (the dialer names itself) and splices the connection
// into the proxy of the link dialer→B, which forwards to B's real peer
// port. Routers and proxies outlive node restarts, so every address stays
// valid.
//
//	A ──dial──▶ router[B] ──Hello says "A"──▶ links[A][B] ──▶ B's peer port
//	C ──dial──▶ router[B] ──Hello says "C"──▶ links[C][B] ──▶ B's peer port
//
// # Processes
//
// The binary is built once (Build) with the crashtest tag, under which the
// storage layer keeps unsynced writes in process memory: kill -9 loses
// exactly what a power cut would. Client (HTTP) and peer ports are chosen
// once and kept across restarts.
//
// The package must never signal a process it did not start (it signals
// by the PID of its own exec.Cmd only), never leave a process or proxy
// running after Close, and never talk to anything but 127.0.0.1.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
	"github.com/edgekv/edgekv/internal/freeport"
)

// Build compiles edgekv with the given build tags (for example
// "crashtest") into dir and returns the binary's path. CGO is off, as
// shipped. It must be called from inside the module (go test does).
func Build(ctx context.Context, tags, dir string) (string, error) {
	path := filepath.Join(dir, "edgekv-"+strings.NewReplacer(",", "-", " ", "-").Replace(tags))
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", tags, "-o", path, "github.com/edgekv/edgekv")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: go build -tags %q: %w\n%s", tags, err, out)
	}
	return path, nil
}

// Config describes a cluster.
type Config struct {
	Binary string // path of the edgekv binary (Build)
	Nodes  int    // members, 1 to MaxNodes
	// Dir holds each node's data dir and log file (a test's TempDir).
	Dir string
	// Token is --initial-cluster-token; empty: "chaos".
	Token string
	// HeartbeatInterval, ElectionTimeout and RequestTimeout are passed to
	// every node; zero values get Default*.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	RequestTimeout    time.Duration
	// Seed makes the proxies' jitter reproducible.
	Seed uint64
	// ExtraFlags are appended to every node's command line.
	ExtraFlags []string
}

// Defaults for a loaded 2-core CI machine: elections rare enough not to
// happen spuriously, fast enough that a scenario sees many of them.
const (
	DefaultHeartbeatInterval = 50 * time.Millisecond
	DefaultElectionTimeout   = 500 * time.Millisecond
	DefaultRequestTimeout    = 2 * time.Second
	// MaxNodes bounds a cluster (n*(n-1) proxies, n processes).
	MaxNodes = 9
	// startTimeout bounds how long a started node may take to print its
	// serving line.
	startTimeout = 60 * time.Second
)

// Cluster is a running set of nodes and the proxies between them. Its
// methods may be called from several goroutines (a nemesis and a checker).
type Cluster struct {
	cfg   Config
	nodes []*Node
	// links[from][to] carries what node from sends to node to; nil when
	// from == to.
	links [][]*faultproxy.Proxy
	// routers[to] is the peer address every member is told for member to.
	routers []*router

	mu sync.Mutex // serialises fault changes so that they compose predictably

	// probe is for the runner's own requests (readiness, leader), never
	// for the workload.
	probe *http.Client
}

// Node is one member: its fixed addresses and its current process.
type Node struct {
	Name    string
	Index   int
	Client  string // HTTP host:port, fixed across restarts
	Peer    string // peer listen host:port, fixed across restarts
	DataDir string
	LogPath string // the node's stderr, appended across restarts
	args    []string

	mu     sync.Mutex
	proc   *process // nil when not started or after Kill
	paused bool
	// exits describes every exit the runner did not cause (a crash of
	// the product: a panic, a fatal error), oldest first.
	exits []string
}

// process is one started edgekv process.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once Wait returned
	serving chan string   // the serving line, then closed
	logFile *os.File
	// exitExpected (guarded by the Node's mu): the member was removed and
	// exits on its own.
	exitExpected bool
	killed       bool // by the runner
}

// Start creates the proxies, starts every node and waits until each has
// printed its serving line and every node answers /readyz, or ctx ends.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes < 1 || cfg.Nodes > MaxNodes {
		return nil, fmt.Errorf("cluster: %d nodes, want 1 to %d", cfg.Nodes, MaxNodes)
	}
	if cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("cluster: Binary and Dir are required")
	}
	if cfg.Token == "" {
		cfg.Token = "chaos"
	}
	cfg.HeartbeatInterval = orDefault(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.ElectionTimeout = orDefault(cfg.ElectionTimeout, DefaultElectionTimeout)
	cfg.RequestTimeout = orDefault(cfg.RequestTimeout, DefaultRequestTimeout)
	c := &Cluster{cfg: cfg, probe: &http.Client{Timeout: time.Second}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for i := range cfg.Nodes {
		client, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peer, err := freeAddr()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &Node{
			Name: name, Index: i, Client: client, Peer: peer,
			DataDir: filepath.Join(cfg.Dir, name),
			LogPath: filepath.Join(cfg.Dir, name+".log"),
		})
	}
	c.links = make([][]*faultproxy.Proxy, cfg.Nodes)
	for from := range c.nodes {
		c.links[from] = make([]*faultproxy.Proxy, cfg.Nodes)
		for to, n := range c.nodes {
			if from == to {
				continue
			}
			p, err := faultproxy.Start("127.0.0.1:0", n.Peer, cfg.Seed+uint64(from*MaxNodes+to), nil)
			if err != nil {
				return nil, fmt.Errorf("cluster: proxy %d->%d: %w", from, to, err)
			}
			c.links[from][to] = p
		}
	}
	byName := map[string]int{}
	for i, n := range c.nodes {
		byName[n.Name] = i
	}
	for to := range c.nodes {
		r, err := startRouter(to, byName, func(from int) string {
			if p := c.links[from][to]; p != nil {
				return p.Addr()
			}
			return ""
		})
		if err != nil {
			return nil, err
		}
		c.routers = append(c.routers, r)
	}
	initial := make([]string, 0, cfg.Nodes)
	for j, m := range c.nodes {
		initial = append(initial, m.Name+"="+c.routers[j].addr())
	}
	for _, n := range c.nodes {
		n.args = append([]string{
			"--name", n.Name, "--data-dir", n.DataDir,
			"--listen-client", n.Client, "--listen-peer", n.Peer,
			"--advertise-peer", c.routers[n.Index].addr(),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", cfg.Token,
			"--heartbeat-interval", cfg.HeartbeatInterval.String(),
			"--election-timeout", cfg.ElectionTimeout.String(),
			"--request-timeout", cfg.RequestTimeout.String(),
		}, cfg.ExtraFlags...)
	}
	// Start them together: each waits in discovery for the others.
	for _, n := range c.nodes {
		if err := n.spawn(cfg.Binary); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := n.awaitServing(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// freeAddr returns a loopback address nobody listens on now, outside the
// ephemeral port range (freeport's doc says why).
func freeAddr() (string, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return "", fmt.Errorf("cluster: free port: %w", err)
	}
	return addr, nil
}

// Nodes returns the members in index order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.nodes) }

// Node returns member i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// ClientAddrs lists every member's HTTP address, in index order.
func (c *Cluster) ClientAddrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Client
	}
	return addrs
}

// Close kills every process (SIGKILL by PID) and closes every proxy.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.Kill()
	}
	for _, r := range c.routers {
		r.close()
	}
	for _, row := range c.links {
		for _, p := range row {
			if p != nil {
				p.Close()
			}
		}
	}
}

// spawn starts the node's process; its stdout's first line (the serving
// line) goes to n.proc.serving, stderr to the log file.
func (n *Node) spawn(bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("cluster: %s already running", n.Name)
	}
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %s log: %w", n.Name, err)
	}
	fmt.Fprintf(logFile, "==== chaos: start %s at %s\n", n.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, n.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return fmt.Errorf("cluster: %s: %w", n.Name, err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("cluster: start %s: %w", n.Name, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), serving: make(chan string, 1), logFile: logFile}
	go func() {
		// Owned by the process: ends when its stdout closes (it exited).
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				p.serving <- sc.Text()
				first = false
			}
		}
		close(p.serving)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		fmt.Fprintf(logFile, "==== chaos: %s exited: %v\n", n.Name, cmd.ProcessState)
		logFile.Close()
		n.mu.Lock()
		if n.proc == p {
			n.proc, n.paused = nil, false
		}
		if !p.killed && !p.exitExpected {
			n.exits = append(n.exits, fmt.Sprintf("%s exited on its own at %s: %v", n.Name, time.Now().UTC().Format(time.RFC3339Nano), cmd.ProcessState))
		}
		n.mu.Unlock()
		close(p.exited)
	}()
	n.proc, n.paused = p, false
	return nil
}

// awaitServing waits for the serving line of the current process.
func (n *Node) awaitServing(ctx context.Context) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("cluster: %s not running", n.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	select {
	case line, ok := <-p.serving:
		if !ok {
			<-p.exited
			return fmt.Errorf("cluster: %s exited before serving (%v), log %s:\n%s", n.Name, p.cmd.ProcessState, n.LogPath, tail(n.LogPath))
		}
		if !strings.Contains(line, "serving") {
			return fmt.Errorf("cluster: %s: unexpected first line %q", n.Name, line)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: %s did not report serving: %w; log %s:\n%s", n.Name, ctx.Err(), n.LogPath, tail(n.LogPath))
	}
}

// tail returns the last few KiB of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const keep = 4 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// UnexpectedExits lists every exit of a member that the runner did not
// cause (kill -9 by the runner is expected; a panic is not).
func (c *Cluster) UnexpectedExits() []string {
	var all []string
	for _, n := range c.nodes {
		n.mu.Lock()
		all = append(all, n.exits...)
		n.mu.Unlock()
	}
	return all
}

// Running reports whether the node has a live process (paused or not).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil
}

// Paused reports whether the node's process is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Kill sends SIGKILL to the node's process (a crash: with the crashtest
// build, unsynced writes are lost) and waits until it is reaped. A node
// not running is left alone.
func (n *Node) Kill() {
	n.mu.Lock()
	p := n.proc
	n.proc, n.paused = nil, false
	if p != nil {
		p.killed = true
	}
	n.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Kill() // by PID; works on a stopped process too
	<-p.exited
}

// Pause stops the process with SIGSTOP: it keeps its sockets and state
// but runs no code, as a long GC pause or a frozen VM would.
func (n *Node) Pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.paused {
		return nil
	}
	if err := n.proc.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("cluster: pause %s: %w", n.Name, err)
	}
	n.paused = true
	return nil
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || !n.paused {
		return nil
	}
	if err := n.proc.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("cluster: resume %s: %w", n.Name, err)
	}
	n.paused = false
	return nil
}

// Restart starts the node again from its data dir if it is not running,
// and waits for its serving line (not for it to be ready: its peers may be
// down).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	n := c.nodes[i]
	if n.Running() {
		return nil
	}
	if err := n.spawn(c.cfg.Binary); err != nil {
		return err
	}
	return n.awaitServing(ctx)
}

// RestartAll restarts every node that is not running, all at once (a
// cluster that lost power comes back together), and resumes paused ones.
func (c *Cluster) RestartAll(ctx context.Context) error {
	var started []*Node
	for _, n := range c.nodes {
		if err := n.Resume(); err != nil {
			return err
		}
		if n.Running() {
			continue
		}
		if err := n.spawn(c.cfg.Binary); err != nil {
			return err
		}
		started = append(started, n)
	}
	for _, n := range started {
		if err := n.awaitServing(ctx); err != nil {
			return err
		}
	}
	return nil
}

// KillAll kills every node at once (all hosts lose power).
func (c *Cluster) KillAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Kill() }()
	}
	wg.Wait()
}

// Ready asks node i's /readyz.
func (c *Cluster) Ready(ctx context.Context, i int) bool {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.nodes[i].Client+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := c.probe.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until every running, unpaused node answers /readyz with
// 200, or ctx ends. The error names every node that was not ready in the
// last pass whose probes all ran before the deadline: a probe cut short by
// the deadline says nothing about its node (naming it sent a hunt for a
// stuck member after one that was ready all along).
func (c *Cluster) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var notReady []string
	for {
		var pass []string
		for i, n := range c.nodes {
			if n.Running() && !n.Paused() && !c.Ready(ctx, i) {
				pass = append(pass, n.Name)
			}
		}
		if ctx.Err() == nil {
			if len(pass) == 0 {
				return nil
			}
			notReady = pass
		}
		select {
		case <-ctx.Done():
			if len(notReady) == 0 {
				return fmt.Errorf("cluster: no readiness pass finished: %w", ctx.Err())
			}
			var b strings.Builder
			for _, name := range notReady {
				fmt.Fprintf(&b, "\n%s log %s:\n%s", name, c.nodeByName(name).LogPath, tail(c.nodeByName(name).LogPath))
			}
			return fmt.Errorf("cluster: %s not ready: %w%s", strings.Join(notReady, ", "), ctx.Err(), b.String())
		case <-tick.C:
		}
	}
}

func (c *Cluster) nodeByName(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Diagnostics fetches what explains a stuck node, for an evidence
// folder: its /readyz answer, its /v1/cluster status and a dump of its
// goroutines. Each part reports its own failure in place of its body.
func (c *Cluster) Diagnostics(ctx context.Context, i int) string {
	var b strings.Builder
	for _, path := range []string{"/readyz", "/v1/cluster", "/debug/pprof/goroutine?debug=2"} {
		fmt.Fprintf(&b, "==== GET %s\n", path)
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.nodes[i].Client+path, nil)
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
			continue
		}
		resp, err := c.probe.Do(req)
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		fmt.Fprintf(&b, "%d\n%s\n", resp.StatusCode, body)
		if err != nil {
			fmt.Fprintf(&b, "(body cut: %v)\n", err)
		}
	}
	return b.String()
}

// Status is the part of GET /v1/cluster the runner uses.
type Status struct {
	Name   string `json:"name"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	// Members is the member table as this node applied it.
	Members []struct {
		Name string `json:"name"`
	} `json:"members"`
}

// Lists reports whether the status's member table names name.
func (st Status) Lists(name string) bool {
	for _, m := range st.Members {
		if m.Name == name {
			return true
		}
	}
	return false
}

// Status asks node i for /v1/cluster.
func (c *Cluster) Status(ctx context.Context, i int) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.nodes[i].Client+"/v1/cluster", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.probe.Do(req)
	if err != nil {
		return st, fmt.Errorf("cluster: status of %s: %w", c.nodes[i].Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, fmt.Errorf("cluster: status of %s: %w", c.nodes[i].Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("cluster: status of %s: %d %s", c.nodes[i].Name, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("cluster: status of %s: %w", c.nodes[i].Name, err)
	}
	return st, nil
}

// Leader returns the index of the leader named by the running, unpaused
// node that reports the highest term, or -1 when none names one. It is a
// hint for the nemesis (the leader may change at any moment), never used
// to judge correctness.
func (c *Cluster) Leader(ctx context.Context) int {
	best, bestTerm := -1, uint64(0)
	for i, n := range c.nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		st, err := c.Status(ctx, i)
		if err != nil || st.Leader == "" || st.Term < bestTerm {
			continue
		}
		if l := c.nodeByName(st.Leader); l != nil {
			best, bestTerm = l.Index, st.Term
		}
	}
	return best
}

// SupportsFlag reports whether the binary's --help lists --name: the
// suite turns on features (snapshots) only where the build has them.
func SupportsFlag(ctx context.Context, bin, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput() // --help may exit non-zero
	if len(out) == 0 {
		return false, fmt.Errorf("cluster: %s --help printed nothing", bin)
	}
	return strings.Contains(string(out), "--"+name+" "), nil
}
