package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Tests of what fasthttp does before the handler runs: body limits,
// Expect: 100-continue, malformed HTTP, oversized headers. Every answer
// must be the JSON error shape.

func TestBodyLimitBeforeReading(t *testing.T) {
	h := newHarness(t, Config{MaxValueBytes: 1 << 10, MaxRequestBytes: 4 << 10})
	// Announce a huge body and send none of it: the answer must come from
	// the headers alone (the harness's 10 s deadline fails the test if the
	// server waits for the body).
	for _, c := range []struct{ method, target string }{
		{"PUT", "/v1/kv/k"},   // bounded by MaxValueBytes
		{"POST", "/v1/batch"}, // bounded by MaxRequestBytes
	} {
		resp := h.raw(c.method+" "+c.target+" HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n", false)
		wantError(t, resp, 413, "too_large")
		if header(resp, HeaderRevision) == "" {
			t.Errorf("%s %s: 413 without %s", c.method, c.target, HeaderRevision)
		}
	}
	// The PUT limit is the value limit, not the request limit: a PUT
	// announcing more than a value but less than a request is refused
	// from its headers too.
	wantError(t, h.raw("PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n", false), 413, "too_large")
	wantError(t, h.do("PUT", "/v1/kv/k", nil, strings.Repeat("v", 1<<10+1)), 413, "too_large")
	wantRevisionBody(t, h.do("PUT", "/v1/kv/k", nil, strings.Repeat("v", 1<<10)))
	// A batch may be larger than one value.
	if resp := h.do("POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"k"}]}`+strings.Repeat(" ", 2<<10)); resp.StatusCode() != 200 {
		t.Errorf("2 KiB batch under a 4 KiB limit: %d %s", resp.StatusCode(), resp.Body())
	}
}

func TestChunkedBodyOverLimit(t *testing.T) {
	h := newHarness(t, Config{MaxValueBytes: 1 << 10})
	chunk := strings.Repeat("x", 800)
	raw := "PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"320\r\n" + chunk + "\r\n" + "320\r\n" + chunk + "\r\n" + "0\r\n\r\n"
	wantError(t, h.raw(raw, false), 413, "too_large")
	// Under the limit, chunked works.
	raw = "PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" + chunk + "\r\n0\r\n\r\n"
	wantRevisionBody(t, h.raw(raw, false))
	if string(h.be.lastPut.Value) != chunk {
		t.Errorf("chunked value not stored")
	}
}

func TestExpectContinue(t *testing.T) {
	h := newHarness(t, Config{MaxValueBytes: 1 << 10})
	// Over the limit: a JSON 413 instead of "100 Continue".
	c := h.dial()
	defer c.Close()
	if _, err := io.WriteString(c, "PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	// fasthttp's Response.Read skips 1xx answers: check the first status
	// line by hand, then parse the rest.
	first, err := br.Peek(len("HTTP/1.1 413"))
	if err != nil || string(first) != "HTTP/1.1 413" {
		t.Fatalf("first answer starts %q (%v), want HTTP/1.1 413 (no 100 Continue)", first, err)
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatal(err)
	}
	wantError(t, &resp, 413, "too_large")

	// Within the limit: 100 Continue, then the answer.
	c2 := h.dial()
	defer c2.Close()
	if _, err := io.WriteString(c2, "PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br2 := bufio.NewReader(c2)
	line, err := br2.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("first line %q (%v), want 100 Continue", line, err)
	}
	if _, err := br2.ReadString('\n'); err != nil { // blank line after 100
		t.Fatal(err)
	}
	if _, err := io.WriteString(c2, "abc"); err != nil {
		t.Fatal(err)
	}
	var resp2 fasthttp.Response
	if err := resp2.Read(br2); err != nil {
		t.Fatal(err)
	}
	wantRevisionBody(t, &resp2)
	if string(h.be.lastPut.Value) != "abc" {
		t.Errorf("value %q", h.be.lastPut.Value)
	}
}

func TestMalformedHTTPIsJSON(t *testing.T) {
	h := newHarness(t, Config{})
	for _, raw := range []string{
		"GARBAGE\r\n\r\n",
		"GET /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
		"PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /v1/kv/a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
	} {
		resp := h.raw(raw, false)
		if resp.StatusCode() < 400 || resp.StatusCode() > 499 {
			t.Errorf("%q: status %d, want 4xx", raw, resp.StatusCode())
		}
		wantError(t, resp, resp.StatusCode(), "bad_request")
	}
	// Headers over the read buffer: 413, JSON.
	wantError(t, h.raw("GET /v1/kv/k HTTP/1.1\r\nHost: t\r\nX-Big: "+strings.Repeat("b", 40<<10)+"\r\n\r\n", false), 413, "too_large")
}

func TestMultipartBodyIsOpaque(t *testing.T) {
	h := newHarness(t, Config{})
	body := "--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\ndata\r\n--XX--\r\n"
	wantRevisionBody(t, h.do("PUT", "/v1/kv/k", []string{"Content-Type: multipart/form-data; boundary=XX"}, body))
	if string(h.be.lastPut.Value) != body {
		t.Errorf("multipart body was not stored verbatim: %q", h.be.lastPut.Value)
	}
}

func TestKeepAliveAndPipelining(t *testing.T) {
	h := newHarness(t, Config{})
	c := h.dial()
	defer c.Close()
	raw := buildRequest("PUT", "/v1/kv/a", nil, "1") + buildRequest("PUT", "/v1/kv/b%2F..", nil, "2") +
		buildRequest("GET", "/v1/kv/b%2F..", nil, "") + buildRequest("GET", "/v1/kv/zz", nil, "")
	go io.WriteString(c, raw) //nolint:errcheck // the reads below fail if it does
	br := bufio.NewReader(c)
	wantStatus := []int{200, 200, 200, 404}
	for i, want := range wantStatus {
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if resp.StatusCode() != want {
			t.Errorf("response %d: status %d, want %d", i, resp.StatusCode(), want)
		}
		if i == 2 && string(resp.Body()) != "2" {
			t.Errorf("pipelined GET: %q", resp.Body())
		}
	}
}

func TestAbsoluteFormAndHTTP10(t *testing.T) {
	h := newHarness(t, Config{MaxValueBytes: 1 << 10})
	wantRevisionBody(t, h.raw("PUT http://t/v1/kv/a%2F..%2Fb HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nv", false))
	if string(h.be.lastPut.Key) != "a/../b" {
		t.Errorf("absolute-form key %q", h.be.lastPut.Key)
	}
	wantError(t, h.raw("GET http://t/v1/kv/a#b HTTP/1.1\r\nHost: t\r\n\r\n", false), 400, "bad_request")
	// The value limit applies to absolute-form PUTs too, from the headers.
	wantError(t, h.raw("PUT http://t/v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n", false), 413, "too_large")
	resp := h.raw("GET /v1/kv/a%2F..%2Fb HTTP/1.0\r\n\r\n", false)
	if resp.StatusCode() != 200 || string(resp.Body()) != "v" {
		t.Errorf("HTTP/1.0 GET: %d %q", resp.StatusCode(), resp.Body())
	}
}

// TestConcurrentClients checks that per-request scratch memory is never
// shared between requests in flight: each client must read back exactly
// its own keys and values (run it under -race too).
func TestConcurrentClients(t *testing.T) {
	h := newHarness(t, Config{})
	const clients, requests = 8, 40
	errc := make(chan error, clients)
	for c := 0; c < clients; c++ {
		go func() {
			errc <- func() error {
				conn, err := h.ln.Dial()
				if err != nil {
					return err
				}
				defer conn.Close()
				if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
					return err
				}
				br := bufio.NewReader(conn)
				for i := 0; i < requests; i++ {
					key := fmt.Sprintf("c%d%%2Fk%d", c, i)
					val := strings.Repeat(fmt.Sprintf("<%d.%d>", c, i), 1+i)
					if _, err := io.WriteString(conn, buildRequest("PUT", "/v1/kv/"+key, nil, val)+buildRequest("GET", "/v1/kv/"+key, nil, "")); err != nil {
						return err
					}
					var put, get fasthttp.Response
					if err := put.Read(br); err != nil {
						return err
					}
					if err := get.Read(br); err != nil {
						return err
					}
					if put.StatusCode() != 200 || get.StatusCode() != 200 || string(get.Body()) != val {
						return fmt.Errorf("client %d request %d: put %d, get %d %.40q, want %.40q",
							c, i, put.StatusCode(), get.StatusCode(), get.Body(), val)
					}
				}
				return nil
			}()
		}()
	}
	for c := 0; c < clients; c++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func TestSlowClientGetsJSONTimeout(t *testing.T) {
	h := newHarness(t, Config{ReadTimeout: 200 * time.Millisecond})
	// A body that never completes: the server's read deadline fires and the
	// answer is a JSON 408, not a hang.
	c := h.dial()
	defer c.Close()
	if _, err := io.WriteString(c, "PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	wantError(t, &resp, 408, "request_timeout")
	if h.be.rev != 0 {
		t.Errorf("a partial body was written")
	}
}

// TestLoopbackTCP runs the server on a real loopback socket: raw keys,
// body limits and read timeouts behave as on the in-memory listener.
func TestLoopbackTCP(t *testing.T) {
	api, err := New(Config{ReadTimeout: 300 * time.Millisecond, MaxValueBytes: 1 << 10}, newMemBackend(),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- api.Server().Serve(ln) }()
	defer func() {
		if err := api.Server().Shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	exchange := func(raw string) *fasthttp.Response {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		return &resp
	}
	wantRevisionBody(t, exchange(buildRequest("PUT", "/v1/kv//x%2F..%2F", nil, "v")))
	if resp := exchange(buildRequest("GET", "/v1/kv/%2Fx%2F..%2F", nil, "")); string(resp.Body()) != "v" {
		t.Errorf("GET over TCP: %d %q", resp.StatusCode(), resp.Body())
	}
	wantError(t, exchange("PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"), 413, "too_large")
	wantError(t, exchange("PUT /v1/kv/k HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"), 408, "request_timeout")
}
