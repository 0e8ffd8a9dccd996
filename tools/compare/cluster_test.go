package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/loadgen"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// tinyOptions are options for test runs: short rows, one repetition.
func tinyOptions(t *testing.T, args ...string) *options {
	t.Helper()
	base := []string{"--repeat", "1", "--duration", "300ms", "--warmup", "0s", "--key-space", "200", "--timeout", "5s", "--install-etcd=false"}
	o, err := parseOptions(append(base, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// checkRowsOnSession runs every kind of row once on a started session and
// checks that each did work without errors.
func checkRowsOnSession(t *testing.T, ctx context.Context, s *session) {
	t.Helper()
	if err := s.preload(ctx); err != nil {
		t.Fatal(err)
	}
	specs := comparisonRows(0.5, 8)
	for _, spec := range []rowSpec{
		{ID: "put", Workload: loadgen.WorkloadPut, Clients: 4},
		specs[4], // linearizable gets, 64 clients
		specs[5], // batches of 100
		{ID: "open", Workload: loadgen.WorkloadPut, Clients: 8, OpenFraction: 0.5},
	} {
		rate := 0.0
		if spec.openLoop() {
			rate = 100
		}
		smp, err := s.measure(ctx, spec, rate)
		if err != nil {
			t.Fatalf("%s: %v", spec.ID, err)
		}
		if smp.OK == 0 || smp.Errors != 0 || smp.P50Us <= 0 || smp.P99Us < smp.P50Us {
			t.Fatalf("%s: %+v", spec.ID, smp)
		}
		if spec.Workload == loadgen.WorkloadBatch && smp.KeysPerSec < 99*smp.OKPerSec {
			t.Fatalf("%s: %v keys/s for %v batches/s", spec.ID, smp.KeysPerSec, smp.OKPerSec)
		}
		if spec.openLoop() && (smp.RateAsked != 100 || smp.OK > 40) {
			t.Fatalf("open loop at 100/s for 300ms: %+v", smp)
		}
	}
}

func checkStopped(t *testing.T, cl *cluster) {
	t.Helper()
	pids := cl.pids()
	if err := cl.stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !pidGone(pid) {
			t.Errorf("pid %d still exists after stop", pid)
		}
	}
}

// TestFakeEdgekvCluster starts three fake edgekv nodes with SPEC §1's
// flags and runs every kind of row through loadgen.
func TestFakeEdgekvCluster(t *testing.T) {
	bin := useFakeEdgekv(t)
	o := tinyOptions(t, "--edgekv-bin", bin)
	ctx := context.Background()
	s, err := startSession(ctx, o, sysEdgekv, bin, t.TempDir(), 0, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.stop()
	if len(s.cl.proxies) != 0 {
		t.Fatalf("%d proxies without added latency", len(s.cl.proxies))
	}
	for _, n := range s.cl.nodes {
		waitPeerRTT(t, n, func(ms float64) bool { return ms < 25 }, "under 25 ms without proxies")
	}
	checkRowsOnSession(t, ctx, s)
	checkStopped(t, s.cl)
}

// waitPeerRTT waits until the fake node has seen, towards each of its two
// peers, a round trip that satisfies ok.
func waitPeerRTT(t *testing.T, n *node, ok func(ms float64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rtts := fakePeerRTT(t, n.clientAddr)
		good := 0
		for _, ms := range rtts {
			if ok(ms) {
				good++
			}
		}
		if good == clusterSize-1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: peer round trips %v ms, want every one %s", n.name, rtts, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestFakeEdgekvPeerProxies checks the proxy layout of the rtt mode: one
// proxy in front of every node's peer port, named by --advertise-peer and
// --initial-cluster, adds the asked round trip (not more: a path through
// two proxies would double it) between every pair.
func TestFakeEdgekvPeerProxies(t *testing.T) {
	bin := useFakeEdgekv(t)
	o := tinyOptions(t, "--edgekv-bin", bin)
	s, err := startSession(context.Background(), o, sysEdgekv, bin, t.TempDir(), 25*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.stop()
	if len(s.cl.proxies) != clusterSize {
		t.Fatalf("%d proxies, want one per node", len(s.cl.proxies))
	}
	for _, n := range s.cl.nodes {
		// The minimum never goes below the added delay; it comes close to
		// it once a ping was not slowed by the machine.
		waitPeerRTT(t, n, func(ms float64) bool { return ms >= 50 && ms < 90 }, "in [50, 90) ms")
	}
	for _, p := range s.cl.proxies {
		if st := p.Stats(); st.Accepted == 0 || st.BytesForwarded[0] == 0 || st.BytesForwarded[1] == 0 {
			t.Errorf("proxy %s carried nothing: %+v", p.Addr(), st)
		}
	}
	checkStopped(t, s.cl)
}

// TestRunRTTModeWithFake runs the whole rtt mode against fake nodes.
func TestRunRTTModeWithFake(t *testing.T) {
	bin := useFakeEdgekv(t)
	jsonPath := t.TempDir() + "/rtt.json"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--mode", "rtt", "--edgekv-bin", bin, "--rtt-clients", "6,12", "--repeat", "1",
		"--duration", "300ms", "--warmup", "0s", "--json", jsonPath}, &stdout, &stderr, testLogger(t))
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr.String(), stdout.String())
	}
	var rep report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.RTTRows) != 2 || rep.RTTRows[0].Clients != 6 || rep.RTTRows[1].Clients != 12 {
		t.Fatalf("rtt rows %+v", rep.RTTRows)
	}
	r := rep.RTTRows[0]
	// The fake names n1 as leader; worker i talks to node i mod 3.
	if r.Leader != "n1" || r.LeaderClients != 2 || r.IdealOpsSec != 2/0.05+4/0.1 || len(r.Samples) != 1 || r.Median.OK == 0 {
		t.Fatalf("rtt row %+v", r)
	}
	// The fakes ping each other through the proxies all along.
	if r.ProxyLateUs <= 0 || !strings.Contains(stdout.String(), "the delaying proxies wrote chunks") {
		t.Fatalf("proxy lateness %v µs not measured or not printed:\n%s", r.ProxyLateUs, stdout.String())
	}
	if !strings.Contains(stdout.String(), "50ms round trip added") {
		t.Fatalf("table:\n%s", stdout.String())
	}
}

// requireEtcd returns the etcd binary, or skips the test when etcd is not
// installed (fails instead when REQUIRE_ETCD=1).
func requireEtcd(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("REQUIRE_ETCD") == "1" {
			t.Fatalf("REQUIRE_ETCD=1 but etcd is not installed: %v", err)
		}
		t.Skip("etcd is not installed (apt-get install etcd-server); set REQUIRE_ETCD=1 to make this a failure")
	}
	return p
}

// TestEtcdCluster starts a real 3-node etcd cluster, runs every kind of
// row through the etcd driver and stops it.
func TestEtcdCluster(t *testing.T) {
	bin := requireEtcd(t)
	o := tinyOptions(t, "--systems", "etcd")
	ctx := context.Background()
	s, err := startSession(ctx, o, sysEtcd, bin, t.TempDir(), 0, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.stop()
	checkRowsOnSession(t, ctx, s)
	// The servers did the work: their CPU time over a put row is counted.
	smp, err := s.measure(ctx, rowSpec{ID: "cpu", Workload: loadgen.WorkloadPut, Clients: 16}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !(smp.ServerCPUUsPerOp > 0) || !(smp.LoadgenCPUUsPerOp > 0) {
		t.Fatalf("CPU per op: server %v, loadgen %v", smp.ServerCPUUsPerOp, smp.LoadgenCPUUsPerOp)
	}
	checkStopped(t, s.cl)
}

// TestRunCompareEtcdAndFake runs the whole comparison, etcd for real and
// a fake edgekv, and checks the table and the JSON.
func TestRunCompareEtcdAndFake(t *testing.T) {
	requireEtcd(t)
	bin := useFakeEdgekv(t)
	jsonPath := t.TempDir() + "/out.json"
	var stdout, stderr bytes.Buffer
	args := []string{"--edgekv-bin", bin, "--repeat", "1", "--duration", "300ms", "--warmup", "0s", "--key-space", "200", "--install-etcd=false", "--json", jsonPath}
	if code := run(context.Background(), args, &stdout, &stderr, testLogger(t)); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr.String(), stdout.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 7 || !strings.Contains(rep.EtcdVersion, "3.") || rep.OpenRate <= 0 {
		t.Fatalf("report: %d rows, etcd %q, open rate %v", len(rep.Rows), rep.EtcdVersion, rep.OpenRate)
	}
	for _, r := range rep.Rows {
		for _, sys := range []string{sysEtcd, sysEdgekv} {
			sr := r.Systems[sys]
			if sr == nil || len(sr.Samples) != 1 || sr.Note != "" || sr.Median.OK == 0 {
				t.Fatalf("%s %s: %+v", r.Spec.ID, sys, sr)
			}
		}
	}
	// The open-loop row ran at half of etcd's best put row, on both.
	open := rep.Rows[6]
	if want := rep.OpenRate; open.Systems[sysEtcd].Median.RateAsked != want || open.Systems[sysEdgekv].Median.RateAsked != want {
		t.Fatalf("open rates %v / %v, want %v", open.Systems[sysEtcd].Median.RateAsked, open.Systems[sysEdgekv].Median.RateAsked, want)
	}
	if got := tableLine(t, stdout.String(), "put, 64 clients", "ops/s"); len(got) != 3 || got[2] == "-" {
		t.Fatalf("put, 64 clients: %v in\n%s", got, stdout.String())
	}
}
