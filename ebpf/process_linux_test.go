//go:build linux && amd64

package ebpf

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/ebpf/internal/gobuild"
)

// target is a running tracetarget process (a stand-in for a node, built
// with its symbol table like a release binary).
type target struct {
	cmd *exec.Cmd
	pid int
	in  io.WriteCloser
	out *bufio.Scanner
}

func startTarget(t testing.TB, buildFlags ...string) *target {
	t.Helper()
	bin, err := gobuild.Build(t.TempDir(), "github.com/edgekv/edgekv/ebpf/internal/tracetarget", buildFlags...)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		in.Close() // EOF on stdin ends the target
		if err := cmd.Wait(); err != nil {
			t.Errorf("target exited: %v", err)
		}
	})
	if !tg.out.Scan() {
		t.Fatalf("target printed nothing: %v", tg.out.Err())
	}
	if _, err := fmt.Sscanf(tg.out.Text(), "ready %d", &tg.pid); err != nil {
		t.Fatalf("target said %q: %v", tg.out.Text(), err)
	}
	return tg
}

// do sends one command and waits for its answer.
func (tg *target) do(t testing.TB, command string) {
	t.Helper()
	if _, err := fmt.Fprintln(tg.in, command); err != nil {
		t.Fatalf("sending %q: %v", command, err)
	}
	if !tg.out.Scan() {
		t.Fatalf("%q: no answer: %v", command, tg.out.Err())
	}
	if got := tg.out.Text(); got != "ok" {
		t.Fatalf("%q: %s", command, got)
	}
}

// TestAttachOtherProcess traces another process by PID and by symbol, the
// way `edgekv trace --pid` does.
func TestAttachOtherProcess(t *testing.T) {
	skipUnlessTracingPossible(t)
	tg := startTarget(t)
	tr := attachOrSkip(t, Options{PID: tg.pid})
	if tr.PID() != tg.pid {
		t.Fatalf("PID() = %d, want %d", tr.PID(), tg.pid)
	}
	before := snapshot(t, tr)
	tg.do(t, "batches 250")
	tg.do(t, "fsync 30 "+t.TempDir())
	d := snapshot(t, tr).Sub(before)
	checkBatches(t, &d, 250)
	if got := d.Syscalls[1].Count(); got != 30 {
		t.Errorf("fdatasync count %d, want 30", got)
	}
	if d.Syscalls[1].SumNs == 0 || maxSlot(&d.Syscalls[1]) >= 30 {
		t.Errorf("fdatasync latency implausible: sum %dns, max slot %d", d.Syscalls[1].SumNs, maxSlot(&d.Syscalls[1]))
	}
	// This (tracing) process's own fdatasyncs are not counted.
	fdatasyncs(t, t.TempDir(), 5)
	d2 := snapshot(t, tr).Sub(before)
	if got := d2.Syscalls[1].Count(); got != 30 {
		t.Errorf("fdatasync count %d after the tracer's own syncs, want 30", got)
	}
}

// TestAttachStrippedBinary: a target built with -ldflags "-s -w" has no
// symbols to attach the markers by; the error must say so.
func TestAttachStrippedBinary(t *testing.T) {
	skipUnlessTracingPossible(t)
	tg := startTarget(t, "-ldflags=-s -w")
	tr, err := Attach(Options{PID: tg.pid})
	if err == nil {
		tr.Close()
		t.Fatal("attached to a stripped binary")
	}
	if !strings.Contains(err.Error(), `-ldflags "-s -w"`) || !strings.Contains(err.Error(), "symbol") {
		t.Fatalf("error does not explain the missing symbols: %v", err)
	}
}

// lockedBuffer is an io.Writer safe to read while the command writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTraceCommand runs the `edgekv trace` body against a busy target and
// checks the printed histograms.
func TestTraceCommand(t *testing.T) {
	skipUnlessTracingPossible(t)
	tg := startTarget(t)
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunTraceCommand(ctx, []string{"--pid", fmt.Sprint(tg.pid), "--interval", "300ms", "--count", "3"}, &stdout, &stderr)
	}()
	// Keep the target busy until the command has printed its intervals.
	dir := t.TempDir()
	deadline := time.Now().Add(25 * time.Second)
	var err error
	for finished := false; !finished; {
		if time.Now().After(deadline) {
			t.Fatalf("trace command did not finish; output so far:\n%s", stdout.String())
		}
		if !strings.HasPrefix(stdout.String(), "Tracing pid") {
			select {
			case err = <-done:
				finished = true
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		tg.do(t, "batches 50")
		tg.do(t, "fsync 5 "+dir)
		select {
		case err = <-done:
			finished = true
		default:
		}
	}
	out := stdout.String()
	if err != nil {
		t.Fatalf("RunTraceCommand: %v\nstderr: %s\nstdout: %s", err, stderr.String(), out)
	}
	t.Logf("output:\n%s", out)
	if got := strings.Count(out, "  last 300ms"); got != 3 {
		t.Errorf("printed %d intervals, want 3", got)
	}
	for _, want := range []string{
		"stage received -> proposed: count ",
		"stage applied -> answered: count ",
		"batch received -> answered: count ",
		"syscall fdatasync: count ",
		"latency : count    distribution",
		"marker hits: received ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestTraceCommandFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--pid", "0"},
		{"--pid", "-3"},
		{"--pid", "1", "--interval", "1ns"},
		{"--pid", "1", "--interval", "2h"},
		{"--pid", "1", "--count", "-1"},
		{"--pid", "1", "extra"},
		{"--bogus"},
	} {
		var stdout, stderr bytes.Buffer
		err := RunTraceCommand(context.Background(), args, &stdout, &stderr)
		if err == nil {
			t.Errorf("args %q: no error", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("args %q: printed %q to stdout", args, stdout.String())
		}
	}
}

// TestTraceCommandTargetExits: when the traced process exits, the command
// ends with an error saying so instead of printing empty intervals
// forever.
func TestTraceCommandTargetExits(t *testing.T) {
	skipUnlessTracingPossible(t)
	tg := startTarget(t)
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunTraceCommand(ctx, []string{"--pid", fmt.Sprint(tg.pid), "--interval", "50ms"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(stdout.String(), "Tracing pid") {
		if time.Now().After(deadline) {
			t.Fatal("trace command did not start")
		}
		select {
		case err := <-done:
			t.Fatalf("trace command ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := fmt.Fprintln(tg.in, "quit"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("trace command returned %v, want an error saying the pid exited", err)
		}
	case <-ctx.Done():
		t.Fatal("trace command still running after its target exited")
	}
}
