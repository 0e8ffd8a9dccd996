package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgekv/edgekv/faultproxy"
)

// clusterSize is the number of nodes of each system.
const clusterSize = 3

// Bounds on waiting for processes.
const (
	healthTimeout   = 60 * time.Second
	healthPoll      = 100 * time.Millisecond
	stopGrace       = 10 * time.Second
	healthReqTimout = 2 * time.Second
	logTailBytes    = 2048
)

// node is one server process this tool started.
type node struct {
	name       string
	clientAddr string // host:port of the client API
	peerAddr   string // host:port the node listens on for peers
	logPath    string
	cmd        *exec.Cmd
	exited     chan struct{} // closed when the process has been waited for
	waitErr    error         // valid after exited is closed
}

// cluster is a set of nodes of one system, plus the delaying proxies in
// front of them when peer latency was asked for. The tool owns every
// process and proxy in it and stops them in stop.
type cluster struct {
	system  string
	nodes   []*node
	proxies []*faultproxy.Proxy
	log     *slog.Logger
}

func (c *cluster) pids() []int {
	pids := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		pids[i] = n.cmd.Process.Pid
	}
	return pids
}

func (c *cluster) clientEndpoints() []string {
	eps := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		eps[i] = n.clientAddr
	}
	return eps
}

// freePorts reserves n distinct loopback ports by listening on port 0
// with all listeners open at once, then releases them for the servers.
// Another process could take one in between; startup then fails clearly.
func freePorts(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// startNode starts one process with its output in logPath.
func startNode(bin string, args []string, n *node, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: creating log file: %w", n.name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a Ctrl-C at the terminal reaches this
	// tool only and the servers are stopped in order by stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: starting %s: %w", n.name, bin, err)
	}
	n.cmd, n.logPath, n.exited = cmd, logPath, make(chan struct{})
	go func() {
		n.waitErr = cmd.Wait()
		f.Close()
		close(n.exited)
	}()
	return nil
}

// stop sends SIGTERM to every node this cluster started, waits for each to
// exit (SIGKILL after stopGrace), then closes the proxies.
func (c *cluster) stop() error {
	var errs []error
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
			continue
		default:
		}
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("%s %s (pid %d): SIGTERM: %w", c.system, n.name, n.cmd.Process.Pid, err))
		}
	}
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
		case <-time.After(stopGrace):
			c.log.Warn("node did not stop after SIGTERM; killing it", "system", c.system, "node", n.name, "pid", n.cmd.Process.Pid)
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	}
	for _, p := range c.proxies {
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing proxy %s: %w", p.Addr(), err))
		}
	}
	return errors.Join(errs...)
}

// waitHealthy polls check on every node until all pass, a node exits, or
// healthTimeout passes.
func (c *cluster) waitHealthy(ctx context.Context, check func(ctx context.Context, n *node) error) error {
	deadline := time.Now().Add(healthTimeout)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	var lastErr error
	for {
		lastErr = nil
		for _, n := range c.nodes {
			select {
			case <-n.exited:
				return fmt.Errorf("%s node %s exited during startup (%v); end of its log:\n%s", c.system, n.name, n.waitErr, logTail(n.logPath))
			default:
			}
			if err := check(ctx, n); err != nil {
				lastErr = fmt.Errorf("%s node %s: %w", c.system, n.name, err)
				break
			}
		}
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s cluster not healthy after %v: %w; end of %s's log:\n%s", c.system, healthTimeout, lastErr, c.nodes[0].name, logTail(c.nodes[0].logPath))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// logTail returns the end of a log file, for error messages.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > logTailBytes {
		_, _ = f.Seek(st.Size()-logTailBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, logTailBytes))
	return string(b)
}

// httpCheck GETs path on the node's client address and wants 200 and, when
// wantBody is not empty, a body containing it.
func httpCheck(path, wantBody string) func(ctx context.Context, n *node) error {
	client := &http.Client{Timeout: healthReqTimout}
	return func(ctx context.Context, n *node) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.clientAddr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		if wantBody != "" && !strings.Contains(string(body), wantBody) {
			return fmt.Errorf("GET %s: body %q lacks %q", path, body, wantBody)
		}
		return nil
	}
}

// startEtcd starts a 3-node etcd cluster with its data under dir:
// fsync on and every other setting at etcd's default.
func startEtcd(ctx context.Context, bin, dir, token string, log *slog.Logger) (*cluster, error) {
	ports, err := freePorts(2 * clusterSize)
	if err != nil {
		return nil, err
	}
	c := &cluster{system: sysEtcd, log: log}
	var initial []string
	for i := range clusterSize {
		n := &node{name: fmt.Sprintf("etcd%d", i+1), clientAddr: loopback(ports[2*i]), peerAddr: loopback(ports[2*i+1])}
		c.nodes = append(c.nodes, n)
		initial = append(initial, n.name+"=http://"+n.peerAddr)
	}
	for _, n := range c.nodes {
		args := etcdArgs(n, filepath.Join(dir, n.name), strings.Join(initial, ","), token)
		if err := startNode(bin, args, n, filepath.Join(dir, n.name+".log")); err != nil {
			return c, err
		}
		log.Info("started etcd node", "node", n.name, "pid", n.cmd.Process.Pid, "client", n.clientAddr, "peer", n.peerAddr)
	}
	if err := c.waitHealthy(ctx, httpCheck("/health", `"health":"true"`)); err != nil {
		return c, err
	}
	return c, nil
}

func etcdArgs(n *node, dataDir, initialCluster, token string) []string {
	return []string{
		"--name", n.name,
		"--data-dir", dataDir,
		"--listen-client-urls", "http://" + n.clientAddr,
		"--advertise-client-urls", "http://" + n.clientAddr,
		"--listen-peer-urls", "http://" + n.peerAddr,
		"--initial-advertise-peer-urls", "http://" + n.peerAddr,
		"--initial-cluster", initialCluster,
		"--initial-cluster-token", token,
		"--initial-cluster-state", "new",
		// Structured logs (3.4 defaults to the deprecated capnslog); the
		// logger does not change what the server does per request.
		"--logger", "zap", "--log-outputs", "stderr",
	}
}

// startEdgekv starts a 3-node edgekv cluster of bin with its data under
// dir, using only SPEC §1's flags. With peerOneWay > 0, every node gets
// a delaying proxy in front of its peer port, adding peerOneWay to each
// direction of every connection into that node (see proxyLayout).
func startEdgekv(ctx context.Context, bin, dir, token string, extraArgs []string, peerOneWay time.Duration, log *slog.Logger) (*cluster, error) {
	ports, err := freePorts(2 * clusterSize)
	if err != nil {
		return nil, err
	}
	c := &cluster{system: sysEdgekv, log: log}
	advertise := make([]string, clusterSize)
	for i := range clusterSize {
		n := &node{name: fmt.Sprintf("n%d", i+1), clientAddr: loopback(ports[2*i]), peerAddr: loopback(ports[2*i+1])}
		c.nodes = append(c.nodes, n)
		advertise[i] = n.peerAddr
	}
	if peerOneWay > 0 {
		for i, n := range c.nodes {
			p, err := faultproxy.Start("127.0.0.1:0", n.peerAddr, uint64(i+1), log.With("proxy", "to-"+n.name))
			if err != nil {
				return c, fmt.Errorf("starting the peer proxy in front of %s: %w", n.name, err)
			}
			p.SetFaults(faultproxy.Faults{Latency: peerOneWay})
			c.proxies = append(c.proxies, p)
			advertise[i] = p.Addr()
		}
	}
	var initial []string
	for i, n := range c.nodes {
		initial = append(initial, n.name+"="+advertise[i])
	}
	for i, n := range c.nodes {
		args := edgekvArgs(n, filepath.Join(dir, n.name), advertise[i], strings.Join(initial, ","), token, extraArgs)
		if err := startNode(bin, args, n, filepath.Join(dir, n.name+".log")); err != nil {
			return c, err
		}
		log.Info("started edgekv node", "node", n.name, "pid", n.cmd.Process.Pid, "client", n.clientAddr, "peer", n.peerAddr, "advertised-peer", advertise[i])
	}
	if err := c.waitHealthy(ctx, httpCheck("/readyz", "")); err != nil {
		return c, err
	}
	return c, nil
}

// edgekvArgs builds a node's command line from SPEC §1's flags only.
// advertisePeer differs from the listen address when a proxy stands in
// front of the node: the other nodes then dial the proxy.
func edgekvArgs(n *node, dataDir, advertisePeer, initialCluster, token string, extra []string) []string {
	args := []string{
		"--name", n.name,
		"--data-dir", dataDir,
		"--listen-client", n.clientAddr,
		"--listen-peer", n.peerAddr,
	}
	if advertisePeer != n.peerAddr {
		args = append(args, "--advertise-peer", advertisePeer)
	}
	args = append(args, "--initial-cluster", initialCluster, "--initial-cluster-token", token)
	return append(args, extra...)
}
