// Package e2e runs the real edgekv binary: it builds it once with
// `go build`, starts processes on 127.0.0.1 with free ports and temporary
// data dirs, and talks to them over HTTP as a client would.
package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/internal/freeport"
)

// builds holds one binary per set of build tags, built once per run.
var builds struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
	errs  map[string]error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// binary builds edgekv once per test run (CGO_ENABLED=0, as shipped).
func binary(t *testing.T) string { return binaryWithTags(t, "") }

// binaryWithTags builds edgekv with the given -tags value, once per run.
func binaryWithTags(t *testing.T, tags string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.paths == nil {
		builds.paths, builds.errs = map[string]string{}, map[string]error{}
	}
	if p, ok := builds.paths[tags]; ok {
		return p
	}
	if err := builds.errs[tags]; err != nil {
		t.Fatal(err)
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "edgekv-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir = dir
	}
	path := filepath.Join(builds.dir, "edgekv"+strings.ReplaceAll(tags, ",", "-"))
	cmd := exec.Command("go", "build", "-tags", tags, "-o", path, "github.com/edgekv/edgekv")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		builds.errs[tags] = fmt.Errorf("go build -tags %q: %v\n%s", tags, err, out)
		t.Fatal(builds.errs[tags])
	}
	builds.paths[tags] = path
	return path
}

// freeAddr returns a loopback address with a port nobody listens on now,
// outside the ephemeral port range (freeport's doc says why).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc is one running edgekv process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	client string // host:port
	stderr *syncBuffer
	exited chan struct{}
	lines  chan string // stdout lines
	state  *os.ProcessState
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nodeFlags are the flags of a single node on free ports in dir.
func nodeFlags(t *testing.T, dir string) []string {
	return []string{
		"--data-dir", dir, "--listen-client", freeAddr(t), "--listen-peer", freeAddr(t),
		"--heartbeat-interval", "20ms", "--election-timeout", "500ms", "--request-timeout", "2s",
	}
}

// start runs edgekv with args and waits for its "serving" line.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := startAsync(t, args...)
	p.awaitServing()
	return p
}

// startAsync starts edgekv with args without waiting for it.
func startAsync(t *testing.T, args ...string) *proc {
	t.Helper()
	return startBinary(t, binary(t), args...)
}

// startBinary starts the binary at bin with args without waiting for it.
func startBinary(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startBinaryEnv(t, bin, nil, args...)
}

// startBinaryEnv is startBinary with extra environment variables.
func startBinaryEnv(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{}), lines: make(chan string, 16)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// awaitServing waits for the "serving" line and records the client address.
func (p *proc) awaitServing() {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.exited
			p.t.Fatalf("edgekv exited before serving (%v): %s", p.state, p.stderr.String())
		}
		// "edgekv: NAME serving clients on http://HOST:PORT, peers on ..."
		_, rest, found := strings.Cut(line, "http://")
		addr, _, _ := strings.Cut(rest, ",")
		if !found || addr == "" {
			p.t.Fatalf("unexpected first line %q", line)
		}
		p.client = addr
	case <-time.After(30 * time.Second):
		p.t.Fatalf("edgekv did not report serving in time: %s", p.stderr.String())
	}
}

// kill stops the process with SIGKILL (a crash) and waits for it.
func (p *proc) kill() {
	if p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// stop sends sig and returns the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("edgekv did not stop on %v: %s", sig, p.stderr.String())
	}
	return p.state.ExitCode()
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

type response struct {
	status int
	header http.Header
	body   string
}

func (p *proc) do(method, path string, body string, headers ...string) response {
	p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+p.client+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// must checks the status of a request and returns the response.
func (p *proc) must(status int, method, path, body string, headers ...string) response {
	p.t.Helper()
	r := p.do(method, path, body, headers...)
	if r.status != status {
		p.t.Fatalf("%s %s: status %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequest("GET", "http://"+p.client+"/readyz", nil)
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not ready in time: %v: %s", err, p.stderr.String())
		}
		<-tick.C
	}
}

// runOnce runs edgekv to completion (a command that must exit at once).
func runOnce(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("edgekv %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// raw sends a request exactly as given (the path is not parsed or
// escaped by a client library) and reads the response.
func (p *proc) raw(method, target, body string, headers ...string) response {
	p.t.Helper()
	conn, err := net.DialTimeout("tcp", p.client, 5*time.Second)
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, p.client, len(body))
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		p.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(rb)}
}
