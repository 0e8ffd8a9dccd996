package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/loadgen"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name       string
		line       string
		user, sys  uint64
		wantErrSub string
	}{
		{name: "plain", line: "1234 (etcd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1500 320 0 0 20 0 12 0 100 0 0", user: 1500, sys: 320},
		{name: "comm with spaces and parens", line: "99 (a) b) (c d) R 1 2 3 4 5 6 7 8 9 10 77 88 0 0", user: 77, sys: 88},
		{name: "trailing newline", line: "5 (x) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0\n", user: 3, sys: 4},
		{name: "no command name", line: "5 x S 1 1 1 0 -1 0 0 0 0 0 3 4", wantErrSub: "command name"},
		{name: "too few fields", line: "5 (x) S 1 1 1", wantErrSub: "fields"},
		{name: "bad utime", line: "5 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 4 0 0", wantErrSub: "utime"},
		{name: "bad stime", line: "5 (x) S 1 1 1 0 -1 0 0 0 0 0 3 -4 0 0", wantErrSub: "stime"},
		{name: "empty", line: "", wantErrSub: "command name"},
		{name: "paren order", line: "5 )x( S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0", wantErrSub: "command name"},
		{name: "oversized", line: "5 (x) " + strings.Repeat("1 ", maxStatBytes), wantErrSub: "bound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.line))
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.userTicks != tc.user || got.systemTicks != tc.sys {
				t.Fatalf("got user %d sys %d, want %d %d", got.userTicks, got.systemTicks, tc.user, tc.sys)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1234 (etcd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1500 320 0 0"))
	f.Add([]byte("99 (a) b) (c d) R 1 2 3 4 5 6 7 8 9 10 77 88"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseProcStat(b) // must not panic
	})
}

// TestReadProcCPUSelf reads this process's own stat and checks that
// burning CPU makes the figure grow: the parser finds the right fields.
func TestReadProcCPUSelf(t *testing.T) {
	s := newCPUSampler()
	if s.ticksPerSec == 0 {
		t.Fatal("no clock tick rate")
	}
	pid := os.Getpid()
	before, err := s.sample([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 1.0
	for {
		for range 1_000_000 {
			x = math.Sqrt(x + 1)
		}
		after, err := s.sample([]int{pid})
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time of a busy process grew by only %v in 10s (x=%v)", after-before, x)
		}
	}
	if _, err := s.sample([]int{1 << 30}); err == nil {
		t.Fatal("reading a pid that cannot exist succeeded")
	}
}

func TestParseAuxvClockTicks(t *testing.T) {
	aux := func(pairs ...uint64) []byte {
		b := make([]byte, 8*len(pairs))
		for i, v := range pairs {
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
		return b
	}
	if hz, err := parseAuxvClockTicks(aux(6, 4096, atClkTck, 100, 0, 0)); err != nil || hz != 100 {
		t.Fatalf("got %d, %v; want 100", hz, err)
	}
	if _, err := parseAuxvClockTicks(aux(6, 4096, 0, 0, atClkTck, 100)); err == nil {
		t.Fatal("AT_CLKTCK after the terminator was found")
	}
	if _, err := parseAuxvClockTicks(aux(6, 4096)[:12]); err == nil {
		t.Fatal("truncated auxv without AT_CLKTCK gave no error")
	}
	if _, err := parseAuxvClockTicks(make([]byte, maxAuxvBytes+16)); err == nil {
		t.Fatal("oversized auxv accepted")
	}
	if hz, err := clockTicksFromAuxv("/proc/self/auxv"); err != nil || hz == 0 {
		t.Fatalf("this machine's auxv: %d, %v", hz, err)
	}
}

func TestMedian(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{nan, 7, 1}, 4},
		{[]float64{9, nan, 1, 5}, 5},
	}
	for _, tc := range tests {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
	if got := median([]float64{nan}); !math.IsNaN(got) {
		t.Errorf("median(NaN) = %v, want NaN", got)
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 || in[1] != 1 {
		t.Error("median reordered its input")
	}
}

func TestMedianSample(t *testing.T) {
	ss := []sample{
		{OKPerSec: 100, P50Us: 10, P99Us: 900, ServerCPUUsPerOp: 50, OK: 10, Errors: 1},
		{OKPerSec: 300, P50Us: 30, P99Us: 100, ServerCPUUsPerOp: math.NaN(), OK: 20},
		{OKPerSec: 200, P50Us: 20, P99Us: 500, ServerCPUUsPerOp: 70, OK: 30, Errors: 2},
	}
	m := medianSample(ss)
	if m.OKPerSec != 200 || m.P50Us != 20 || m.P99Us != 500 || m.ServerCPUUsPerOp != 60 {
		t.Fatalf("medians: %+v", m)
	}
	if m.OK != 60 || m.Errors != 3 {
		t.Fatalf("sums: ok %d errors %d, want 60 and 3", m.OK, m.Errors)
	}
}

func TestSampleFrom(t *testing.T) {
	res := &loadgen.Result{OK: 1000, Errors: 2, OKPerSec: 500, KeysPerSec: 50000,
		Latency: map[string]loadgen.LatencySummary{"all": {P50Us: 1200, P99Us: 9000}},
		CPU:     loadgen.CPUUsage{PerRequestUs: 33}}
	put := sampleFrom(rowSpec{Workload: loadgen.WorkloadPut}, res, 0.5)
	if put.ServerCPUUsPerOp != 500 || put.P50Us != 1200 || put.P99Us != 9000 || put.LoadgenCPUUsPerOp != 33 || put.Errors != 2 {
		t.Fatalf("put sample: %+v", put)
	}
	batch := sampleFrom(rowSpec{Workload: loadgen.WorkloadBatch, BatchSize: 100}, res, 0.5)
	if batch.ServerCPUUsPerOp != 5 {
		t.Fatalf("batch CPU per key = %v, want 5", batch.ServerCPUUsPerOp)
	}
	none := sampleFrom(rowSpec{Workload: loadgen.WorkloadPut}, &loadgen.Result{}, 0.5)
	if !math.IsNaN(none.ServerCPUUsPerOp) {
		t.Fatalf("CPU per op with no successes = %v, want NaN", none.ServerCPUUsPerOp)
	}
}

func TestGainAndFormat(t *testing.T) {
	if g := gain(1000, 10000, true); g != 10 {
		t.Errorf("throughput gain = %v, want 10", g)
	}
	if g := gain(2, 0.5, false); g != 4 {
		t.Errorf("latency gain = %v, want 4", g)
	}
	if g := gain(2, 8, false); g != 0.25 {
		t.Errorf("worse latency gain = %v, want 0.25", g)
	}
	for _, pair := range [][2]float64{{math.NaN(), 1}, {1, math.NaN()}, {0, 1}, {1, 0}} {
		if g := gain(pair[0], pair[1], true); !math.IsNaN(g) {
			t.Errorf("gain(%v) = %v, want NaN", pair, g)
		}
	}
	for v, want := range map[float64]string{12345.6: "12346", 123.45: "123.5", 1.234: "1.23", math.NaN(): "-", math.Inf(1): "-"} {
		if got := formatFigure(v); got != want {
			t.Errorf("formatFigure(%v) = %q, want %q", v, got, want)
		}
	}
	if got := formatGain(10.456); got != "10.46x" {
		t.Errorf("formatGain = %q", got)
	}
	if got := formatGain(math.NaN()); got != "-" {
		t.Errorf("formatGain(NaN) = %q", got)
	}
}

// tableLine finds the line of figure name after the line that starts row
// label, and returns its fields after the figure's name.
func tableLine(t *testing.T, table, label, figure string) []string {
	t.Helper()
	lines := strings.Split(table, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, label) {
			continue
		}
		for _, m := range lines[i:] {
			if idx := strings.Index(m, figure); idx >= 0 {
				return strings.Fields(m[idx+len(figure):])
			}
		}
	}
	t.Fatalf("no %q line under %q in:\n%s", figure, label, table)
	return nil
}

func TestWriteTable(t *testing.T) {
	rows := newReportRows(comparisonRows(0.5, 256))
	put1, batch := rows[0], rows[5]
	put1.Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 940, P50Us: 1000, P99Us: 4000, ServerCPUUsPerOp: 1300}}
	put1.Systems[sysEdgekv] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 9400, P50Us: 250, P99Us: 8000, ServerCPUUsPerOp: 130}}
	batch.Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{KeysPerSec: 11000, OKPerSec: 110, P50Us: 1, P99Us: 1, ServerCPUUsPerOp: 80, Errors: 7}}
	batch.Systems[sysEdgekv] = &systemRow{Note: "did not start: no binary"}
	open := rows[6]
	open.Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{RateAsked: 500, P50Us: 2000, P99Us: 50000, ServerCPUUsPerOp: 900}}
	open.Systems[sysEdgekv] = &systemRow{Samples: []sample{{}}, Median: sample{RateAsked: 500, P50Us: 1000, P99Us: 5000, ServerCPUUsPerOp: 90}}
	var b bytes.Buffer
	if err := writeTable(&b, rows, 3); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	check := func(label, figure string, want ...string) {
		t.Helper()
		got := tableLine(t, out, label, figure)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s / %s: got %v, want %v", label, figure, got, want)
		}
	}
	check("put, 1 client", "ops/s", "940.0", "9400", "10.00x")
	check("put, 1 client", "p50 ms", "1.00", "0.25", "4.00x")
	check("put, 1 client", "p99 ms", "4.00", "8.00", "0.50x")
	check("put, 1 client", "server CPU µs/op", "1300", "130.0", "10.00x")
	check("batch of 100 puts, 16 clients", "keys/s", "11000", "-", "-")
	check("batch of 100 puts, 16 clients", "server CPU µs/key", "80.00", "-", "-")
	check("put, 16 clients", "ops/s", "-", "-", "-")
	check("open-loop put at 50% of etcd max", "rate asked/s", "500.0", "500.0", "-")
	check("open-loop put at 50% of etcd max", "p99 ms", "50.00", "5.00", "10.00x")
	for _, want := range []string{"medians of 3 repetitions", "edgekv: did not start: no binary", "etcd: 7 failed requests", "open-loop put at 50% of etcd max"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestMaxPutRate(t *testing.T) {
	rows := newReportRows(comparisonRows(0.5, 256))
	rows[1].Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 3000}}
	rows[3].Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 4000}}
	rows[4].Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 9000}} // gets: not a put rate
	rows[6].Systems[sysEtcd] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 8000}} // open loop
	rows[2].Systems[sysEdgekv] = &systemRow{Samples: []sample{{}}, Median: sample{OKPerSec: 50000}}
	if got := maxPutRate(rows, sysEtcd); got != 4000 {
		t.Fatalf("maxPutRate = %v, want 4000", got)
	}
	if got := maxPutRate(newReportRows(comparisonRows(0.5, 256)), sysEtcd); got != 0 {
		t.Fatalf("maxPutRate with nothing measured = %v, want 0", got)
	}
}

func TestComparisonRows(t *testing.T) {
	rows := comparisonRows(0.5, 128)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	if got, want := strings.Join(ids, " "), "put-c1 put-c16 put-c64 put-c256 get-c64 batch100-c16 open-put"; got != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
	if r := rows[6]; !r.openLoop() || r.Clients != 128 || r.Workload != loadgen.WorkloadPut {
		t.Fatalf("open row %+v", r)
	}
	if r := rows[5]; r.BatchSize != 100 || r.Clients != 16 || r.Workload != loadgen.WorkloadBatch {
		t.Fatalf("batch row %+v", r)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"--edgekv-bin", "/x/edgekv"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Mode != modeCompare || o.Repeat != 3 || o.Duration != 10*time.Second || o.ValueBytes != 256 ||
		!o.runs(sysEtcd) || !o.runs(sysEdgekv) || o.OpenFraction != 0.5 || o.RTT != 50*time.Millisecond ||
		len(o.RTTClients) != 2 || o.RTTClients[0] != 256 || o.RTTClients[1] != 1024 {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseOptions([]string{"--systems", "etcd", "--repeat", "1", "--edgekv-args", "--log-level  warn"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.runs(sysEdgekv) || !o.runs(sysEtcd) || strings.Join(o.EdgekvArgs, "|") != "--log-level|warn" {
		t.Fatalf("etcd only: %+v", o)
	}
	o, err = parseOptions([]string{"--mode", "rtt", "--systems", "etcd", "--edgekv-bin", "e", "--rtt-clients", "8, 16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.runs(sysEtcd) || !o.runs(sysEdgekv) || len(o.RTTClients) != 2 || o.RTTClients[1] != 16 {
		t.Fatalf("rtt mode runs edgekv alone: %+v", o)
	}
	bad := map[string][]string{
		"--edgekv-bin is required": {},
		"--systems: unknown":       {"--systems", "etcd,consul"},
		"--repeat 0":               {"--systems", "etcd", "--repeat", "0"},
		"--duration":               {"--systems", "etcd", "--duration", "0s"},
		"--mode \"fast\"":          {"--systems", "etcd", "--mode", "fast"},
		"--rtt-clients":            {"--mode", "rtt", "--edgekv-bin", "e", "--rtt-clients", "0,x"},
		"--open-fraction":          {"--systems", "etcd", "--open-fraction", "1.5"},
		"--key-space 10":           {"--systems", "etcd", "--key-space", "10"},
		"unexpected arguments":     {"--systems", "etcd", "extra"},
		"flag provided but not":    {"--nope"},
	}
	for want, args := range bad {
		var stderr bytes.Buffer
		_, err := parseOptions(args, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), want) {
			t.Errorf("%v: err = %v, want one containing %q", args, err, want)
		}
	}
}

func TestNodeArgs(t *testing.T) {
	n := &node{name: "n2", clientAddr: "127.0.0.1:1", peerAddr: "127.0.0.1:2"}
	got := strings.Join(edgekvArgs(n, "/d/n2", "127.0.0.1:2", "n1=a,n2=127.0.0.1:2", "tok", []string{"--log-level", "warn"}), " ")
	want := "--name n2 --data-dir /d/n2 --listen-client 127.0.0.1:1 --listen-peer 127.0.0.1:2 --initial-cluster n1=a,n2=127.0.0.1:2 --initial-cluster-token tok --log-level warn"
	if got != want {
		t.Fatalf("edgekv args\n got %s\nwant %s", got, want)
	}
	got = strings.Join(edgekvArgs(n, "/d/n2", "127.0.0.1:9", "n1=a,n2=127.0.0.1:9", "tok", nil), " ")
	if !strings.Contains(got, "--listen-peer 127.0.0.1:2 --advertise-peer 127.0.0.1:9 --initial-cluster n1=a,n2=127.0.0.1:9") {
		t.Fatalf("edgekv args behind a proxy: %s", got)
	}
	e := strings.Join(etcdArgs(n, "/d", "n1=http://a", "tok"), " ")
	for _, want := range []string{"--listen-client-urls http://127.0.0.1:1", "--initial-advertise-peer-urls http://127.0.0.1:2", "--initial-cluster-state new", "--initial-cluster-token tok"} {
		if !strings.Contains(e, want) {
			t.Errorf("etcd args lack %q: %s", want, e)
		}
	}
	if strings.Contains(e, "unsafe-no-fsync") {
		t.Error("etcd must run with fsync on")
	}
}

func TestRTTIdeal(t *testing.T) {
	if got := clientsOnNode(256, 0, 3); got != 86 {
		t.Errorf("clientsOnNode(256, 0) = %d, want 86", got)
	}
	if got := clientsOnNode(256, 2, 3); got != 85 {
		t.Errorf("clientsOnNode(256, 2) = %d, want 85", got)
	}
	if sum := clientsOnNode(1024, 0, 3) + clientsOnNode(1024, 1, 3) + clientsOnNode(1024, 2, 3); sum != 1024 {
		t.Errorf("clients over nodes sum to %d", sum)
	}
	// 86 clients at 50 ms and 170 at 100 ms: 1720 + 1700 requests/s.
	if got := idealRTTThroughput(86, 170, 50*time.Millisecond); math.Abs(got-3420) > 1e-6 {
		t.Errorf("ideal = %v, want 3420", got)
	}
	var b bytes.Buffer
	rows := []rttRow{
		{Clients: 256, Leader: "n1", IdealOpsSec: 3420, TargetOpsSec: 2736, Samples: []sample{{}}, Median: sample{OKPerSec: 3000, P50Us: 60000, P99Us: 90000, ServerCPUUsPerOp: 40}},
		{Clients: 1024, IdealOpsSec: 13653, TargetOpsSec: 10923, Samples: []sample{{}}, Median: sample{OKPerSec: 9000}, ProxyLateUs: 612.4},
		{Clients: 4, Note: "boom"},
	}
	if err := writeRTTTable(&b, rows, 1, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if f := strings.Fields(lines[3]); f[len(f)-1] != "yes" || f[1] != "n1" {
		t.Errorf("256 clients over target: %q", lines[3])
	}
	if f := strings.Fields(lines[4]); f[len(f)-1] != "no" || f[1] != "?" {
		t.Errorf("1024 clients under target: %q", lines[4])
	}
	if !strings.Contains(lines[5], "note: 1024 clients: the delaying proxies wrote chunks 612 µs after their due time") {
		t.Errorf("proxy lateness note: %q", lines[5])
	}
	if strings.Count(b.String(), "delaying proxies") != 1 {
		t.Errorf("a lateness note for a row without one:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "note: 4 clients: boom") {
		t.Errorf("missing note:\n%s", b.String())
	}
}
