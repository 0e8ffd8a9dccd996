package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The eBPF tracing of a live node: `--trace ebpf` (histograms on
// /metrics) and `edgekv trace --pid` (printed histograms). Tracing needs
// root (or CAP_BPF and CAP_PERFMON) and kernel BTF: elsewhere these tests
// skip with the reason, except under REQUIRE_EBPF_TESTS=1 (CI as root),
// where they must work.

func requireTracingHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("REQUIRE_EBPF_TESTS") != "1" {
		t.Skip("eBPF tracing needs root (or CAP_BPF and CAP_PERFMON); set REQUIRE_EBPF_TESTS=1 to fail instead")
	}
}

// scrape reads /metrics into a map from series (name and labels, as
// written) to value, and returns the raw text too.
func scrape(t *testing.T, p *proc) (map[string]float64, string) {
	t.Helper()
	r := p.must(200, "GET", "/metrics", "")
	series := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(r.body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("/metrics line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series, r.body
}

// loadWriters runs writers goroutines putting distinct keys on p until
// stop is called, which waits for them and returns how many writes
// succeeded (ok counts them meanwhile). Writes run through HTTP, as a
// client's would.
func loadWriters(p *proc, writers int, prefix string) (ok *atomic.Uint64, stop func() uint64) {
	ok = new(atomic.Uint64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				req, _ := http.NewRequest("PUT", fmt.Sprintf("http://%s/v1/kv/%s%d-%d", p.client, prefix, w, i), strings.NewReader("value"))
				resp, err := httpClient.Do(req)
				if err != nil {
					continue
				}
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	return ok, func() uint64 {
		close(done)
		wg.Wait()
		return ok.Load()
	}
}

var stageNames = []string{"received", "proposed", "persisted", "committed", "applied", "answered"}

// TestTraceFlagExportsHistograms starts a node with --trace ebpf, drives
// concurrent writes and checks /metrics: fdatasync latencies above zero
// and below a second, the run queue seen, and every stage marked exactly
// once per batch, paired in order (edgekv_batch_batches_total counts the
// batches). Exact, with no tolerance: the tracer attaches before the
// member starts, a single node leads every batch, and the check runs once
// every write was answered, after the applier's last Answered mark.
func TestTraceFlagExportsHistograms(t *testing.T) {
	requireTracingHost(t)
	p := start(t, append(nodeFlags(t, t.TempDir()), "--trace", "ebpf")...)
	p.waitReady()
	if strings.Contains(p.stderr.String(), "untraced") {
		t.Fatalf("--trace ebpf did not attach as root:\n%s", p.stderr.String())
	}
	written, stop := loadWriters(p, 8, "traced/")
	waitUntil(t, "1000 acknowledged writes", func() bool { return written.Load() >= 1000 })
	stop()

	var series map[string]float64
	var text string
	var batches float64
	waitUntil(t, "every batch marked answered", func() bool {
		series, text = scrape(t, p)
		batches = 0
		for _, trig := range []string{"idle", "full", "delay"} {
			batches += series[`edgekv_batch_batches_total{trigger="`+trig+`"}`]
		}
		return batches > 0 && series[`edgekv_trace_stage_hits_total{stage="answered"}`] >= batches
	})
	for _, s := range stageNames {
		if got := series[`edgekv_trace_stage_hits_total{stage="`+s+`"}`]; got != batches {
			t.Errorf("stage %s hit %v times for %v batches", s, got, batches)
		}
	}
	for i := 0; i+1 < len(stageNames); i++ {
		name := fmt.Sprintf(`edgekv_trace_stage_seconds_count{from=%q,to=%q}`, stageNames[i], stageNames[i+1])
		if got := series[name]; got != batches {
			t.Errorf("%s = %v, want %v (one pair per batch)", name, got, batches)
		}
	}
	if got := series["edgekv_trace_batch_seconds_count"]; got != batches {
		t.Errorf("edgekv_trace_batch_seconds_count = %v, want %v", got, batches)
	}
	for _, reason := range []string{"orphan", "out_of_order", "map_full"} {
		if got := series[`edgekv_trace_unpaired_total{reason="`+reason+`"}`]; got != 0 {
			t.Errorf("%v marker hits unpaired (%s)", got, reason)
		}
	}
	checkPlausibleSeconds(t, series, `edgekv_trace_syscall_seconds`, `syscall="fdatasync"`, time.Second)
	checkPlausibleSeconds(t, series, `edgekv_trace_batch_seconds`, ``, 2*time.Second) // --request-timeout
	if series["edgekv_trace_runqueue_seconds_count"] == 0 {
		t.Error("no run-queue latency recorded for a node under load")
	}
	if series["edgekv_trace_read_errors_total"] != 0 {
		t.Errorf("%v scrape-time map read errors", series["edgekv_trace_read_errors_total"])
	}
	t.Logf("%v batches; /metrics (without buckets):\n%s", batches, grepLines(text, "edgekv_trace_", "edgekv_batch_batches_total"))
	runPromtool(t, text)
}

// checkPlausibleSeconds checks a histogram family's series: observations
// recorded, their sum above zero, nearly all (90 %) at or below the bucket
// bound right above limit (log2 buckets: the bound is at most twice
// limit), and a mean below limit.
func checkPlausibleSeconds(t *testing.T, series map[string]float64, name, labels string, limit time.Duration) {
	t.Helper()
	withLabels := func(suffix, extra string) string {
		l := strings.Trim(labels+","+extra, ",")
		if l == "" {
			return name + suffix
		}
		return name + suffix + "{" + l + "}"
	}
	count, sum := series[withLabels("_count", "")], series[withLabels("_sum", "")]
	if count == 0 || sum <= 0 {
		t.Errorf("%s{%s}: count %v, sum %v s: want observations above zero", name, labels, count, sum)
		return
	}
	if mean := sum / count; mean >= limit.Seconds() {
		t.Errorf("%s{%s}: mean %v s, want below %v", name, labels, mean, limit)
	}
	bound := math.Inf(1)
	for le := 512e-9; le < 64; le *= 2 {
		if le >= limit.Seconds() {
			bound = le
			break
		}
	}
	// Nearly all, not all: on a loaded VM an fdatasync can take over a
	// second; a unit mistake (ns read as µs) would move them all.
	below := series[withLabels("_bucket", `le="`+strconv.FormatFloat(bound, 'g', -1, 64)+`"`)]
	if below < 0.9*count {
		t.Errorf("%s{%s}: only %v of %v observations at or below %v s", name, labels, below, count, bound)
	}
}

// TestTraceFlagWithoutPrivileges: --trace ebpf on a host or user that
// cannot trace logs one line naming what is missing, and the node serves
// untraced. As root the node runs as user nobody (setpriv drops every
// capability); otherwise as the test's own unprivileged user.
func TestTraceFlagWithoutPrivileges(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(dir, "data")
	bin := binary(t)
	var p *proc
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skipf("running as root and setpriv (util-linux) is not installed to drop privileges: %v", err)
		}
		copied := filepath.Join(dir, "edgekv")
		if out, err := exec.Command("cp", bin, copied).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", copied}, nodeFlags(t, dataDir)...)
		p = startBinary(t, setpriv, append(args, "--trace", "ebpf")...)
	} else {
		p = startBinary(t, bin, append(nodeFlags(t, dataDir), "--trace", "ebpf")...)
	}
	p.awaitServing()
	p.waitReady()
	p.must(200, "PUT", "/v1/kv/untraced", "v")

	var lines []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "--trace ebpf") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "running untraced") || !strings.Contains(lines[0], "CAP_BPF") {
		t.Fatalf("want one log line saying the node runs untraced and naming CAP_BPF, got %q\nstderr:\n%s", lines, p.stderr.String())
	}
	if _, text := scrape(t, p); strings.Contains(text, "edgekv_trace_") {
		t.Fatalf("an untraced node exports edgekv_trace_ families:\n%s", grepLines(text, "edgekv_trace_"))
	}
	t.Logf("the node's line: %s", lines[0])
}

// TestTraceSubcommandShowsStagesUnderLoad runs `edgekv trace --pid` for
// two intervals against a node under concurrent writes, that itself runs
// --trace ebpf (two tracers at once must not disturb each other), and
// checks the printed histograms: marker hits of every stage, the stage
// pairs, whole batches, fdatasync and the run queue.
func TestTraceSubcommandShowsStagesUnderLoad(t *testing.T) {
	requireTracingHost(t)
	p := start(t, append(nodeFlags(t, t.TempDir()), "--trace", "ebpf")...)
	p.waitReady()
	_, stop := loadWriters(p, 8, "load/")
	code, stdout, stderr := runOnce(t, "trace", "--pid", strconv.Itoa(p.cmd.Process.Pid), "--interval", "1s", "--count", "2")
	stop()
	if code != 0 {
		t.Fatalf("edgekv trace: exit %d\nstderr: %s\nstdout: %s", code, stderr, stdout)
	}
	intervals := strings.Split(stdout, fmt.Sprintf("pid %d  last 1s", p.cmd.Process.Pid))
	if len(intervals) != 3 {
		t.Fatalf("want 2 intervals printed:\n%s", stdout)
	}
	last := intervals[2]
	hits := regexp.MustCompile(`marker hits: received (\d+) proposed (\d+) persisted (\d+) committed (\d+) applied (\d+) answered (\d+)`).FindStringSubmatch(last)
	if hits == nil {
		t.Fatalf("no marker hits line in the last interval:\n%s", last)
	}
	var counts [6]int
	for i := range counts {
		counts[i], _ = strconv.Atoi(hits[i+1])
	}
	// Batches cross an interval's edges, so the stages of one interval
	// differ by the few batches in flight at its start and end (the
	// batcher's window is 4).
	for i, c := range counts {
		if c == 0 || absDiff(c, counts[0]) > 8 {
			t.Errorf("stage %s hit %d times in an interval with %d received", stageNames[i], c, counts[0])
		}
	}
	for _, title := range []string{
		"stage received -> proposed", "stage proposed -> persisted", "stage persisted -> committed",
		"stage committed -> applied", "stage applied -> answered", "batch received -> answered",
		"syscall fdatasync", "syscall write", "syscall read", "run queue",
	} {
		if !strings.Contains(last, title+":") {
			t.Errorf("no %q histogram in the last interval", title)
		}
	}
	if strings.Contains(last, "unpaired") {
		t.Errorf("unpaired marker hits under load:\n%s", last)
	}
	t.Logf("edgekv trace output:\n%s", stdout)
}

func absDiff(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}

// waitUntil polls cond every 20 ms until it holds or 20 s pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// grepLines keeps the series (no comments, no buckets) of text that
// contain any of the substrings.
func grepLines(text string, subs ...string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "#") || strings.Contains(l, "_bucket{") {
			continue
		}
		for _, s := range subs {
			if strings.Contains(l, s) {
				b.WriteString(l)
				b.WriteByte('\n')
				break
			}
		}
	}
	return b.String()
}

// runPromtool runs `promtool check metrics` on an exposition. Without
// promtool on PATH it skips, unless REQUIRE_PROMTOOL=1 (CI).
func runPromtool(t *testing.T, exposition string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("REQUIRE_PROMTOOL=1 but promtool is not on PATH: %v", err)
		}
		t.Skipf("promtool not on PATH (Debian: apt-get install prometheus); set REQUIRE_PROMTOOL=1 to make this fail: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
