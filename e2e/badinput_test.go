package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusTable checks SPEC §2's status table against the real binary,
// one case per row it can provoke on a single node, plus the bad-input
// cases of issue 6. Every error body is the JSON shape with its code.
func TestStatusTable(t *testing.T) {
	flags := append(nodeFlags(t, t.TempDir()), "--max-value-bytes", "8192", "--quota-bytes", "16384")
	p := start(t, flags...)
	p.waitReady()
	p.must(200, "PUT", "/v1/kv/exists", "v")
	longKey := strings.Repeat("k", 4097)
	big := strings.Repeat("x", 8193)
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		headers      []string
		status       int
		code         string
	}{
		{"malformed key escape", "GET", "/v1/kv/%zz", "", nil, 400, "bad_request"},
		{"invalid UTF-8 key", "PUT", "/v1/kv/%ff%fe", "v", nil, 400, "bad_request"},
		{"empty key", "PUT", "/v1/kv/", "v", nil, 400, "bad_request"},
		{"bad If-Match", "PUT", "/v1/kv/exists", "v", []string{"If-Match", "W/\"1\""}, 400, "bad_request"},
		{"bad query value", "GET", "/v1/kv?limit=abc", "", nil, 400, "bad_request"},
		{"unknown query parameter", "GET", "/v1/kv/exists?consistency=maybe", "", nil, 400, "bad_request"},
		{"bad JSON", "POST", "/v1/batch", `{"ops":[`, nil, 400, "bad_request"},
		{"bad base64", "POST", "/v1/batch", `{"ops":[{"op":"put","key":"a","value":"!!"}]}`, nil, 400, "bad_request"},
		{"unknown op", "POST", "/v1/batch", `{"ops":[{"op":"frobnicate","key":"a"}]}`, nil, 400, "bad_request"},
		{"absent key", "GET", "/v1/kv/absent", "", nil, 404, "not_found"},
		{"unknown path", "GET", "/v2/nothing", "", nil, 404, "not_found"},
		{"precondition", "PUT", "/v1/kv/exists", "v", []string{"If-None-Match", "*"}, 412, "precondition_failed"},
		{"key too long", "GET", "/v1/kv/" + longKey, "", nil, 413, "too_large"},
		{"value too large", "PUT", "/v1/kv/big", big, nil, 413, "too_large"},
	} {
		r := p.raw(tc.method, tc.path, tc.body, tc.headers...)
		var e struct{ Error, Code string }
		if r.status != tc.status || json.Unmarshal([]byte(r.body), &e) != nil || e.Code != tc.code || e.Error == "" {
			t.Errorf("%s: %s %s = %d %s; want %d %s", tc.name, tc.method, tc.path[:min(len(tc.path), 40)], r.status, r.body, tc.status, tc.code)
		}
	}

	// 409: an Idempotency-Key reused with a different request.
	p.must(200, "PUT", "/v1/kv/i", "one", "Idempotency-Key", "k1")
	if r := p.do("PUT", "/v1/kv/i", "two", "Idempotency-Key", "k1"); r.status != 409 || !strings.Contains(r.body, "idempotency_conflict") {
		t.Errorf("idempotency conflict: %d %s", r.status, r.body)
	}

	// 507: the quota is reached; deletes still work and free it.
	value := strings.Repeat("q", 4000)
	full := false
	var stored []string
	for i := 0; i < 10 && !full; i++ {
		key := "/v1/kv/fill" + string(rune('a'+i))
		r := p.do("PUT", key, value)
		switch r.status {
		case 200:
			stored = append(stored, key)
		case 507:
			if !strings.Contains(r.body, "quota_exceeded") {
				t.Fatalf("507 body %s", r.body)
			}
			full = true
		default:
			t.Fatalf("fill: %d %s", r.status, r.body)
		}
	}
	if !full || len(stored) == 0 {
		t.Fatalf("quota of 16 KiB never reached (%d stored)", len(stored))
	}
	p.must(200, "DELETE", stored[0], "")
	p.must(200, "PUT", "/v1/kv/after-free", value)
}
