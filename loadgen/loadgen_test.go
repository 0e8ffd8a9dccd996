package loadgen

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// testConfig is a small closed-loop run of n requests against addrs.
func testConfig(n uint64, addrs ...string) Config {
	cfg := DefaultConfig()
	cfg.Endpoints = addrs
	cfg.Requests, cfg.Duration, cfg.Warmup = n, 0, 0
	cfg.Concurrency = 2
	cfg.Timeout = 5 * time.Second
	return cfg
}

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// keyOf checks that uri is /v1/kv/<escaped key><suffix> with the key in
// the configured key space, and returns the decoded key.
func keyOf(t *testing.T, cfg Config, uri, suffix string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(uri, "/v1/kv/")
	if !ok {
		t.Fatalf("request URI %q does not start with /v1/kv/", uri)
	}
	rest, ok = strings.CutSuffix(rest, suffix)
	if !ok {
		t.Fatalf("request URI %q does not end with %q", uri, suffix)
	}
	if strings.ContainsAny(rest, "/?#") {
		t.Fatalf("escaped key %q contains a raw '/', '?' or '#'", rest)
	}
	key, err := url.PathUnescape(rest)
	if err != nil {
		t.Fatalf("key in %q: %v", uri, err)
	}
	checkKey(t, cfg, key)
	return key
}

func checkKey(t *testing.T, cfg Config, key string) {
	t.Helper()
	digits, ok := strings.CutPrefix(key, cfg.KeyPrefix)
	if !ok {
		t.Fatalf("key %q lacks prefix %q", key, cfg.KeyPrefix)
	}
	width := len(strconv.FormatUint(cfg.KeySpace-1, 10))
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || len(digits) != width || n >= cfg.KeySpace {
		t.Fatalf("key %q: want %q and a %d-digit number below %d", key, cfg.KeyPrefix, width, cfg.KeySpace)
	}
}

func TestPutSendsWhatSpecSays(t *testing.T) {
	f := startFake(t, fakeOptions{record: true})
	cfg := testConfig(50, f.addr)
	cfg.KeyPrefix = "a/b c%é?"
	cfg.KeySpace = 1000
	cfg.ValueBytes = 100
	res := mustRun(t, cfg)

	seen := f.recorded()
	if len(seen) != 50 {
		t.Fatalf("server saw %d requests, want 50", len(seen))
	}
	for _, r := range seen {
		if r.Method != "PUT" {
			t.Fatalf("method %s, want PUT", r.Method)
		}
		if !strings.HasPrefix(r.RequestURI, "/v1/kv/a%2Fb%20c%25%C3%A9%3F") {
			t.Fatalf("request URI %q: prefix not percent-encoded as expected", r.RequestURI)
		}
		keyOf(t, cfg, r.RequestURI, "")
		if len(r.Body) != 100 {
			t.Fatalf("body of %d bytes, want 100", len(r.Body))
		}
		if r.ContentType != "application/octet-stream" || r.Host != f.addr {
			t.Fatalf("Content-Type %q, Host %q", r.ContentType, r.Host)
		}
	}
	if res.Requests != 50 || res.OK != 50 || res.Errors != 0 || res.Statuses["200"] != 50 {
		t.Fatalf("result counts: requests %d ok %d errors %d statuses %v", res.Requests, res.OK, res.Errors, res.Statuses)
	}
	if l := res.Latency["put"]; l.Count != 50 || l.P50Us <= 0 || l.MaxUs < l.P99Us || l.P99Us < l.P50Us {
		t.Fatalf("put latency summary %+v", l)
	}
	if res.Latency["all"].Count != 50 || res.Mode != "closed" || res.ElapsedSec <= 0 || res.RequestsPerSec <= 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestGetSendsConsistency(t *testing.T) {
	for _, consistency := range []string{"linearizable", "lease", "stale"} {
		t.Run(consistency, func(t *testing.T) {
			f := startFake(t, fakeOptions{record: true})
			cfg := testConfig(20, f.addr)
			cfg.Workload, cfg.Consistency = WorkloadGet, consistency
			res := mustRun(t, cfg)
			seen := f.recorded()
			if len(seen) != 20 {
				t.Fatalf("server saw %d requests, want 20", len(seen))
			}
			for _, r := range seen {
				if r.Method != "GET" || len(r.Body) != 0 {
					t.Fatalf("%s with %d-byte body, want GET without body", r.Method, len(r.Body))
				}
				keyOf(t, cfg, r.RequestURI, "?consistency="+consistency)
			}
			// The fake stores nothing: every get is a 404, which for a get
			// is an answer, not an error.
			if res.OK != 20 || res.NotFound != 20 || res.Errors != 0 || res.Statuses["404"] != 20 {
				t.Fatalf("ok %d notFound %d errors %d statuses %v", res.OK, res.NotFound, res.Errors, res.Statuses)
			}
		})
	}
}

func TestMixedSplitsReadsAndWrites(t *testing.T) {
	f := startFake(t, fakeOptions{record: true})
	cfg := testConfig(2000, f.addr)
	cfg.Workload, cfg.ReadFraction, cfg.Consistency = WorkloadMixed, 0.25, "stale"
	cfg.Concurrency = 4
	res := mustRun(t, cfg)
	var gets, puts uint64
	for _, r := range f.recorded() {
		switch r.Method {
		case "GET":
			gets++
			keyOf(t, cfg, r.RequestURI, "?consistency=stale")
		case "PUT":
			puts++
			keyOf(t, cfg, r.RequestURI, "")
		default:
			t.Fatalf("unexpected %s", r.Method)
		}
	}
	if gets+puts != 2000 || res.Latency["get"].Count != gets || res.Latency["put"].Count != puts {
		t.Fatalf("server saw %d gets %d puts; result %d gets %d puts", gets, puts, res.Latency["get"].Count, res.Latency["put"].Count)
	}
	// Binomial(2000, 0.25): mean 500, sd 19; 5 sd either side.
	if gets < 400 || gets > 600 {
		t.Fatalf("%d gets of 2000 with --read-fraction 0.25", gets)
	}
}

func TestBatchSendsPutAll(t *testing.T) {
	f := startFake(t, fakeOptions{record: true})
	cfg := testConfig(30, f.addr)
	cfg.Workload, cfg.BatchSize, cfg.ValueBytes = WorkloadBatch, 10, 33
	cfg.KeyPrefix = `q"\/` + "\t"
	// 10 keys out of 12: independent draws would repeat a key in almost
	// every batch, which SPEC's PutAll refuses (400).
	cfg.KeySpace = 12
	res := mustRun(t, cfg)
	seen := f.recorded()
	if len(seen) != 30 {
		t.Fatalf("server saw %d requests, want 30", len(seen))
	}
	for _, r := range seen {
		if r.Method != "POST" || r.RequestURI != "/v1/batch" || r.ContentType != "application/json" {
			t.Fatalf("%s %s (%s), want POST /v1/batch (application/json)", r.Method, r.RequestURI, r.ContentType)
		}
		var body struct {
			Ops []map[string]any `json:"ops"`
		}
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("batch body %q: %v", r.Body, err)
		}
		if len(body.Ops) != 10 {
			t.Fatalf("%d ops, want 10", len(body.Ops))
		}
		keysInBatch := map[string]bool{}
		for _, op := range body.Ops {
			if len(op) != 3 || op["op"] != "put" {
				t.Fatalf("op %v: want exactly op=put, key, value", op)
			}
			key, _ := op["key"].(string)
			if keysInBatch[key] {
				t.Fatalf("key %q twice in one batch: PutAll refuses that", key)
			}
			keysInBatch[key] = true
			checkKey(t, cfg, key)
			value, err := base64.StdEncoding.DecodeString(op["value"].(string))
			if err != nil || len(value) != 33 {
				t.Fatalf("value %v: %v, %d bytes", op["value"], err, len(value))
			}
		}
	}
	if res.OK != 30 || res.Latency["batch"].Count != 30 || res.BatchSize != 10 {
		t.Fatalf("ok %d batch latency count %d batch size %d", res.OK, res.Latency["batch"].Count, res.BatchSize)
	}
	if got, want := res.KeysPerSec, res.OKPerSec*10; got < want*0.999 || got > want*1.001 {
		t.Fatalf("keys/s %v, want 10 × ok/s %v", got, res.OKPerSec)
	}
}

func TestSeedFixesKeysAndValues(t *testing.T) {
	sequence := func(seed uint64) []seenRequest {
		f := startFake(t, fakeOptions{record: true})
		cfg := testConfig(40, f.addr)
		cfg.Concurrency, cfg.Seed, cfg.Workload = 1, seed, WorkloadMixed
		mustRun(t, cfg)
		return f.recorded()
	}
	a, b, c := sequence(7), sequence(7), sequence(8)
	same := func(x, y []seenRequest) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i].Method != y[i].Method || x[i].RequestURI != y[i].RequestURI || !bytes.Equal(x[i].Body, y[i].Body) {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatalf("two runs with seed 7 sent different requests")
	}
	if same(a, c) {
		t.Fatalf("seeds 7 and 8 sent the same requests")
	}
}

func TestPreloadWritesEveryKeyThenGetsFindThem(t *testing.T) {
	f := startFake(t, fakeOptions{store: true})
	cfg := testConfig(100, f.addr)
	cfg.Workload, cfg.KeySpace, cfg.Preload, cfg.Concurrency = WorkloadGet, 57, true, 3
	res := mustRun(t, cfg)
	if n := f.storedKeys(); n != 57 {
		t.Fatalf("preload stored %d keys, want all 57", n)
	}
	if got := f.requests.Load(); got != 57+100 {
		t.Fatalf("server saw %d requests, want 57 preload puts + 100 gets", got)
	}
	if res.Requests != 100 || res.OK != 100 || res.NotFound != 0 || res.Statuses["200"] != 100 {
		t.Fatalf("requests %d ok %d notFound %d statuses %v", res.Requests, res.OK, res.NotFound, res.Statuses)
	}
}

func TestSequentialBatchesCoverKeySpace(t *testing.T) {
	f := startFake(t, fakeOptions{store: true})
	cfg := testConfig(10, f.addr)
	cfg.Workload, cfg.KeyOrder, cfg.BatchSize, cfg.KeySpace = WorkloadBatch, KeysSequential, 10, 100
	mustRun(t, cfg)
	if n := f.storedKeys(); n != 100 {
		t.Fatalf("10 sequential batches of 10 over 100 keys stored %d distinct keys", n)
	}
}

func TestErrorsCountedByStatus(t *testing.T) {
	statusFor := func(n uint64) int {
		switch n % 10 {
		case 3:
			return 429
		case 5:
			return 503
		case 7:
			return 504
		}
		return 0
	}
	f := startFake(t, fakeOptions{statusFor: statusFor})
	cfg := testConfig(1000, f.addr)
	cfg.Concurrency = 4
	res := mustRun(t, cfg)
	want := map[string]uint64{"200": 700, "429": 100, "503": 100, "504": 100}
	if len(res.Statuses) != len(want) {
		t.Fatalf("statuses %v, want %v", res.Statuses, want)
	}
	for s, n := range want {
		if res.Statuses[s] != n {
			t.Fatalf("statuses %v, want %v", res.Statuses, want)
		}
	}
	if res.Requests != 1000 || res.OK != 700 || res.Errors != 300 || res.Latency["put"].Count != 700 || len(res.TransportErrors) != 0 {
		t.Fatalf("requests %d ok %d errors %d latency count %d transport %v",
			res.Requests, res.OK, res.Errors, res.Latency["put"].Count, res.TransportErrors)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTransportErrorsCounted(t *testing.T) {
	f := startFake(t, fakeOptions{})
	cfg := testConfig(200, f.addr, deadAddr(t))
	res := mustRun(t, cfg)
	refused := res.TransportErrors["connection_refused"]
	if refused == 0 || res.Requests != 200 || res.OK+refused != 200 || res.Errors != refused {
		t.Fatalf("requests %d ok %d errors %d transport %v", res.Requests, res.OK, res.Errors, res.TransportErrors)
	}
	if served := f.requests.Load(); res.Statuses["200"] != served || res.OK != served {
		t.Fatalf("server answered %d, result says %d ok, statuses %v", served, res.OK, res.Statuses)
	}
	if !strings.Contains(res.TransportErrorSamples["connection_refused"], "refused") {
		t.Fatalf("sample %q", res.TransportErrorSamples["connection_refused"])
	}
}

func TestTimeoutCounted(t *testing.T) {
	f := startFake(t, fakeOptions{delay: 300 * time.Millisecond})
	cfg := testConfig(4, f.addr)
	cfg.Timeout = 30 * time.Millisecond
	res := mustRun(t, cfg)
	if res.TransportErrors["timeout"] != 4 || res.OK != 0 || res.Errors != 4 {
		t.Fatalf("ok %d errors %d transport %v", res.OK, res.Errors, res.TransportErrors)
	}
}

// TestOpenLoopCountsStall is the coordinated-omission test: the server
// pauses once for stall; in open loop every request due during the pause
// carries it in its latency, so p99 shows it. The same pause under a
// closed loop delays only the few requests in flight, and p99 does not
// show it: the difference is exactly what open loop exists to measure.
func TestOpenLoopCountsStall(t *testing.T) {
	const (
		stall = 200 * time.Millisecond
		rate  = 1000.0 // requests per second
		total = 1000
	)
	// Open loop: the 200 slots due during the pause wait for its end, so
	// their latencies spread over (0, 200ms]; the top 1% (10 of 1000) are
	// all at least 190 ms.
	f := startFake(t, fakeOptions{stallAt: 200, stallFor: stall})
	cfg := testConfig(total, f.addr)
	cfg.Rate, cfg.Concurrency = rate, 8
	res := mustRun(t, cfg)
	if res.OpenLoop == nil || res.OpenLoop.Scheduled != total || res.OpenLoop.Sent != total || res.OpenLoop.Skipped != 0 {
		t.Fatalf("open loop stats %+v", res.OpenLoop)
	}
	if res.OK != total {
		t.Fatalf("ok %d of %d", res.OK, total)
	}
	p99 := time.Duration(res.Latency["put"].P99Us * 1e3)
	if p99 < stall*3/4 {
		t.Fatalf("open loop p99 %v does not show the %v stall", p99, stall)
	}
	if res.OpenLoop.Late == 0 {
		t.Fatalf("no request counted late across a %v stall", stall)
	}
	// The run lasted about total/rate plus the stall, not longer.
	if res.ElapsedSec < 0.9 || res.ElapsedSec > 5 {
		t.Fatalf("elapsed %.3fs for 1000 requests at 1000/s", res.ElapsedSec)
	}

	// Closed loop, 4 workers: only the 4 requests in flight see the stall,
	// fewer than 1% of 1000, so p99 stays far below it.
	g := startFake(t, fakeOptions{stallAt: 200, stallFor: stall})
	closed := testConfig(total, g.addr)
	closed.Concurrency = 4
	cres := mustRun(t, closed)
	if max := time.Duration(cres.Latency["put"].MaxUs * 1e3); max < stall*3/4 {
		t.Fatalf("closed loop max %v: the stall did not happen", max)
	}
	if cp99 := time.Duration(cres.Latency["put"].P99Us * 1e3); cp99 > stall/4 {
		t.Fatalf("closed loop p99 %v: expected the stall to hide below p99", cp99)
	}
}

func TestOpenLoopSkipsWhatCannotBeSent(t *testing.T) {
	// Every response takes 100 ms and one connection may be outstanding,
	// but 100 requests are due within 50 ms: the schedule plus the 300 ms
	// timeout passes long before they can be sent, and the rest is skipped
	// rather than queued without bound.
	f := startFake(t, fakeOptions{delay: 100 * time.Millisecond})
	cfg := testConfig(100, f.addr)
	cfg.Rate, cfg.Concurrency, cfg.Timeout = 2000, 1, 300*time.Millisecond
	res := mustRun(t, cfg)
	o := res.OpenLoop
	if o.Scheduled != 100 || o.Sent+o.Skipped != 100 || o.Skipped == 0 || o.Sent > 10 || o.Late == 0 {
		t.Fatalf("open loop stats %+v", o)
	}
	if res.Requests != o.Sent || res.OK != o.Sent {
		t.Fatalf("requests %d ok %d sent %d", res.Requests, res.OK, o.Sent)
	}
}

func TestDurationEndsRun(t *testing.T) {
	f := startFake(t, fakeOptions{})
	cfg := testConfig(0, f.addr)
	cfg.Duration = 150 * time.Millisecond
	res := mustRun(t, cfg)
	if res.Requests == 0 || res.ElapsedSec < 0.15 || res.ElapsedSec > 2 {
		t.Fatalf("requests %d elapsed %.3fs for a 150ms run", res.Requests, res.ElapsedSec)
	}
	if served := f.requests.Load(); served != res.Requests {
		t.Fatalf("server saw %d, result %d", served, res.Requests)
	}
}

func TestWarmupIsNotMeasured(t *testing.T) {
	f := startFake(t, fakeOptions{})
	cfg := testConfig(50, f.addr)
	cfg.Warmup = 100 * time.Millisecond
	res := mustRun(t, cfg)
	served := f.requests.Load()
	if res.Requests != 50 || served <= 50 {
		t.Fatalf("measured %d, server saw %d: warm-up requests missing or counted", res.Requests, served)
	}
}

func TestCancelStopsBlockedRun(t *testing.T) {
	block := make(chan struct{})
	f := startFake(t, fakeOptions{block: block})
	t.Cleanup(func() { close(block) }) // runs before the server's shutdown
	cfg := testConfig(0, f.addr)
	cfg.Duration, cfg.Timeout = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *Result, 1)
	go func() {
		res, err := Run(ctx, cfg)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	<-f.arrived // a request is held by the server
	cancel()
	select {
	case res := <-done:
		if res != nil && (!res.Interrupted || res.Requests != 0) {
			t.Fatalf("interrupted %v requests %d (abandoned requests are no errors)", res.Interrupted, res.Requests)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancellation")
	}
}

func TestOpenLoopKeepsItsRate(t *testing.T) {
	// 300 requests at 1000/s: the last is due at 299 ms, however fast the
	// server is (sent as fast as possible they would take a few ms).
	f := startFake(t, fakeOptions{})
	cfg := testConfig(300, f.addr)
	cfg.Rate, cfg.Concurrency = 1000, 4
	res := mustRun(t, cfg)
	if res.ElapsedSec < 0.299 || res.ElapsedSec > 3 {
		t.Fatalf("300 requests at 1000/s took %.3fs", res.ElapsedSec)
	}
	if res.OpenLoop.Sent != 300 || res.OpenLoop.Skipped != 0 || res.OK != 300 || res.Mode != "open" || res.Rate != 1000 {
		t.Fatalf("result %+v, open loop %+v", res, res.OpenLoop)
	}
}

func TestConnectionsSpreadOverEndpoints(t *testing.T) {
	// Open loop stripes slots over workers and worker i uses endpoint
	// i mod 2, so each of two endpoints gets exactly half.
	a, b := startFake(t, fakeOptions{record: true}), startFake(t, fakeOptions{record: true})
	cfg := testConfig(400, a.addr, b.addr)
	cfg.Rate, cfg.Concurrency = 20000, 4
	res := mustRun(t, cfg)
	if res.OK != 400 || a.requests.Load() != 200 || b.requests.Load() != 200 {
		t.Fatalf("ok %d; endpoints saw %d and %d, want 200 each", res.OK, a.requests.Load(), b.requests.Load())
	}
	for _, f := range []*fakeServer{a, b} {
		for _, r := range f.recorded() {
			if r.Host != f.addr {
				t.Fatalf("request to %s carries Host %q", f.addr, r.Host)
			}
		}
	}
}

func TestOversizedResponseIsBadResponse(t *testing.T) {
	limit := responseBodyBytes(100)
	for _, c := range []struct {
		bodyBytes int
		wantOK    bool
	}{{limit, true}, {limit + 1, false}} {
		f := startFake(t, fakeOptions{getBodyBytes: c.bodyBytes})
		cfg := testConfig(4, f.addr)
		cfg.Workload, cfg.ValueBytes = WorkloadGet, 100
		res := mustRun(t, cfg)
		if c.wantOK && res.OK != 4 || !c.wantOK && res.TransportErrors["bad_response"] != 4 {
			t.Fatalf("%d-byte bodies (limit %d): ok %d transport %v", c.bodyBytes, limit, res.OK, res.TransportErrors)
		}
	}
}

func TestMalformedResponseIsBadResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // answers every connection with garbage, until the listener closes
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write([]byte("HTTP/1.1 abc\r\nContent-Length: x\r\n\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	res := mustRun(t, testConfig(6, ln.Addr().String()))
	if res.TransportErrors["bad_response"] != 6 || res.OK != 0 || res.Errors != 6 {
		t.Fatalf("ok %d errors %d transport %v", res.OK, res.Errors, res.TransportErrors)
	}
}

// TestInterruptBeforeExchangeIsNotUndone covers the window between a
// worker's check of the context and its exchange: an interrupt that lands
// there must fail the exchange at once, not be overwritten by the
// exchange's own (here one hour) deadline.
func TestInterruptBeforeExchangeIsNotUndone(t *testing.T) {
	block := make(chan struct{})
	f := startFake(t, fakeOptions{block: block})
	t.Cleanup(func() { close(block) })
	c := newConn(f.addr, 1<<20)
	defer c.close()
	if _, err := c.dial(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c.interrupt()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + f.addr + "/v1/kv/k")
	var resp fasthttp.Response
	done := make(chan error, 1)
	go func() {
		_, err := c.roundTrip(req, &resp, time.Now().Add(time.Hour))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errCancelled) {
			t.Fatalf("roundTrip after interrupt: %v, want errCancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("roundTrip after interrupt blocked: its deadline replaced the interrupt's")
	}
}
