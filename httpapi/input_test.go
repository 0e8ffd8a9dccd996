package httpapi

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestRawPathKeys proves keys are taken from the request line exactly as
// sent: fasthttp's normalization ("//" collapsed, "/../" resolved, escapes
// decoded before splitting) never reaches a key.
func TestRawPathKeys(t *testing.T) {
	h := newHarness(t, Config{})
	cases := []struct {
		target string
		key    string
	}{
		{"/v1/kv/a%2F..%2Fb", "a/../b"},
		{"/v1/kv/a/../b", "a/../b"},
		{"/v1/kv//x", "/x"},
		{"/v1/kv///", "//"},
		{"/v1/kv/./x", "./x"},
		{"/v1/kv/..", ".."},
		{"/v1/kv/a%2Fb", "a/b"},
		{"/v1/kv/a/b/", "a/b/"},
		{"/v1/kv/a+b", "a+b"},
		{"/v1/kv/a%20b", "a b"},
		{"/v1/kv/%25", "%"},
		{"/v1/kv/%3Fq%3D1", "?q=1"},
		{"/v1/kv/caf%C3%A9", "café"},
		{"/v1/kv/café", "café"}, // raw UTF-8 bytes in the request line
		{"/v1/kv/%00", "\x00"},
		{"/v1/kv/http://host/x", "http://host/x"},
	}
	for i, c := range cases {
		val := fmt.Sprintf("value-%d", i)
		resp := h.do("PUT", c.target, nil, val)
		if resp.StatusCode() != 200 {
			t.Errorf("PUT %s: %d %s", c.target, resp.StatusCode(), resp.Body())
			continue
		}
		if got := string(h.be.lastPut.Key); got != c.key {
			t.Errorf("PUT %s: key %q, want %q", c.target, got, c.key)
		}
		// Read it back through the canonical escaping: same key.
		resp = h.do("GET", "/v1/kv/"+url.PathEscape(c.key), nil, "")
		if string(resp.Body()) != val {
			t.Errorf("GET of %q: %d %q, want %q", c.key, resp.StatusCode(), resp.Body(), val)
		}
	}
	// Every key above is distinct in the store.
	if n := len(h.be.kv); n != len(cases)-2 { // "a/../b" and "café" appear twice
		t.Errorf("%d distinct keys stored, want %d", n, len(cases)-2)
	}
}

func TestMaxKeyThroughServer(t *testing.T) {
	h := newHarness(t, Config{})
	// The longest key, every byte percent-encoded: 12 KiB of path.
	key := strings.Repeat("k", MaxKeyBytes)
	enc := strings.Repeat("%6B", MaxKeyBytes)
	wantRevisionBody(t, h.do("PUT", "/v1/kv/"+enc, nil, "v"))
	if string(h.be.lastPut.Key) != key {
		t.Fatalf("max key not stored exactly (len %d)", len(h.be.lastPut.Key))
	}
	if resp := h.do("GET", "/v1/kv/"+key, nil, ""); string(resp.Body()) != "v" {
		t.Errorf("GET max key: %d", resp.StatusCode())
	}
	// A list with prefix and after both fully encoded maximum keys fits
	// the default read buffer.
	resp := h.do("GET", "/v1/kv?prefix="+enc+"&after="+enc+"&limit=1000&consistency=linearizable", nil, "")
	if resp.StatusCode() != 200 {
		t.Errorf("max list request: %d %s", resp.StatusCode(), resp.Body())
	}
	// One byte over, encoded or not.
	wantError(t, h.do("PUT", "/v1/kv/"+key+"k", nil, "v"), 413, "too_large")
	wantError(t, h.do("PUT", "/v1/kv/"+enc+"%6B", nil, "v"), 413, "too_large")
	// Multi-byte: 4096 bytes of UTF-8 in 2-byte runes is fine, one more rune is not.
	wantRevisionBody(t, h.do("PUT", "/v1/kv/"+url.PathEscape(strings.Repeat("é", MaxKeyBytes/2)), nil, "v"))
	wantError(t, h.do("PUT", "/v1/kv/"+url.PathEscape(strings.Repeat("é", MaxKeyBytes/2+1)), nil, "v"), 413, "too_large")
	// A request line far over the read buffer: JSON 413 from the error handler.
	wantError(t, h.do("GET", "/v1/kv/"+strings.Repeat("x", 40<<10), nil, ""), 413, "too_large")
}

type badCase struct {
	name    string
	method  string
	target  string
	headers []string
	body    string
	status  int
	code    string
}

// TestBadInput is the bad-input table: one case per malformed input kind
// and per SPEC §2 status row the HTTP layer produces itself.
func TestBadInput(t *testing.T) {
	cfg := Config{MaxValueBytes: 64, MaxRequestBytes: 512, MaxTxnOps: 3, MaxIdempotencyKeyBytes: 16}
	h := newHarness(t, cfg)
	h.do("PUT", "/v1/kv/exists", nil, "v")
	b64 := func(n int) string { return strings.Repeat("A", n) } // n multiple of 4 → 3n/4 bytes
	op := func(s string) string { return `{"ops":[` + s + `]}` }
	cases := []badCase{
		// Keys.
		{"empty key", "PUT", "/v1/kv/", nil, "v", 400, "bad_request"},
		{"empty key GET", "GET", "/v1/kv/", nil, "", 400, "bad_request"},
		{"invalid UTF-8 key", "PUT", "/v1/kv/%FF", nil, "v", 400, "bad_request"},
		{"truncated UTF-8 key", "PUT", "/v1/kv/a%C3", nil, "v", 400, "bad_request"},
		{"surrogate UTF-8 key", "PUT", "/v1/kv/%ED%A0%80", nil, "v", 400, "bad_request"},
		{"truncated escape", "PUT", "/v1/kv/a%2", nil, "v", 400, "bad_request"},
		{"non-hex escape", "GET", "/v1/kv/a%zz", nil, "", 400, "bad_request"},
		{"fragment in target", "GET", "/v1/kv/a#b", nil, "", 400, "bad_request"},
		{"key too long", "GET", "/v1/kv/" + strings.Repeat("a", MaxKeyBytes+1), nil, "", 413, "too_large"},
		// Values and bodies.
		{"value too large", "PUT", "/v1/kv/k", nil, strings.Repeat("v", 65), 413, "too_large"},
		{"batch body too large", "POST", "/v1/batch", nil, strings.Repeat(" ", 513), 413, "too_large"},
		// Headers.
		{"gzip PUT body", "PUT", "/v1/kv/k", []string{"Content-Encoding: gzip"}, "\x1f\x8b", 400, "bad_request"},
		{"gzip batch body", "POST", "/v1/batch", []string{"Content-Encoding: gzip"}, "\x1f\x8b", 400, "bad_request"},
		{"If-Match unquoted", "PUT", "/v1/kv/k", []string{"If-Match: 12"}, "v", 400, "bad_request"},
		{"If-Match not a number", "PUT", "/v1/kv/k", []string{`If-Match: "abc"`}, "v", 400, "bad_request"},
		{"If-Match leading zero", "PUT", "/v1/kv/k", []string{`If-Match: "01"`}, "v", 400, "bad_request"},
		{"If-Match zero", "PUT", "/v1/kv/k", []string{`If-Match: "0"`}, "v", 400, "bad_request"},
		{"If-Match negative", "PUT", "/v1/kv/k", []string{`If-Match: "-1"`}, "v", 400, "bad_request"},
		{"If-Match weak", "PUT", "/v1/kv/k", []string{`If-Match: W/"1"`}, "v", 400, "bad_request"},
		{"If-Match list", "DELETE", "/v1/kv/k", []string{`If-Match: "1", "2"`}, "", 400, "bad_request"},
		{"If-Match star", "PUT", "/v1/kv/k", []string{`If-Match: *`}, "v", 400, "bad_request"},
		{"If-Match empty quotes", "PUT", "/v1/kv/k", []string{`If-Match: ""`}, "v", 400, "bad_request"},
		{"If-Match overflow", "PUT", "/v1/kv/k", []string{`If-Match: "18446744073709551616"`}, "v", 400, "bad_request"},
		{"If-Match twice", "PUT", "/v1/kv/k", []string{`If-Match: "1"`, `If-Match: "2"`}, "v", 400, "bad_request"},
		{"If-None-Match twice", "PUT", "/v1/kv/k", []string{`If-None-Match: *`, `If-None-Match: *`}, "v", 400, "bad_request"},
		{"Idempotency-Key twice", "PUT", "/v1/kv/k", []string{"Idempotency-Key: a", "Idempotency-Key: b"}, "v", 400, "bad_request"},
		{"If-None-Match not star", "PUT", "/v1/kv/k", []string{`If-None-Match: "1"`}, "v", 400, "bad_request"},
		{"both conditions", "PUT", "/v1/kv/k", []string{`If-Match: "1"`, "If-None-Match: *"}, "v", 400, "bad_request"},
		{"If-None-Match on delete", "DELETE", "/v1/kv/k", []string{"If-None-Match: *"}, "", 400, "bad_request"},
		{"If-Match on prefix delete", "DELETE", "/v1/kv?prefix=a", []string{`If-Match: "1"`}, "", 400, "bad_request"},
		{"condition header on batch", "POST", "/v1/batch", []string{`If-Match: "1"`}, op(`{"op":"delete","key":"a"}`), 400, "bad_request"},
		{"Idempotency-Key too long", "PUT", "/v1/kv/k", []string{"Idempotency-Key: " + strings.Repeat("i", 17)}, "v", 400, "bad_request"},
		{"Idempotency-Key empty", "DELETE", "/v1/kv/k", []string{"Idempotency-Key: "}, "", 400, "bad_request"},
		{"Idempotency-Key non-ASCII", "POST", "/v1/batch", []string{"Idempotency-Key: é"}, op(`{"op":"delete","key":"a"}`), 400, "bad_request"},
		// Query strings.
		{"unknown query parameter", "GET", "/v1/kv/k?foo=1", nil, "", 400, "bad_request"},
		{"query on put", "PUT", "/v1/kv/k?consistency=stale", nil, "v", 400, "bad_request"},
		{"bad consistency", "GET", "/v1/kv/k?consistency=strong", nil, "", 400, "bad_request"},
		{"repeated parameter", "GET", "/v1/kv/k?consistency=stale&consistency=lease", nil, "", 400, "bad_request"},
		{"limit zero", "GET", "/v1/kv?limit=0", nil, "", 400, "bad_request"},
		{"limit over 1000", "GET", "/v1/kv?limit=1001", nil, "", 400, "bad_request"},
		{"limit negative", "GET", "/v1/kv?limit=-1", nil, "", 400, "bad_request"},
		{"limit not a number", "GET", "/v1/kv?limit=ten", nil, "", 400, "bad_request"},
		{"limit empty", "GET", "/v1/kv?limit=", nil, "", 400, "bad_request"},
		{"limit huge", "GET", "/v1/kv?limit=99999999999999999999", nil, "", 400, "bad_request"},
		{"prefix bad escape", "GET", "/v1/kv?prefix=%ZZ", nil, "", 400, "bad_request"},
		{"prefix invalid UTF-8", "GET", "/v1/kv?prefix=%FF", nil, "", 400, "bad_request"},
		{"prefix too long", "GET", "/v1/kv?prefix=" + strings.Repeat("p", MaxKeyBytes+1), nil, "", 413, "too_large"},
		{"after invalid UTF-8", "GET", "/v1/kv?after=%C0%80", nil, "", 400, "bad_request"},
		{"prefix delete without prefix", "DELETE", "/v1/kv", nil, "", 400, "bad_request"},
		{"prefix delete empty prefix", "DELETE", "/v1/kv?prefix=", nil, "", 400, "bad_request"},
		{"prefix delete with limit", "DELETE", "/v1/kv?prefix=a&limit=3", nil, "", 400, "bad_request"},
		{"query on batch", "POST", "/v1/batch?limit=1", nil, op(`{"op":"delete","key":"a"}`), 400, "bad_request"},
		// Paths and methods.
		{"unknown path", "GET", "/nope", nil, "", 404, "not_found"},
		{"near-miss path", "GET", "/v1/kvx", nil, "", 404, "not_found"},
		{"cluster not built yet", "GET", "/v1/cluster", nil, "", 404, "not_found"},
		{"POST on key", "POST", "/v1/kv/k", nil, "v", 405, "method_not_allowed"},
		{"PATCH on range", "PATCH", "/v1/kv", nil, "", 405, "method_not_allowed"},
		{"PUT on range", "PUT", "/v1/kv", nil, "v", 405, "method_not_allowed"},
		{"GET on batch", "GET", "/v1/batch", nil, "", 405, "method_not_allowed"},
		{"DELETE on healthz", "DELETE", "/healthz", nil, "", 405, "method_not_allowed"},
		// Batch bodies.
		{"batch not JSON", "POST", "/v1/batch", nil, "put a=b", 400, "bad_request"},
		{"batch empty body", "POST", "/v1/batch", nil, "", 400, "bad_request"},
		{"batch top-level array", "POST", "/v1/batch", nil, `[{"op":"delete","key":"a"}]`, 400, "bad_request"},
		{"batch missing ops", "POST", "/v1/batch", nil, `{}`, 400, "bad_request"},
		{"batch ops not array", "POST", "/v1/batch", nil, `{"ops":{}}`, 400, "bad_request"},
		{"batch empty ops", "POST", "/v1/batch", nil, `{"ops":[]}`, 400, "bad_request"},
		{"batch unknown top field", "POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"a"}],"x":1}`, 400, "bad_request"},
		{"batch ops twice", "POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"a"}],"ops":[]}`, 400, "bad_request"},
		{"batch trailing data", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a"}`) + `{}`, 400, "bad_request"},
		{"batch truncated", "POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"a"}`, 400, "bad_request"},
		{"batch op not object", "POST", "/v1/batch", nil, op(`7`), 400, "bad_request"},
		{"batch unknown op", "POST", "/v1/batch", nil, op(`{"op":"increment","key":"a"}`), 400, "bad_request"},
		{"batch missing op", "POST", "/v1/batch", nil, op(`{"key":"a"}`), 400, "bad_request"},
		{"batch unknown op field", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_mach":1}`), 400, "bad_request"},
		{"batch missing key", "POST", "/v1/batch", nil, op(`{"op":"delete"}`), 400, "bad_request"},
		{"batch null key", "POST", "/v1/batch", nil, op(`{"op":"delete","key":null}`), 400, "bad_request"},
		{"batch numeric key", "POST", "/v1/batch", nil, op(`{"op":"delete","key":5}`), 400, "bad_request"},
		{"batch empty key", "POST", "/v1/batch", nil, op(`{"op":"delete","key":""}`), 400, "bad_request"},
		{"batch lone surrogate key", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"\ud800"}`), 400, "bad_request"},
		{"batch high surrogate then letter", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"\ud800\u0041"}`), 400, "bad_request"},
		{"batch high surrogate then high", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"\ud800\ud800"}`), 400, "bad_request"},
		{"batch reversed surrogates", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"\udc00\ud800"}`), 400, "bad_request"},
		{"batch invalid UTF-8 body", "POST", "/v1/batch", nil, op("{\"op\":\"delete\",\"key\":\"\xff\"}"), 400, "bad_request"},
		{"batch bad JSON escape", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"\x"}`), 400, "bad_request"},
		{"batch raw control char in key", "POST", "/v1/batch", nil, op("{\"op\":\"delete\",\"key\":\"a\x01\"}"), 400, "bad_request"},
		{"batch bad base64", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":"!!!!"}`), 400, "bad_request"},
		{"batch unpadded base64", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":"eA"}`), 400, "bad_request"},
		{"batch put without value", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a"}`), 400, "bad_request"},
		{"batch value not string", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":1}`), 400, "bad_request"},
		{"batch delete with value", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","value":""}`), 400, "bad_request"},
		{"batch delete if_absent", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_absent":true}`), 400, "bad_request"},
		{"batch if_match zero", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_match":0}`), 400, "bad_request"},
		{"batch if_match negative", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_match":-1}`), 400, "bad_request"},
		{"batch if_match fraction", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_match":1.5}`), 400, "bad_request"},
		{"batch if_match string", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a","if_match":"1"}`), 400, "bad_request"},
		{"batch both conditions", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":"","if_match":1,"if_absent":true}`), 400, "bad_request"},
		{"batch duplicate key", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a"},{"op":"put","key":"a","value":""}`), 400, "bad_request"},
		{"batch too many ops", "POST", "/v1/batch", nil, op(`{"op":"delete","key":"a"},{"op":"delete","key":"b"},{"op":"delete","key":"c"},{"op":"delete","key":"d"}`), 413, "too_large"},
		{"batch value too large", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":"` + b64(88) + `"}`), 413, "too_large"},
		{"batch value too large encoded", "POST", "/v1/batch", nil, op(`{"op":"put","key":"a","value":"` + b64(400) + `"}`), 413, "too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := h.do(c.method, c.target, c.headers, c.body)
			wantError(t, resp, c.status, c.code)
			if isKVTarget([]byte(c.target)) && header(resp, HeaderRevision) == "" {
				t.Errorf("KV error response without %s", HeaderRevision)
			}
		})
	}
	// None of it reached the store.
	if h.be.rev != 1 {
		t.Errorf("bad input changed the store: revision %d", h.be.rev)
	}
	// Bad input is logged (at debug level).
	if !strings.Contains(h.logs.String(), "bad request") {
		t.Errorf("no log line for bad input")
	}
}

// TestBatchLimitsAtBoundary checks that the limits are not off by one.
func TestBatchLimitsAtBoundary(t *testing.T) {
	h := newHarness(t, Config{MaxValueBytes: 66, MaxTxnOps: 3})
	v66 := strings.Repeat("A", 88) // 66 bytes
	body := `{"ops":[{"op":"put","key":"a","value":"` + v66 + `"},{"op":"delete","key":"b"},{"op":"put","key":"c","value":""}]}`
	wantRevisionBody(t, h.do("POST", "/v1/batch", nil, body))
	if len(h.be.lastBatch.Ops[0].Value) != 66 {
		t.Errorf("value %d bytes", len(h.be.lastBatch.Ops[0].Value))
	}
	wantRevisionBody(t, h.do("PUT", "/v1/kv/k", nil, strings.Repeat("v", 66)))
	key := strings.Repeat("k", MaxKeyBytes)
	wantRevisionBody(t, h.do("POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"`+key+`"}]}`))
	wantError(t, h.do("POST", "/v1/batch", nil, `{"ops":[{"op":"delete","key":"`+key+`k"}]}`), 413, "too_large")
}

// TestBackendErrors maps every error kind a Backend returns to SPEC §2's
// status, code and headers.
func TestBackendErrors(t *testing.T) {
	h := newHarness(t, Config{})
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{&Error{Kind: KindBadRequest, Message: "m"}, 400, "bad_request", ""},
		{&Error{Kind: KindNotFound, Message: "m"}, 404, "not_found", ""},
		{&Error{Kind: KindIdempotencyConflict, Message: "m"}, 409, "idempotency_conflict", ""},
		{&Error{Kind: KindPreconditionFailed, Message: "m"}, 412, "precondition_failed", ""},
		{&Error{Kind: KindTooLarge, Message: "m"}, 413, "too_large", ""},
		{&Error{Kind: KindOverloaded, Message: "queue full"}, 429, "overloaded", "1"},
		{&Error{Kind: KindOverloaded, Message: "m", RetryAfter: 2500e6}, 429, "overloaded", "3"},
		{&Error{Kind: KindUnavailable, Message: "no leader"}, 503, "unavailable", "1"},
		{fmt.Errorf("wrapped: %w", &Error{Kind: KindUnavailable, Message: "m", RetryAfter: 1}), 503, "unavailable", "1"},
		{&Error{Kind: KindTimeout, Message: "m"}, 504, "timeout", ""},
		{&Error{Kind: KindQuotaExceeded, Message: "m"}, 507, "quota_exceeded", ""},
		{errors.New("untyped"), 500, "internal", ""},
		{&Error{Kind: ErrorKind(200), Message: "m"}, 500, "internal", ""},
	}
	requests := []struct{ method, target, body string }{
		{"PUT", "/v1/kv/k", "v"},
		{"GET", "/v1/kv/k", ""},
		{"DELETE", "/v1/kv/k", ""},
		{"GET", "/v1/kv?prefix=k", ""},
		{"DELETE", "/v1/kv?prefix=k", ""},
		{"POST", "/v1/batch", `{"ops":[{"op":"delete","key":"k"}]}`},
	}
	for _, c := range cases {
		for _, r := range requests {
			h.be.mu.Lock()
			h.be.failWith = c.err
			h.be.mu.Unlock()
			resp := h.do(r.method, r.target, nil, r.body)
			name := fmt.Sprintf("%v on %s %s", c.err, r.method, r.target)
			t.Run(name, func(t *testing.T) {
				wantError(t, resp, c.status, c.code)
				if got := header(resp, "Retry-After"); got != c.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
				}
				if header(resp, HeaderRevision) == "" {
					t.Errorf("no %s", HeaderRevision)
				}
			})
		}
	}
	if !strings.Contains(h.logs.String(), "untyped error") {
		t.Errorf("untyped backend error not logged")
	}
}

func TestPanicInBackendIsContained(t *testing.T) {
	h := newHarness(t, Config{})
	h.be.mu.Lock()
	h.be.panicNext = true
	h.be.mu.Unlock()
	wantError(t, h.do("GET", "/v1/kv/k", nil, ""), 500, "internal")
	// The server still serves.
	wantRevisionBody(t, h.do("PUT", "/v1/kv/k", nil, "v"))
	if !strings.Contains(h.logs.String(), "panic") {
		t.Errorf("panic not logged")
	}
}
