package node

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func newReqCtx(method, path string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	return &ctx
}

// TestDrainMiddleware: while draining, new requests get 503 with
// Retry-After and a closed connection, except health, metrics and the
// cluster view; requests being served are counted.
func TestDrainMiddleware(t *testing.T) {
	s := &Server{}
	var during int64
	h := s.drainMiddleware(func(ctx *fasthttp.RequestCtx) {
		during = s.inflight.Load()
		ctx.SetStatusCode(200)
	})
	ctx := newReqCtx("PUT", "/v1/kv/a")
	h(ctx)
	if ctx.Response.StatusCode() != 200 || during != 1 || s.inflight.Load() != 0 {
		t.Fatalf("serving: status %d, in flight during %d after %d", ctx.Response.StatusCode(), during, s.inflight.Load())
	}
	s.draining.Store(true)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"PUT", "/v1/kv/a", 503},
		{"GET", "/v1/kv/a", 503},
		{"POST", "/v1/cluster/members", 503},
		{"POST", "/v1/cluster", 503},
		{"GET", "/v1/cluster", 200},
		{"GET", "/healthz", 200},
		{"GET", "/metrics", 200},
	} {
		ctx := newReqCtx(c.method, c.path)
		h(ctx)
		if got := ctx.Response.StatusCode(); got != c.status {
			t.Errorf("%s %s while draining: %d, want %d", c.method, c.path, got, c.status)
		}
		if c.status == 503 && (string(ctx.Response.Header.Peek("Retry-After")) != "1" || !ctx.Response.ConnectionClose()) {
			t.Errorf("%s %s: 503 without Retry-After or Connection: close", c.method, c.path)
		}
	}
	if s.Drain(0) != true {
		t.Fatal("Drain with nothing in flight")
	}
}

// BenchmarkDrainMiddleware: the middleware every request passes costs two
// atomic adds and allocates nothing.
func BenchmarkDrainMiddleware(b *testing.B) {
	s := &Server{}
	h := s.drainMiddleware(func(ctx *fasthttp.RequestCtx) {})
	ctx := newReqCtx("PUT", "/v1/kv/a")
	b.ReportAllocs()
	for b.Loop() {
		h(ctx)
	}
	if n := testing.AllocsPerRun(100, func() { h(ctx) }); n != 0 {
		b.Fatalf("%v allocations per request", n)
	}
}
