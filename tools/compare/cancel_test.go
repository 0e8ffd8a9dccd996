package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childPIDs lists the live processes whose parent is this process.
func childPIDs(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		end := bytes.LastIndexByte(b, ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) > 1 && f[1] == self { // fields after the name: state, ppid
			kids = append(kids, pid)
		}
	}
	return kids
}

// TestCancelStopsClusters cancels a long run (as Ctrl-C does) and checks
// that it returns soon, with every server process it started stopped and
// reaped.
func TestCancelStopsClusters(t *testing.T) {
	bin := useFakeEdgekv(t)
	if kids := childPIDs(t); len(kids) != 0 {
		t.Fatalf("children before the run: %v", kids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"--systems", "edgekv", "--edgekv-bin", bin, "--open-rate", "100", "--repeat", "3",
		"--duration", "20s", "--warmup", "0s", "--key-space", "200"}, &stdout, &stderr, testLogger(t))
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("cancelled run took %v", took)
	}
	if code == 0 && !strings.Contains(stdout.String(), "put, 1 client") {
		t.Fatalf("exit %d without a table:\n%s", code, stdout.String())
	}
	if kids := childPIDs(t); len(kids) != 0 {
		t.Fatalf("server processes left after a cancelled run: %v", kids)
	}
}
