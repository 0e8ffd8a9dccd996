package e2e

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Overload test parameters. The load runs for a fixed time; everything
// else waits on a condition with a deadline.
const (
	overloadConns      = 4096             // concurrent keep-alive connections
	overloadMaxPending = 64               // --max-pending of every node
	overloadDuration   = 10 * time.Second // how long the load runs
	overloadValueBytes = 128
	// overloadMaxRSSBytes bounds every node's peak RSS (VmHWM). With
	// --max-pending 64 the queues hold next to nothing; what remains is
	// the connections (about 1400 per node, each a goroutine with its
	// buffers), the Raft log kept in memory between snapshots
	// (--snapshot-entries) and the Go heap's slack. Measured peaks are logged; see the report.
	overloadMaxRSSBytes = 512 << 20
	// Refusals must be fast. Inside the node (handler entry to response
	// ready, the node's own request histogram) a 429 costs microseconds:
	// it never waits for the queue or a commit (its tail is the Go
	// scheduler's: ~1400 runnable handlers per node). At the client, 4096
	// connections queue for 2 CPUs (Little's law: 4096 / ~25k responses/s
	// is ~160ms, and seconds when CI runs other test binaries beside this
	// one), so the client's figure is logged, not asserted: what the test
	// asserts is measured inside the nodes, where a refusal must never
	// wait anything like --request-timeout (3s).
	overloadMaxServer429P50 = time.Millisecond
	overloadMaxServer429P99 = time.Second
	// The cluster must recover by itself within this generous deadline.
	overloadRecoveryDeadline = 60 * time.Second
)

// TestOverloadRefusesFastAndRecovers drives a 3-node cluster of real
// processes with 4,096 keep-alive connections writing as fast as they
// are answered, against --max-pending 64: writes past the bound get 429
// with Retry-After at once, no other 5xx than 429/503/504 appears, every
// node's peak RSS stays bounded, and once the load stops the write
// latency returns to its unloaded level and every node's queue empties
// (no "busy" state outlives the load).
func TestOverloadRefusesFastAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("drives three processes with 4096 connections for ~10s")
	}
	raiseFileLimit(t, 2*overloadConns+1024) // our ends here, the nodes' ends in the children
	c := startClusterExtra(t, 3, "--max-pending", strconv.Itoa(overloadMaxPending), "--request-timeout", "3s")
	c.leader()
	endpoints := make([]string, 0, len(c.names))
	for _, name := range c.names {
		endpoints = append(endpoints, c.procs[name].client)
	}

	base := probeLatency(t, endpoints, 60)
	t.Logf("unloaded: put latency p50 %v, p99 %v (60 sequential puts over the 3 nodes)", base.p50, base.p99)

	stats := runOverload(t, endpoints, overloadDuration)
	stopped := stats.stoppedAt // recovery counts from the end of the load, drain included

	// Recovery: wait until sequential puts are as fast as before the load
	// and every node's batcher queue is empty. Probing is the waiting.
	var recovered time.Duration
	var last probeResult
	deadline := stopped.Add(overloadRecoveryDeadline)
	target := max(2*base.p50, base.p50+2*time.Millisecond)
	for {
		last = probeLatency(t, endpoints, 30)
		if last.p50 <= target && last.failed == 0 && queuesEmpty(t, c) {
			recovered = time.Since(stopped)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered %v after the load stopped: put p50 %v (unloaded %v, target %v), %d failed probes, queues empty: %v",
				overloadRecoveryDeadline, last.p50, base.p50, target, last.failed, queuesEmpty(t, c))
		}
	}

	// The nodes' own view: how long a 429 took inside the node (kv_put
	// answers of class 4xx are all 429 here, checked below) and the
	// leader's mean batch size.
	var server429 bucketCounts
	var batchSizes []string
	for _, name := range c.names {
		body := c.procs[name].must(200, "GET", "/metrics", "").body
		server429.add(t, body, `edgekv_http_request_duration_seconds_bucket{endpoint="kv_put",class="4xx",le="`)
		entries, batches := metricSum(body, "edgekv_batch_entries_total"), metricSum(body, "edgekv_batch_batches_total{")
		batchSizes = append(batchSizes, fmt.Sprintf("%s %.1f (%.0f batches)", name, entries/max(batches, 1), batches))
	}

	total := stats.total()
	ok, overloaded := stats.statuses[200].Load(), stats.statuses[429].Load()
	t.Logf("load: %d connections for %v: %d responses, %.0f/s", overloadConns, stats.elapsed.Round(time.Millisecond), total, float64(total)/stats.elapsed.Seconds())
	t.Logf("goodput: %d writes acknowledged, %.0f/s", ok, float64(ok)/stats.elapsed.Seconds())
	t.Logf("statuses: %s; share of 429: %.1f%%; transport errors: %d; failed dials: %d", stats.statusSummary(), 100*float64(overloaded)/float64(max(total, 1)), stats.transportErrors.Load(), stats.dialErrors.Load())
	if sample := stats.sample(); sample != "" {
		t.Logf("samples of other answers: %s", sample)
	}
	t.Logf("latency of 429: p50 %v, p99 %v, max %v; of 200: p50 %v, p99 %v",
		stats.lat429.quantile(0.5), stats.lat429.quantile(0.99), stats.lat429.max(), stats.lat200.quantile(0.5), stats.lat200.quantile(0.99))
	t.Logf("latency of 429 inside the nodes: p50 <= %v, p99 <= %v (%.0f refusals)", server429.quantile(0.5), server429.quantile(0.99), server429.count())
	t.Logf("mean batch size in proposals (the leader's proposes, the followers' forward): %s", strings.Join(batchSizes, ", "))
	t.Logf("recovery: latency back to p50 %v (unloaded %v) and queues empty %v after the load stopped", last.p50, base.p50, recovered.Round(time.Millisecond))
	for _, name := range c.names {
		hwm := peakRSS(t, c.procs[name])
		t.Logf("peak RSS (VmHWM) of %s: %.1f MiB", name, float64(hwm)/(1<<20))
		if hwm > overloadMaxRSSBytes {
			t.Errorf("%s: peak RSS %d bytes, over the bound %d", name, hwm, overloadMaxRSSBytes)
		}
	}

	// Overload must have happened, and been answered the right way.
	if overloaded == 0 {
		t.Errorf("no 429 under %d connections against --max-pending %d", overloadConns, overloadMaxPending)
	}
	if ok == 0 {
		t.Error("no write succeeded under load: refusals must leave room for goodput")
	}
	for code := 500; code < 600; code++ {
		if n := stats.statuses[code].Load(); n > 0 && code != 429 && code != 503 && code != 504 {
			t.Errorf("%d responses with status %d", n, code)
		}
	}
	for code := 400; code < 500; code++ {
		if n := stats.statuses[code].Load(); n > 0 && code != 429 {
			t.Errorf("%d responses with status %d (want 200, 429, 503 or 504)", n, code)
		}
	}
	if n := stats.missingRetryAfter.Load(); n > 0 {
		t.Errorf("%d responses 429/503 without Retry-After (sample: %s)", n, stats.sample())
	}
	// A node that stops accepting shows as many failed dials; a few are
	// the client machine's SYN backlog, retried by the worker.
	if n := stats.dialErrors.Load(); n > overloadConns/20 {
		t.Errorf("%d dials failed for %d connections (sample: %s)", n, overloadConns, stats.sample())
	}
	if n := stats.transportErrors.Load(); n > 0 {
		t.Errorf("%d requests got no response (sample: %s)", n, stats.sample())
	}
	if p := server429.quantile(0.99); p > overloadMaxServer429P99 {
		t.Errorf("429 p99 latency in the nodes %v: refusals are not fast (bound %v)", p, overloadMaxServer429P99)
	}
	if p := server429.quantile(0.5); p > overloadMaxServer429P50 {
		t.Errorf("429 median latency in the nodes %v: refusals are not fast (bound %v)", p, overloadMaxServer429P50)
	}
	for _, p := range c.procs {
		select {
		case <-p.exited:
			t.Fatalf("a node exited under load (%v): %s", p.state, p.stderr.String())
		default:
		}
	}
}

// startClusterExtra is startClusterFlags for the default binary with the
// default --request-timeout (5s), and extra flags for every member.
func startClusterExtra(t *testing.T, size int, extra ...string) *realCluster {
	t.Helper()
	return startClusterFlags(t, binary(t), size, append([]string{"--request-timeout", "5s"}, extra...)...)
}

// raiseFileLimit makes room for want open files in this process and the
// nodes it starts (children inherit the limit). As root the hard limit is
// raised too; otherwise a hard limit below want skips the test.
func raiseFileLimit(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		if os.Geteuid() != 0 {
			t.Skipf("RLIMIT_NOFILE hard limit %d < %d and not root: raise it (ulimit -Hn) to run this test", lim.Max, want)
		}
		lim.Max = want
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit RLIMIT_NOFILE to %d: %v", want, err)
	}
}

// latencyHist is a log-linear histogram (4 buckets per power of two,
// under 19% error) that one goroutine fills and the test merges.
type latencyHist struct {
	counts [256]uint64
	maxNs  int64
}

func latencyBucket(ns int64) int {
	if ns < 4 {
		return int(max(ns, 0))
	}
	e := 63 - bits.LeadingZeros64(uint64(ns)) // ns in [2^e, 2^(e+1))
	sub := int(uint64(ns)>>(e-2)) & 3         // the next two bits
	return min(4*(e-1)+sub, 255)
}

// latencyUpper is the upper edge of bucket i, in nanoseconds.
func latencyUpper(i int) int64 {
	if i < 4 {
		return int64(i)
	}
	e := i/4 + 1
	sub := i % 4
	return int64((4+sub+1)<<(e-2)) - 1
}

func (h *latencyHist) add(d time.Duration) {
	h.counts[latencyBucket(int64(d))]++
	h.maxNs = max(h.maxNs, int64(d))
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.maxNs = max(h.maxNs, o.maxNs)
}

func (h *latencyHist) quantile(q float64) time.Duration {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			return time.Duration(min(latencyUpper(i), h.maxNs))
		}
	}
	return time.Duration(h.maxNs)
}

func (h *latencyHist) max() time.Duration { return time.Duration(h.maxNs) }

// overloadStats are the load phase's counts.
type overloadStats struct {
	statuses          [600]atomic.Uint64
	missingRetryAfter atomic.Uint64
	transportErrors   atomic.Uint64
	// dialErrors: connections the client could not open (the kernel's
	// SYN backlog overflows when 4096 clients dial at once on a busy
	// machine); no request was sent on them.
	dialErrors     atomic.Uint64
	samples        sync.Map // string -> struct{}: one message per kind of problem
	sampleCount    atomic.Int64
	elapsed        time.Duration // from the start to the end of the load
	stoppedAt      time.Time     // when the workers were told to stop
	mu             sync.Mutex
	lat429, lat200 latencyHist
}

func (s *overloadStats) total() uint64 {
	var n uint64
	for i := range s.statuses {
		n += s.statuses[i].Load()
	}
	return n
}

func (s *overloadStats) statusSummary() string {
	var parts []string
	for i := range s.statuses {
		if n := s.statuses[i].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%d×%d", n, i))
		}
	}
	return strings.Join(parts, ", ")
}

// note keeps msg as a sample of a problem, up to 16 distinct ones.
func (s *overloadStats) note(msg string) {
	if s.sampleCount.Load() < 16 {
		if _, loaded := s.samples.LoadOrStore(msg, struct{}{}); !loaded {
			s.sampleCount.Add(1)
		}
	}
}

func (s *overloadStats) sample() string {
	var out []string
	s.samples.Range(func(k, _ any) bool {
		out = append(out, k.(string))
		return len(out) < 5
	})
	sort.Strings(out)
	return strings.Join(out, " | ")
}

// runOverload runs overloadConns workers, each with its own keep-alive
// connection to one of endpoints (round robin), writing as fast as it is
// answered (a closed loop that ignores Retry-After: the point is to stay
// over the bound), until d has passed; then waits for the requests in
// flight.
func runOverload(t *testing.T, endpoints []string, d time.Duration) *overloadStats {
	t.Helper()
	stats := &overloadStats{}
	stop := make(chan struct{})
	begin := make(chan struct{})
	var wg, dialed sync.WaitGroup
	value := strings.Repeat("v", overloadValueBytes)
	for w := range overloadConns {
		wg.Add(1)
		dialed.Add(1)
		go func() {
			defer wg.Done()
			overloadWorker(w, endpoints[w%len(endpoints)], value, &dialed, begin, stop, stats)
		}()
	}
	// Every connection is set up before the load starts: 4096 connects at
	// once can overflow a listen backlog and wait for SYN retransmits
	// (1s, 3s, ...) on a busy machine, which is the kernel's business, not
	// the node's, and would count as an error.
	dialed.Wait()
	start := time.Now()
	close(begin)
	timer := time.NewTimer(d)
	<-timer.C
	close(stop)
	stats.stoppedAt = time.Now()
	stats.elapsed = stats.stoppedAt.Sub(start)
	wg.Wait()
	return stats
}

// dialPatiently connects to addr, retrying a few times with a long
// timeout: connection setup under a connect storm is not under test.
func dialPatiently(addr string) (net.Conn, error) {
	var err error
	for range 3 {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 20*time.Second); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// overloadWorker is one client connection's loop: it connects, reports
// that on dialed, waits for start, then writes until stop.
func overloadWorker(w int, addr, value string, dialed *sync.WaitGroup, start, stop <-chan struct{}, stats *overloadStats) {
	var local429, local200 latencyHist
	defer func() {
		stats.mu.Lock()
		stats.lat429.merge(&local429)
		stats.lat200.merge(&local200)
		stats.mu.Unlock()
	}()
	conn, err := dialPatiently(addr)
	dialed.Done()
	if err != nil {
		stats.transportErrors.Add(1)
		stats.note("dial: " + err.Error())
		return
	}
	<-start
	br := bufio.NewReaderSize(conn, 4096)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if conn == nil {
			c, err := dialPatiently(addr)
			if err != nil {
				stats.dialErrors.Add(1)
				stats.note("dial: " + err.Error())
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond): // back off before redialing
				}
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 4096)
		}
		// Requests are answered within --request-timeout (3s); the deadline
		// only turns a hang into a counted error.
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		req := fmt.Sprintf("PUT /v1/kv/overload/%d/%d HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", w, i%16, addr, len(value), value)
		begin := time.Now()
		resp, body, err := writeAndRead(conn, br, req)
		elapsed := time.Since(begin)
		if err != nil {
			stats.transportErrors.Add(1)
			stats.note("request: " + err.Error())
			conn.Close()
			conn = nil
			continue
		}
		code := resp.StatusCode
		if code >= 0 && code < len(stats.statuses) {
			stats.statuses[code].Add(1)
		}
		switch code {
		case 200:
			local200.add(elapsed)
		case 429:
			local429.add(elapsed)
		}
		if (code == 429 || code == 503) && resp.Header.Get("Retry-After") == "" {
			stats.missingRetryAfter.Add(1)
			stats.note(fmt.Sprintf("%d without Retry-After", code))
		}
		if code != 200 && code != 429 {
			stats.note(fmt.Sprintf("status %d: %s", code, strings.TrimSpace(body)))
		}
		if resp.Close {
			conn.Close()
			conn = nil
		}
	}
}

// writeAndRead sends req and reads the response; body is its first 256
// bytes (error answers are short JSON).
func writeAndRead(conn net.Conn, br *bufio.Reader, req string) (resp *http.Response, body string, err error) {
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, "", err
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var head [256]byte
	n, err := io.ReadFull(resp.Body, head[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, "", err
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return nil, "", err
	}
	return resp, string(head[:n]), nil
}

type probeResult struct {
	p50, p99 time.Duration
	failed   int
}

// probeLatency sends n sequential puts, round robin over endpoints, each
// on a fresh keep-alive client, and returns their latency quantiles.
func probeLatency(t *testing.T, endpoints []string, n int) probeResult {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var lat []time.Duration
	failed := 0
	for i := range n {
		req, err := http.NewRequest("PUT", fmt.Sprintf("http://%s/v1/kv/probe/%d", endpoints[i%len(endpoints)], i), strings.NewReader("probe"))
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed++
			continue
		}
		lat = append(lat, time.Since(begin))
	}
	if len(lat) == 0 {
		return probeResult{p50: time.Hour, p99: time.Hour, failed: failed}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return probeResult{p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], failed: failed}
}

// bucketCounts is a Prometheus histogram's cumulative buckets, summed
// over nodes: upper bound in seconds -> count.
type bucketCounts map[float64]float64

// add adds the buckets of the series whose lines start with prefix
// (everything up to the le value).
func (b *bucketCounts) add(t *testing.T, body, prefix string) {
	t.Helper()
	if *b == nil {
		*b = bucketCounts{}
	}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("bucket line %q", line)
		}
		bound, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(value, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bucket line %q: %v %v", line, err1, err2)
		}
		(*b)[bound] += n
	}
}

func (b bucketCounts) count() float64 { return b[math.Inf(1)] }

// quantile returns the upper bound of the bucket holding quantile q.
func (b bucketCounts) quantile(q float64) time.Duration {
	bounds := make([]float64, 0, len(b))
	for le := range b {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	for _, le := range bounds {
		if b[le] >= q*b.count() {
			if math.IsInf(le, 1) {
				return time.Duration(math.MaxInt64)
			}
			return time.Duration(le * 1e9)
		}
	}
	return 0
}

// metricSum adds the values of every sample line starting with prefix.
func metricSum(body, prefix string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i >= 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

var pendingGauge = regexp.MustCompile(`(?m)^edgekv_batch_pending_proposals (\d+)$`)

// queuesEmpty reports whether every node's batcher queue is empty.
func queuesEmpty(t *testing.T, c *realCluster) bool {
	t.Helper()
	for _, name := range c.names {
		body := c.procs[name].must(200, "GET", "/metrics", "").body
		m := pendingGauge.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%s: /metrics lacks edgekv_batch_pending_proposals", name)
		}
		if m[1] != "0" {
			return false
		}
	}
	return true
}

// peakRSS reads the process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, p *proc) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// The latency histogram's quantiles are within one bucket (19%) of the
// exact ones.
func TestLatencyHistQuantiles(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > 1.19*float64(c.want) {
			t.Errorf("quantile(%v) = %v, want within [%v, +19%%]", c.q, got, c.want)
		}
	}
	for ns := int64(0); ns < 1<<20; ns += 7 {
		if i := latencyBucket(ns); ns > latencyUpper(i) || (i > 0 && ns <= latencyUpper(i-1)) {
			t.Fatalf("%dns in bucket %d of upper edge %d (previous %d)", ns, i, latencyUpper(i), latencyUpper(i-1))
		}
	}
	if h.max() != time.Millisecond {
		t.Fatalf("max %v", h.max())
	}
}
