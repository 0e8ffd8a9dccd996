//go:build linux && amd64

package ebpf

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestAttachSelfInPIDNamespace runs the self-tracing tests again in a copy
// of this test binary started in a new PID namespace, where it is pid 1:
// the node-in-a-container case, where the kernel's global tgid differs
// from the one the process sees.
func TestAttachSelfInPIDNamespace(t *testing.T) {
	skipUnlessTracingPossible(t)
	if os.Getpid() == 1 {
		t.Skip("already in a child PID namespace")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^(TestAttachSelf|TestPairsByIDAcrossThreads|TestRegisterMetrics)$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "REQUIRE_EBPF_TESTS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if os.IsPermission(err) || strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("cannot create a PID namespace here: %v", err)
		}
		t.Fatalf("tests in a new PID namespace failed: %v\n%s", err, out)
	}
	for _, name := range []string{"TestAttachSelf", "TestPairsByIDAcrossThreads", "TestRegisterMetrics"} {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass in the new PID namespace:\n%s", name, out)
		}
	}
}
