package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// fakeOptions configure the stand-in for an edgekv node: just the
// endpoints the generator drives (SPEC §2), with injectable latency,
// statuses and stalls.
type fakeOptions struct {
	// record keeps every request for inspection (tests of what is sent).
	record bool
	// store keeps put values so that gets find them; without it every get
	// is a 404.
	store bool
	// statusFor, when set, chooses the status of request n (0-based, in
	// arrival order); 0 means answer normally.
	statusFor func(n uint64) int
	// delay is added to every response.
	delay time.Duration
	// stallAt and stallFor: when request number stallAt arrives, every
	// request answered in the next stallFor waits until it has passed (a
	// server pause: GC, fsync, election).
	stallAt  uint64
	stallFor time.Duration
	// getBodyBytes, when set, makes every get answer 200 with a body of
	// this many bytes.
	getBodyBytes int
	// block, when set, holds every response until it is closed.
	block <-chan struct{}
}

type seenRequest struct {
	Method, RequestURI, Host, ContentType string
	Body                                  []byte
}

type fakeServer struct {
	addr string
	opts fakeOptions
	srv  *fasthttp.Server

	requests   atomic.Uint64
	stallUntil atomic.Int64  // unix nanos
	arrived    chan struct{} // gets a token per request, never blocks

	mu    sync.Mutex
	seen  []seenRequest
	store map[string][]byte
}

// startFake serves on a loopback port until the test ends.
func startFake(t testing.TB, opts fakeOptions) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := newFake(opts)
	f.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("fake server shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("fake server: %v", err)
		}
	})
	return f
}

func newFake(opts fakeOptions) *fakeServer {
	f := &fakeServer{opts: opts, store: map[string][]byte{}, arrived: make(chan struct{}, 1)}
	f.srv = &fasthttp.Server{
		Handler:                       f.handle,
		DisablePreParseMultipartForm:  true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: false,
		MaxRequestBodySize:            maxBodyBytes,
	}
	return f
}

func (f *fakeServer) handle(ctx *fasthttp.RequestCtx) {
	n := f.requests.Add(1) - 1
	select {
	case f.arrived <- struct{}{}:
	default:
	}
	if f.opts.stallFor > 0 && n == f.opts.stallAt {
		f.stallUntil.Store(time.Now().Add(f.opts.stallFor).UnixNano())
	}
	if until := f.stallUntil.Load(); until != 0 {
		if wait := time.Until(time.Unix(0, until)); wait > 0 {
			time.Sleep(wait) // the server's pause is the scenario under test
		}
	}
	if f.opts.block != nil {
		<-f.opts.block
	}
	if f.opts.delay > 0 {
		time.Sleep(f.opts.delay) // injected server latency
	}
	if f.opts.record {
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{
			Method:      string(ctx.Method()),
			RequestURI:  string(ctx.Request.Header.RequestURI()),
			Host:        string(ctx.Host()),
			ContentType: string(ctx.Request.Header.ContentType()),
			Body:        append([]byte(nil), ctx.PostBody()...),
		})
		f.mu.Unlock()
	}
	ctx.Response.Header.Set("X-Edgekv-Revision", "1")
	if f.opts.statusFor != nil {
		if status := f.opts.statusFor(n); status != 0 {
			ctx.SetStatusCode(status)
			if status == fasthttp.StatusTooManyRequests || status == fasthttp.StatusServiceUnavailable {
				ctx.Response.Header.Set("Retry-After", "1")
			}
			ctx.SetContentType("application/json")
			fmt.Fprintf(ctx, `{"error":"injected","code":"status_%d"}`, status)
			return
		}
	}
	path := string(ctx.Request.Header.RequestURI())
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	switch {
	case strings.HasPrefix(path, "/v1/kv/"):
		f.handleKV(ctx, path[len("/v1/kv/"):])
	case path == "/v1/batch" && ctx.IsPost():
		f.handleBatch(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

func (f *fakeServer) handleKV(ctx *fasthttp.RequestCtx, escapedKey string) {
	switch {
	case ctx.IsPut():
		if f.opts.store {
			f.mu.Lock()
			f.store[escapedKey] = append([]byte(nil), ctx.PostBody()...)
			f.mu.Unlock()
		}
		ctx.Response.Header.Set("ETag", `"1"`)
		ctx.SetContentType("application/json")
		ctx.WriteString(`{"revision":1}`)
	case ctx.IsGet() && f.opts.getBodyBytes > 0:
		ctx.SetBody(make([]byte, f.opts.getBodyBytes))
	case ctx.IsGet():
		f.mu.Lock()
		v, ok := f.store[escapedKey]
		f.mu.Unlock()
		if !ok {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			ctx.SetContentType("application/json")
			ctx.WriteString(`{"error":"key not found","code":"not_found"}`)
			return
		}
		ctx.Write(v)
	default:
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	}
}

func (f *fakeServer) handleBatch(ctx *fasthttp.RequestCtx) {
	if f.opts.store {
		var body struct {
			Ops []struct {
				Op, Key string
				Value   []byte
			}
		}
		if err := json.Unmarshal(ctx.PostBody(), &body); err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		f.mu.Lock()
		for _, op := range body.Ops {
			f.store[string(appendPathEscaped(nil, op.Key))] = op.Value
		}
		f.mu.Unlock()
	}
	ctx.SetContentType("application/json")
	ctx.WriteString(`{"revision":1}`)
}

func (f *fakeServer) recorded() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.seen...)
}

func (f *fakeServer) storedKeys() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.store)
}

// fakeServerEnv makes the test binary act as a trivial fake server: it
// prints its address and serves until its stdin closes. Benchmarks run
// it as a separate process, so that the getrusage of the benchmark
// process measures the generator alone.
const fakeServerEnv = "EDGEKV_LOADGEN_FAKE_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeServerEnv) == "1" {
		os.Exit(serveFakeProcess())
	}
	os.Exit(m.Run())
}

func serveFakeProcess() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	f := newFake(fakeOptions{})
	go func() {
		// The parent closes our stdin (or dies): stop.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = ln.Close()
	}()
	fmt.Println(ln.Addr().String())
	_ = f.srv.Serve(ln)
	return 0
}
