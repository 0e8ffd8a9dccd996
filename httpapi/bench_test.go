package httpapi

import (
	"bufio"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// handlerCtx returns a RequestCtx holding the parsed raw request, served
// by an API over a fixedBackend (which allocates nothing), so that
// allocations measured around the handler are the handler's own.
func handlerCtx(tb testing.TB, raw string) (*API, *fasthttp.RequestCtx) {
	tb.Helper()
	api, err := New(Config{}, &fixedBackend{value: []byte("a small value, 32 bytes long....")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, nil, nil)
	return api, ctx
}

var hotPaths = []struct {
	name   string
	raw    string
	status int
}{
	{"GET", "GET /v1/kv/users%2F1234/profile HTTP/1.1\r\nHost: h\r\n\r\n", 200},
	{"GET-stale", "GET /v1/kv/users%2F1234/profile?consistency=stale HTTP/1.1\r\nHost: h\r\n\r\n", 200},
	{"PUT", "PUT /v1/kv/users%2F1234/profile HTTP/1.1\r\nHost: h\r\nContent-Length: 32\r\n\r\n" + strings.Repeat("v", 32), 200},
	{"PUT-if-match", "PUT /v1/kv/users%2F1234/profile HTTP/1.1\r\nHost: h\r\nIf-Match: \"41\"\r\nContent-Length: 32\r\n\r\n" + strings.Repeat("v", 32), 200},
	{"DELETE", "DELETE /v1/kv/users%2F1234/profile HTTP/1.1\r\nHost: h\r\n\r\n", 200},
	{"PUT-idempotent", "PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\nIdempotency-Key: 0f8e1a2b\r\nContent-Length: 32\r\n\r\n" + strings.Repeat("v", 32), 200},
	{"GET-bad-key", "GET /v1/kv/%FF HTTP/1.1\r\nHost: h\r\n\r\n", 400},
}

// TestHotPathAllocs proves the steady-state GET, PUT and DELETE paths
// (and the common bad-key rejection) allocate nothing in the handler.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race (sync.Pool drops items); the non-race run checks them")
	}
	for _, hp := range hotPaths {
		api, ctx := handlerCtx(t, hp.raw)
		h := api.Handler()
		run := func() {
			ctx.Response.Reset()
			h(ctx)
		}
		run()
		if ctx.Response.StatusCode() != hp.status {
			t.Fatalf("%s: status %d, want %d: %s", hp.name, ctx.Response.StatusCode(), hp.status, ctx.Response.Body())
		}
		if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
			t.Errorf("%s: %.1f allocations per request, want 0", hp.name, allocs)
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	for _, hp := range hotPaths {
		b.Run(hp.name, func(b *testing.B) {
			api, ctx := handlerCtx(b, hp.raw)
			h := api.Handler()
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				h(ctx)
			}
			if ctx.Response.StatusCode() != hp.status {
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		})
	}
	b.Run("batch-3-ops", func(b *testing.B) {
		body := `{"ops":[{"op":"put","key":"a","value":"eA==","if_match":12},{"op":"delete","key":"b"},{"op":"put","key":"c","value":"eQ==","if_absent":true}]}`
		api, ctx := handlerCtx(b, "POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		h := api.Handler()
		b.ReportAllocs()
		for b.Loop() {
			ctx.Response.Reset()
			h(ctx)
		}
	})
}

// BenchmarkServer measures whole requests through the fasthttp server on
// one pipelined in-memory connection: request parsing, handler, response
// writing, plus the client's response parsing (so allocs/op includes the
// test client's). The backend is fixedBackend.
func BenchmarkServer(b *testing.B) {
	for _, hp := range hotPaths[:3] {
		b.Run(hp.name, func(b *testing.B) {
			api, err := New(Config{}, &fixedBackend{value: []byte("a small value, 32 bytes long....")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			ln := fasthttputil.NewInmemoryListener()
			go api.Server().Serve(ln)     //nolint:errcheck // Shutdown below ends it
			defer api.Server().Shutdown() //nolint:errcheck
			conn, err := ln.Dial()
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			const window = 64 // requests in flight on the connection
			sent := make(chan struct{}, window)
			go func() {
				bw := bufio.NewWriter(conn)
				for range sent {
					if _, err := bw.WriteString(hp.raw); err != nil {
						return
					}
					if len(sent) == 0 {
						bw.Flush() //nolint:errcheck // reads below fail if it does
					}
				}
			}()
			br := bufio.NewReader(conn)
			var resp fasthttp.Response
			b.ReportAllocs()
			b.ResetTimer()
			inflight := 0
			for i := 0; i < b.N; i++ {
				for inflight < window && i+inflight < b.N {
					sent <- struct{}{}
					inflight++
				}
				if err := resp.Read(br); err != nil {
					b.Fatal(err)
				}
				inflight--
				if resp.StatusCode() != hp.status {
					b.Fatalf("status %d", resp.StatusCode())
				}
			}
			close(sent)
		})
	}
}
