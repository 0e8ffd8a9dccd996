package ops

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestClassifyRequest(t *testing.T) {
	cases := []struct {
		method, target string
		want           Endpoint
	}{
		{"GET", "/v1/kv/a", EndpointKVGet},
		{"HEAD", "/v1/kv/a", EndpointKVGet},
		{"GET", "/v1/kv/a%2Fb?consistency=stale", EndpointKVGet},
		{"PUT", "/v1/kv/a", EndpointKVPut},
		{"PUT", "http://h:7379/v1/kv/a", EndpointKVPut},
		{"DELETE", "/v1/kv/a", EndpointKVDelete},
		{"POST", "/v1/kv/a", EndpointOther},
		{"GET", "/v1/kv?prefix=a&limit=3", EndpointList},
		{"GET", "/v1/kv", EndpointList},
		{"DELETE", "/v1/kv?prefix=a", EndpointDeletePrefix},
		{"PUT", "/v1/kv?prefix=a", EndpointOther},
		{"GET", "/v1/kvx", EndpointOther},
		{"POST", "/v1/batch", EndpointBatch},
		{"GET", "/v1/batch", EndpointOther},
		{"GET", "/v1/cluster", EndpointCluster},
		{"POST", "/v1/cluster/members", EndpointCluster},
		{"DELETE", "/v1/cluster/members/n3", EndpointCluster},
		{"POST", "/v1/cluster/transfer-leader", EndpointCluster},
		{"GET", "/v1/clusterx", EndpointOther},
		{"GET", "/v1/snapshot", EndpointSnapshot},
		{"GET", "/metrics", EndpointMetrics},
		{"GET", "/metrics?x", EndpointMetrics},
		{"GET", "/healthz", EndpointHealth},
		{"GET", "/readyz", EndpointHealth},
		{"GET", "/debug/pprof/heap", EndpointDebug},
		{"GET", "/", EndpointOther},
		{"GET", "", EndpointOther},
		{"GET", "*", EndpointOther},
		{"GET", "http://h", EndpointOther},
		{"GET", "/v1/kv#frag", EndpointList},
	}
	for _, c := range cases {
		if got := ClassifyRequest([]byte(c.method), []byte(c.target)); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.method, c.target, got, c.want)
		}
	}
}

func TestStatusTable(t *testing.T) {
	for i, code := range statusCodes {
		if got := indexOfStatus(code); int(got) != i {
			t.Errorf("indexOfStatus(%d) = %d, want %d", code, got, i)
		}
		if statusLabel(statusIndex(i)) != itoa3(code) {
			t.Errorf("label of %d: %q", code, statusLabel(statusIndex(i)))
		}
	}
	for code, want := range map[int]string{101: "1xx", 202: "2xx", 302: "3xx", 418: "4xx", 502: "5xx", 0: "invalid", 600: "invalid", 99: "invalid"} {
		if got := statusLabel(indexOfStatus(code)); got != want {
			t.Errorf("status %d: label %q, want %q", code, got, want)
		}
	}
	labels := make(map[string]bool)
	for s := range numStatuses {
		l := statusLabel(statusIndex(s))
		if labels[l] {
			t.Errorf("label %q twice", l)
		}
		labels[l] = true
	}
	for code, want := range map[int]statusClass{100: class2xx, 200: class2xx, 304: class3xx, 404: class4xx, 507: class5xx, 0: class5xx, 700: class5xx} {
		if got := classOfStatus(code); got != want {
			t.Errorf("class of %d: %d, want %d", code, got, want)
		}
	}
}

// newCtx returns a request context for method and target, as fasthttp's
// server would hand it to the handler.
func newCtx(tb testing.TB, method, target string) *fasthttp.RequestCtx {
	tb.Helper()
	var ctx fasthttp.RequestCtx
	raw := method + " " + target + " HTTP/1.1\r\nHost: h\r\n\r\n"
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	return &ctx
}

func TestMiddlewareCountsAndAllocatesNothing(t *testing.T) {
	m := NewMetrics()
	status := fasthttp.StatusPreconditionFailed
	h := m.Middleware(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(status) })
	ctx := newCtx(t, "PUT", "/v1/kv/some%2Fkey?x=1")
	const runs = 1000
	allocs := testing.AllocsPerRun(runs, func() { h(ctx) })
	if allocs != 0 {
		t.Fatalf("Middleware allocates %v times per request", allocs)
	}
	// AllocsPerRun runs once more as warm-up.
	if got := m.requests[EndpointKVPut][indexOfStatus(412)].Load(); got != runs+1 {
		t.Fatalf("kv_put/412 counted %d, want %d", got, runs+1)
	}
	if got := m.requestSeconds[EndpointKVPut][class4xx].Count(); got != runs+1 {
		t.Fatalf("kv_put/4xx latency count %d, want %d", got, runs+1)
	}
	if m.inflight.Load() != 0 {
		t.Fatalf("in-flight gauge %d after all requests returned", m.inflight.Load())
	}
}

// TestMiddlewareOverRealServer drives the wrapper and MetricsHandler
// through a fasthttp server on an in-memory listener: what a client
// sends is what /metrics shows.
func TestMiddlewareOverRealServer(t *testing.T) {
	m := NewMetrics()
	api := func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/metrics":
			m.MetricsHandler(ctx)
		case "/v1/kv/missing":
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		default:
			ctx.SetStatusCode(fasthttp.StatusOK)
		}
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: m.Middleware(api)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	do := func(method, uri string) (int, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI(uri)
		if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("%s %s: %v", method, uri, err)
		}
		return resp.StatusCode(), string(resp.Body())
	}
	for range 3 {
		do("GET", "http://h/v1/kv/missing")
	}
	do("POST", "http://h/v1/batch")
	_, body := do("GET", "http://h/metrics")
	fams, err := parseExposition(body)
	if err != nil {
		t.Fatal(err)
	}
	f := fams[famRequests]
	for _, c := range []struct {
		endpoint, code string
		want           float64
	}{{"kv_get", "404", 3}, {"batch", "200", 1}, {"metrics", "200", 0}} { // this scrape counts after it is written
		if v, _ := f.value(famRequests, "endpoint", c.endpoint, "code", c.code); v != c.want {
			t.Errorf("%s/%s = %v, want %v", c.endpoint, c.code, v, c.want)
		}
	}
	if v, _ := fams[famInflight].value(famInflight); v != 1 {
		t.Errorf("in-flight during the scrape = %v, want 1 (the scrape itself)", v)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	m := NewMetrics()
	h := m.Middleware(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(200) })
	ctx := newCtx(b, "GET", "/v1/kv/user%2F1234?consistency=stale")
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest(EndpointKVPut, 200, 1_500_000)
		}
	})
}

func BenchmarkClassifyRequest(b *testing.B) {
	method, target := []byte("DELETE"), []byte("/v1/kv?prefix=users%2F")
	b.ReportAllocs()
	for b.Loop() {
		if ClassifyRequest(method, target) != EndpointDeletePrefix {
			b.Fatal("misclassified")
		}
	}
}

func BenchmarkScrape(b *testing.B) {
	m := NewMetrics()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	b.ReportAllocs()
	for b.Loop() {
		m.MetricsHandler(&ctx)
	}
}
