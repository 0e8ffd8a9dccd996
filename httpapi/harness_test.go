package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// harness runs an API on a real fasthttp server over an in-memory listener
// and talks to it in raw HTTP/1.1 bytes, so that what the server sees is
// exactly what the test wrote (no client-side path normalization).
type harness struct {
	t    *testing.T
	api  *API
	be   *memBackend
	ln   *fasthttputil.InmemoryListener
	logs *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, be: newMemBackend(), ln: fasthttputil.NewInmemoryListener(), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, err := New(cfg, h.be, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.api = api
	done := make(chan error, 1)
	go func() { done <- api.Server().Serve(h.ln) }()
	t.Cleanup(func() {
		if err := api.Server().Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return h
}

func (h *harness) dial() net.Conn {
	h.t.Helper()
	c, err := h.ln.Dial()
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		h.t.Fatalf("deadline: %v", err)
	}
	return c
}

// raw writes raw bytes on a new connection and reads one response.
func (h *harness) raw(raw string, head bool) *fasthttp.Response {
	h.t.Helper()
	c := h.dial()
	defer c.Close()
	errc := make(chan error, 1)
	// Write concurrently: the server may answer (413) before reading all.
	go func() { _, err := c.Write([]byte(raw)); errc <- err }()
	resp := &fasthttp.Response{}
	resp.SkipBody = head
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		h.t.Fatalf("reading response to %.80q: %v", raw, err)
	}
	c.Close()
	<-errc
	return resp
}

// do sends one request built from its parts, with Content-Length when
// body is non-empty or the method carries a body.
func (h *harness) do(method, target string, headers []string, body string) *fasthttp.Response {
	h.t.Helper()
	return h.raw(buildRequest(method, target, headers, body), method == "HEAD")
}

func buildRequest(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: test\r\n", method, target)
	for _, hd := range headers {
		b.WriteString(hd + "\r\n")
	}
	if body != "" || method == "PUT" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

type errorBody struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Failed []int  `json:"failed"`
}

// wantError checks resp is a JSON error with the given status and code.
func wantError(t *testing.T, resp *fasthttp.Response, status int, code string) errorBody {
	t.Helper()
	if resp.StatusCode() != status {
		t.Errorf("status %d, want %d; body %s", resp.StatusCode(), status, resp.Body())
	}
	if ct := string(resp.Header.ContentType()); ct != contentJSON {
		t.Errorf("Content-Type %q, want %q", ct, contentJSON)
	}
	var eb errorBody
	dec := json.NewDecoder(bytes.NewReader(resp.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %q is not the error JSON: %v", resp.Body(), err)
	}
	if eb.Code != code {
		t.Errorf("code %q, want %q (error %q)", eb.Code, code, eb.Error)
	}
	if eb.Error == "" {
		t.Errorf("empty error message")
	}
	return eb
}

func header(resp *fasthttp.Response, name string) string { return string(resp.Header.Peek(name)) }

// wantRevisionBody checks a 200 {"revision":N} answer and returns N.
func wantRevisionBody(t *testing.T, resp *fasthttp.Response) uint64 {
	t.Helper()
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d, want 200; body %s", resp.StatusCode(), resp.Body())
	}
	var v struct {
		Revision *uint64 `json:"revision"`
	}
	dec := json.NewDecoder(bytes.NewReader(resp.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Revision == nil {
		t.Fatalf("body %q: want {\"revision\":N}: %v", resp.Body(), err)
	}
	if got, want := header(resp, HeaderRevision), fmt.Sprint(*v.Revision); got != want {
		t.Errorf("%s = %q, want %q", HeaderRevision, got, want)
	}
	return *v.Revision
}
