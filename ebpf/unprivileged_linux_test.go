//go:build linux && amd64

package ebpf

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const childEnv = "EDGEKV_EBPF_TEST_UNPRIVILEGED_CHILD"

// TestUnprivilegedGetsOneClearError runs the attach path without
// privileges (as root: in a copy of this test binary run as user nobody)
// and checks it fails with one line wrapping ErrUnavailable that names the
// missing capabilities, both from Attach and from the trace command.
func TestUnprivilegedGetsOneClearError(t *testing.T) {
	if os.Getenv(childEnv) == "1" || os.Geteuid() != 0 {
		checkUnprivilegedErrors(t)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "ebpf.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestUnprivilegedGetsOneClearError$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+dir, "GOCACHE="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		// The child never ran (no CAP_SETUID here, or the temp dir is not
		// reachable by nobody): this test cannot run, tracing is not at
		// fault.
		t.Skipf("cannot start a child as user nobody: %v", err)
	}
	if err != nil {
		t.Fatalf("unprivileged child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestUnprivilegedGetsOneClearError") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
	t.Logf("child:\n%s", out)
}

func checkUnprivilegedErrors(t *testing.T) {
	tr, err := Attach(Options{})
	if err == nil {
		tr.Close()
		t.Skip("this unprivileged process can trace (file capabilities?): nothing to check")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Attach error %v does not wrap ErrUnavailable", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "CAP_BPF") || !strings.Contains(msg, "CAP_PERFMON") {
		t.Errorf("Attach error is not one line naming the capabilities: %q", msg)
	}
	t.Logf("Attach: %v", err)

	var stdout, stderr strings.Builder
	err = RunTraceCommand(context.Background(), []string{"--pid", "1"}, &stdout, &stderr)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("trace command error %v does not wrap ErrUnavailable", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("trace command printed %q before failing", stdout.String())
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
