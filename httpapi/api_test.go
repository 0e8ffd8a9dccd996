package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestPutGetDelete(t *testing.T) {
	h := newHarness(t, Config{})

	resp := h.do("PUT", "/v1/kv/greeting", nil, "hello\x00world")
	rev := wantRevisionBody(t, resp)
	if rev != 1 {
		t.Fatalf("first put revision %d, want 1", rev)
	}
	if got := header(resp, "ETag"); got != `"1"` {
		t.Errorf("PUT ETag %q, want %q", got, `"1"`)
	}
	if header(resp, HeaderLeader) != "" {
		t.Errorf("leader header on a leader's answer: %q", header(resp, HeaderLeader))
	}

	h.do("PUT", "/v1/kv/other", nil, "x") // revision 2

	resp = h.do("GET", "/v1/kv/greeting", nil, "")
	if resp.StatusCode() != 200 || string(resp.Body()) != "hello\x00world" {
		t.Fatalf("GET: %d %q", resp.StatusCode(), resp.Body())
	}
	if got := header(resp, "ETag"); got != `"1"` {
		t.Errorf("GET ETag %q, want the key's revision \"1\"", got)
	}
	if got := header(resp, HeaderRevision); got != "2" {
		t.Errorf("GET %s %q, want the store revision 2", HeaderRevision, got)
	}
	if ct := string(resp.Header.ContentType()); ct != contentBinary {
		t.Errorf("GET Content-Type %q", ct)
	}
	if h.be.lastGet.Consistency != Linearizable {
		t.Errorf("default consistency %v, want linearizable", h.be.lastGet.Consistency)
	}

	for _, c := range []Consistency{Linearizable, Lease, Stale} {
		resp = h.do("GET", "/v1/kv/greeting?consistency="+c.String(), nil, "")
		if resp.StatusCode() != 200 || h.be.lastGet.Consistency != c {
			t.Errorf("consistency=%v: status %d, backend saw %v", c, resp.StatusCode(), h.be.lastGet.Consistency)
		}
	}

	resp = h.do("HEAD", "/v1/kv/greeting", nil, "")
	if resp.StatusCode() != 200 || header(resp, "ETag") != `"1"` || resp.Header.ContentLength() != len("hello\x00world") {
		t.Errorf("HEAD: %d etag %q length %d", resp.StatusCode(), header(resp, "ETag"), resp.Header.ContentLength())
	}

	resp = h.do("DELETE", "/v1/kv/greeting", nil, "")
	if rev := wantRevisionBody(t, resp); rev != 3 {
		t.Errorf("delete revision %d, want 3", rev)
	}
	resp = h.do("GET", "/v1/kv/greeting", nil, "")
	wantError(t, resp, 404, "not_found")
	if got := header(resp, HeaderRevision); got != "3" {
		t.Errorf("404 %s %q, want 3", HeaderRevision, got)
	}
	wantError(t, h.do("DELETE", "/v1/kv/greeting", nil, ""), 404, "not_found")

	// Content-Encoding: identity is no encoding.
	wantRevisionBody(t, h.do("PUT", "/v1/kv/id", []string{"Content-Encoding: identity"}, "raw"))

	// Empty value is a value.
	wantRevisionBody(t, h.do("PUT", "/v1/kv/empty", nil, ""))
	if v := h.be.lastPut.Value; len(v) != 0 {
		t.Errorf("empty value reached the backend as %q", v)
	}
	resp = h.do("GET", "/v1/kv/empty", nil, "")
	if resp.StatusCode() != 200 || len(resp.Body()) != 0 {
		t.Errorf("empty value: %d %q", resp.StatusCode(), resp.Body())
	}
}

func TestConditionalWrites(t *testing.T) {
	h := newHarness(t, Config{})
	rev := wantRevisionBody(t, h.do("PUT", "/v1/kv/k", []string{"If-None-Match: *"}, "v1"))
	if !h.be.lastPut.IfAbsent || h.be.lastPut.IfMatch != 0 {
		t.Errorf("If-None-Match: * reached the backend as %+v", h.be.lastPut)
	}
	wantError(t, h.do("PUT", "/v1/kv/k", []string{"If-None-Match: *"}, "v2"), 412, "precondition_failed")

	ifMatch := fmt.Sprintf(`If-Match: "%d"`, rev)
	rev2 := wantRevisionBody(t, h.do("PUT", "/v1/kv/k", []string{ifMatch}, "v2"))
	if h.be.lastPut.IfMatch != rev {
		t.Errorf("If-Match reached the backend as %d, want %d", h.be.lastPut.IfMatch, rev)
	}
	wantError(t, h.do("PUT", "/v1/kv/k", []string{ifMatch}, "v3"), 412, "precondition_failed")
	wantError(t, h.do("DELETE", "/v1/kv/k", []string{ifMatch}, ""), 412, "precondition_failed")
	wantRevisionBody(t, h.do("DELETE", "/v1/kv/k", []string{fmt.Sprintf(`If-Match:  "%d" `, rev2)}, ""))
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, Config{})
	idem := "Idempotency-Key: req-1"
	r1 := wantRevisionBody(t, h.do("PUT", "/v1/kv/k", []string{idem}, "v"))
	fp := h.be.lastPut.Idempotency.Fingerprint
	if string(h.be.lastPut.Idempotency.Key) != "req-1" || fp == (Fingerprint{}) {
		t.Fatalf("idempotency not passed: %+v", h.be.lastPut.Idempotency)
	}
	// The same request again: the first outcome, not a second write.
	r2 := wantRevisionBody(t, h.do("PUT", "/v1/kv/k", []string{idem}, "v"))
	if r2 != r1 || h.be.lastPut.Idempotency.Fingerprint != fp {
		t.Errorf("retry: revision %d fingerprint %x, want %d %x", r2, h.be.lastPut.Idempotency.Fingerprint, r1, fp)
	}
	// Same key, another body: another fingerprint, 409.
	wantError(t, h.do("PUT", "/v1/kv/k", []string{idem}, "w"), 409, "idempotency_conflict")
	if h.be.lastPut.Idempotency.Fingerprint == fp {
		t.Errorf("different bodies gave the same fingerprint")
	}
	// No key: zero fingerprint.
	h.do("PUT", "/v1/kv/k", nil, "v")
	if h.be.lastPut.Idempotency.Key != nil || h.be.lastPut.Idempotency.Fingerprint != (Fingerprint{}) {
		t.Errorf("no Idempotency-Key, backend saw %+v", h.be.lastPut.Idempotency)
	}
	// Batch fingerprints ignore JSON spelling.
	b1 := `{"ops":[{"op":"put","key":"a","value":"eA=="}]}`
	b2 := "{ \"ops\" : [ { \"value\":\"eA==\", \"key\":\"\\u0061\", \"op\":\"put\" } ] }"
	wantRevisionBody(t, h.do("POST", "/v1/batch", []string{"Idempotency-Key: b"}, b1))
	fpb := h.be.lastBatch.Idempotency.Fingerprint
	wantRevisionBody(t, h.do("POST", "/v1/batch", []string{"Idempotency-Key: b"}, b2))
	if h.be.lastBatch.Idempotency.Fingerprint != fpb {
		t.Errorf("equivalent batches got different fingerprints")
	}
	wantError(t, h.do("POST", "/v1/batch", []string{"Idempotency-Key: b"}, `{"ops":[{"op":"put","key":"a","value":"eQ=="}]}`),
		409, "idempotency_conflict")
}

func TestFingerprintDistinguishesRequests(t *testing.T) {
	var f fingerprinter
	seen := map[Fingerprint]string{}
	add := func(name string, fp Fingerprint) {
		t.Helper()
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s and %s share a fingerprint", name, prev)
		}
		seen[fp] = name
	}
	add("put a=b", f.put(&PutRequest{Key: []byte("a"), Value: []byte("b")}))
	add("put ab=", f.put(&PutRequest{Key: []byte("ab"), Value: []byte("")}))
	add("put a=b if-match 1", f.put(&PutRequest{Key: []byte("a"), Value: []byte("b"), IfMatch: 1}))
	add("put a=b if-absent", f.put(&PutRequest{Key: []byte("a"), Value: []byte("b"), IfAbsent: true}))
	add("delete a", f.delete(&DeleteRequest{Key: []byte("a")}))
	add("delete a if-match 1", f.delete(&DeleteRequest{Key: []byte("a"), IfMatch: 1}))
	add("delete-prefix a", f.deletePrefix(&DeletePrefixRequest{Prefix: []byte("a")}))
	add("batch put a=b", f.batch(&BatchRequest{Ops: []BatchOp{{Kind: OpPut, Key: []byte("a"), Value: []byte("b")}}}))
	add("batch delete a", f.batch(&BatchRequest{Ops: []BatchOp{{Kind: OpDelete, Key: []byte("a")}}}))
	add("batch 2 ops", f.batch(&BatchRequest{Ops: []BatchOp{{Kind: OpDelete, Key: []byte("a")}, {Kind: OpDelete, Key: []byte("b")}}}))
	add("batch 2 ops swapped", f.batch(&BatchRequest{Ops: []BatchOp{{Kind: OpDelete, Key: []byte("b")}, {Kind: OpDelete, Key: []byte("a")}}}))
	if a, b := f.put(&PutRequest{Key: []byte("k"), Value: []byte("v")}), f.put(&PutRequest{Key: []byte("k"), Value: []byte("v")}); a != b {
		t.Errorf("same request, different fingerprints")
	}
}

type listBody struct {
	Items []struct {
		Key      string `json:"key"`
		Value    []byte `json:"value"` // base64 in JSON
		Revision uint64 `json:"revision"`
	} `json:"items"`
	More     bool   `json:"more"`
	Revision uint64 `json:"revision"`
}

func decodeList(t *testing.T, body []byte) listBody {
	t.Helper()
	var lb listBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lb); err != nil {
		t.Fatalf("list body %q: %v", body, err)
	}
	return lb
}

func TestListPaginationAndDeletePrefix(t *testing.T) {
	h := newHarness(t, Config{})
	keys := []string{"app/a", "app/b", "app/c\"q", "app/d\n", "app/é", "apple", "b"}
	for i, k := range keys {
		wantRevisionBody(t, h.do("PUT", "/v1/kv/"+url.PathEscape(k), nil, fmt.Sprintf("v%d\xff", i)))
	}
	var got []string
	after := ""
	for page := 0; page < 10; page++ {
		target := "/v1/kv?prefix=app%2F&limit=2"
		if after != "" {
			target += "&after=" + url.QueryEscape(after)
		}
		resp := h.do("GET", target, nil, "")
		if resp.StatusCode() != 200 {
			t.Fatalf("list: %d %s", resp.StatusCode(), resp.Body())
		}
		lb := decodeList(t, resp.Body())
		if fmt.Sprint(lb.Revision) != header(resp, HeaderRevision) || lb.Revision != uint64(len(keys)) {
			t.Errorf("list revision %d, header %q", lb.Revision, header(resp, HeaderRevision))
		}
		for _, it := range lb.Items {
			got = append(got, it.Key)
			i := indexOf(keys, it.Key)
			if want := fmt.Sprintf("v%d\xff", i); string(it.Value) != want || it.Revision != uint64(i+1) {
				t.Errorf("item %q: value %q rev %d, want %q %d", it.Key, it.Value, it.Revision, want, i+1)
			}
		}
		if !lb.More {
			break
		}
		after = lb.Items[len(lb.Items)-1].Key
	}
	if want := keys[:5]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paginated keys %q, want %q", got, want)
	}
	if h.be.lastList.Limit != 2 || h.be.lastList.MaxBytes != 4<<20 {
		t.Errorf("backend list request %+v", h.be.lastList)
	}

	// Defaults: every key, limit 100.
	lb := decodeList(t, h.do("GET", "/v1/kv", nil, "").Body())
	if len(lb.Items) != len(keys) || lb.More || h.be.lastList.Limit != DefaultListLimit {
		t.Errorf("default list: %d items more=%v limit %d", len(lb.Items), lb.More, h.be.lastList.Limit)
	}
	// '+' in a query is a space; %2B is a plus.
	h.do("GET", "/v1/kv?prefix=a+b%2Bc&limit=1000&consistency=stale", nil, "")
	if string(h.be.lastList.Prefix) != "a b+c" || h.be.lastList.Limit != 1000 || h.be.lastList.Consistency != Stale {
		t.Errorf("list request %+v", h.be.lastList)
	}
	// Empty result.
	lb = decodeList(t, h.do("GET", "/v1/kv?prefix=zzz", nil, "").Body())
	if lb.Items == nil || len(lb.Items) != 0 {
		t.Errorf("empty list must be items: [], got %+v", lb.Items)
	}

	resp := h.do("DELETE", "/v1/kv?prefix=app", nil, "")
	var dp struct {
		Revision uint64 `json:"revision"`
		Deleted  uint64 `json:"deleted"`
	}
	if err := json.Unmarshal(resp.Body(), &dp); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("delete prefix: %d %s %v", resp.StatusCode(), resp.Body(), err)
	}
	if dp.Deleted != 6 || fmt.Sprint(dp.Revision) != header(resp, HeaderRevision) {
		t.Errorf("delete prefix %+v, header %q", dp, header(resp, HeaderRevision))
	}
	lb = decodeList(t, h.do("GET", "/v1/kv", nil, "").Body())
	if len(lb.Items) != 1 || lb.Items[0].Key != "b" {
		t.Errorf("after delete prefix: %+v", lb.Items)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestListBoundedByBytes(t *testing.T) {
	h := newHarness(t, Config{MaxListResponseBytes: 10})
	for _, k := range []string{"a", "b", "c"} {
		h.do("PUT", "/v1/kv/"+k, nil, strings.Repeat(k, 8))
	}
	lb := decodeList(t, h.do("GET", "/v1/kv", nil, "").Body())
	if len(lb.Items) != 2 || !lb.More {
		t.Errorf("byte-bounded page: %d items, more=%v; want 2, true", len(lb.Items), lb.More)
	}
	// A Backend that ignores MaxBytes: the handler cuts the page itself.
	h.be.mu.Lock()
	h.be.ignoreMaxBytes = true
	h.be.mu.Unlock()
	lb = decodeList(t, h.do("GET", "/v1/kv", nil, "").Body())
	if len(lb.Items) != 2 || !lb.More || lb.Items[1].Key != "b" {
		t.Errorf("handler-bounded page: %d items, more=%v; want 2, true", len(lb.Items), lb.More)
	}
}

func TestListLargeResponse(t *testing.T) {
	// More than listFlushBytes of JSON: built in pieces, must still be one
	// valid document.
	h := newHarness(t, Config{})
	val := strings.Repeat("v", 1000)
	for i := 0; i < 100; i++ {
		h.do("PUT", fmt.Sprintf("/v1/kv/k%03d", i), nil, val)
	}
	lb := decodeList(t, h.do("GET", "/v1/kv?limit=1000", nil, "").Body())
	if len(lb.Items) != 100 || lb.More {
		t.Fatalf("got %d items more=%v", len(lb.Items), lb.More)
	}
	for i, it := range lb.Items {
		if it.Key != fmt.Sprintf("k%03d", i) || string(it.Value) != val {
			t.Fatalf("item %d: %q", i, it.Key)
		}
	}
}

func TestBatch(t *testing.T) {
	h := newHarness(t, Config{})
	wantRevisionBody(t, h.do("PUT", "/v1/kv/a", nil, "old")) // rev 1
	wantRevisionBody(t, h.do("PUT", "/v1/kv/b", nil, "old")) // rev 2
	v := base64.StdEncoding.EncodeToString([]byte("new\x00"))
	body := `{"ops":[{"op":"put","key":"a","value":"` + v + `","if_match":1},{"op":"delete","key":"b"},{"op":"put","key":"c","value":"","if_absent":true}]}`
	rev := wantRevisionBody(t, h.do("POST", "/v1/batch", nil, body))
	if rev != 3 {
		t.Errorf("batch revision %d, want 3", rev)
	}
	ops := h.be.lastBatch.Ops
	if len(ops) != 3 || ops[0].Kind != OpPut || string(ops[0].Value) != "new\x00" || ops[0].IfMatch != 1 ||
		ops[1].Kind != OpDelete || string(ops[1].Key) != "b" || !ops[2].IfAbsent || ops[2].Value == nil {
		t.Errorf("backend saw %+v", ops)
	}
	resp := h.do("GET", "/v1/kv/a", nil, "")
	if string(resp.Body()) != "new\x00" || header(resp, "ETag") != `"3"` {
		t.Errorf("a after batch: %q %s", resp.Body(), header(resp, "ETag"))
	}
	// Conditions fail: 412 with the failing indexes, nothing applied.
	body = `{"ops":[{"op":"put","key":"a","value":"eA==","if_match":1},{"op":"put","key":"x","value":"eA=="},{"op":"put","key":"c","value":"eA==","if_absent":true}]}`
	eb := wantError(t, h.do("POST", "/v1/batch", nil, body), 412, "precondition_failed")
	if fmt.Sprint(eb.Failed) != "[0 2]" {
		t.Errorf("failed = %v, want [0 2]", eb.Failed)
	}
	wantError(t, h.do("GET", "/v1/kv/x", nil, ""), 404, "not_found")
}

func TestFollowerHeaders(t *testing.T) {
	h := newHarness(t, Config{})
	h.be.meta = Meta{Follower: true, Leader: "node2"}
	resp := h.do("PUT", "/v1/kv/k", nil, "v")
	wantRevisionBody(t, resp)
	if got := header(resp, HeaderLeader); got != "node2" {
		t.Errorf("%s = %q, want node2", HeaderLeader, got)
	}
	for _, r := range []struct{ method, target string }{
		{"GET", "/v1/kv/k"}, {"GET", "/v1/kv/missing"}, {"GET", "/v1/kv"}, {"PUT", "/v1/kv/%FF"}, {"GET", "/v1/kv?limit=0"},
	} {
		resp := h.do(r.method, r.target, nil, "")
		if header(resp, HeaderLeader) != "node2" || header(resp, HeaderRevision) != "1" {
			t.Errorf("%s %s: leader %q revision %q", r.method, r.target, header(resp, HeaderLeader), header(resp, HeaderRevision))
		}
	}
	// A leader never sends the leader header, even naming itself.
	h.be.meta = Meta{Leader: "node1"}
	if resp := h.do("GET", "/v1/kv/k", nil, ""); header(resp, HeaderLeader) != "" {
		t.Errorf("leader sent %s %q", HeaderLeader, header(resp, HeaderLeader))
	}
	// A follower that knows no leader sends no leader header.
	h.be.meta = Meta{Follower: true}
	if resp := h.do("GET", "/v1/kv/k", nil, ""); header(resp, HeaderLeader) != "" {
		t.Errorf("unknown leader sent as %q", header(resp, HeaderLeader))
	}
}

func TestHealthAndReady(t *testing.T) {
	h := newHarness(t, Config{DefaultRetryAfter: 3 * time.Second})
	resp := h.do("GET", "/healthz", nil, "")
	if resp.StatusCode() != 200 {
		t.Errorf("healthz %d", resp.StatusCode())
	}
	h.be.readyErr = &Error{Kind: KindUnavailable, Message: "no leader"}
	if resp := h.do("GET", "/healthz", nil, ""); resp.StatusCode() != 200 || string(resp.Body()) != "{\"status\":\"up\"}\n" {
		t.Errorf("healthz of a not-ready node: %d %q", resp.StatusCode(), resp.Body()) // still up
	}
	resp = h.do("GET", "/readyz", nil, "")
	eb := wantError(t, resp, 503, "unavailable")
	if eb.Error != "no leader" || header(resp, "Retry-After") != "3" {
		t.Errorf("readyz: %+v Retry-After %q", eb, header(resp, "Retry-After"))
	}
	h.be.readyErr = &Error{Kind: KindTimeout, Message: "apply lagging"}
	wantError(t, h.do("GET", "/readyz", nil, ""), 503, "unavailable")
	h.be.readyErr = errors.New("some untyped failure")
	wantError(t, h.do("GET", "/readyz", nil, ""), 503, "unavailable")
	h.be.readyErr = nil
	if resp := h.do("GET", "/readyz", nil, ""); resp.StatusCode() != 200 {
		t.Errorf("ready backend: readyz %d %s", resp.StatusCode(), resp.Body())
	}
	resp = h.do("POST", "/readyz", nil, "")
	wantError(t, resp, 405, "method_not_allowed")
	if header(resp, "Allow") != "GET, HEAD" || header(resp, HeaderRevision) != "" {
		t.Errorf("405 on /readyz: Allow %q, %s %q", header(resp, "Allow"), HeaderRevision, header(resp, HeaderRevision))
	}
}

func TestZeroRevisionIsABackendBug(t *testing.T) {
	for _, raw := range []string{
		"PUT /v1/kv/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nv",
		"GET /v1/kv/k HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		api, ctx := handlerCtx(t, raw)
		api.backend.(*fixedBackend).zero = true
		api.Handler()(ctx)
		if ctx.Response.StatusCode() != 500 {
			t.Errorf("%.20q with revision 0 from the backend: status %d, want 500", raw, ctx.Response.StatusCode())
		}
	}
}
