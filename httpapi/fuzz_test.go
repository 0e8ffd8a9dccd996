package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// Fuzz targets for every decoder of client input. Each runs its seed
// corpus as a normal unit test; `go test -fuzz=FuzzX` explores further.

func FuzzDecodeKey(f *testing.F) {
	for _, s := range []string{"", "a", "a%2F..%2Fb", "/x", "%", "%2", "%zz", "%FF", "%C3%A9", "a+b",
		"..", strings.Repeat("%6B", MaxKeyBytes), strings.Repeat("k", MaxKeyBytes+1), "%ED%A0%80", "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		key, err := decodeKey(nil, raw)
		// Differential check against net/url's path unescaping.
		ref, refErr := url.PathUnescape(string(raw))
		if err == nil {
			if len(key) == 0 || len(key) > MaxKeyBytes || !utf8.Valid(key) {
				t.Fatalf("accepted bad key %q", key)
			}
			if refErr != nil || ref != string(key) {
				t.Fatalf("decodeKey(%q) = %q, net/url says %q (%v)", raw, key, ref, refErr)
			}
			// Round trip through full percent-encoding.
			var enc strings.Builder
			for _, c := range key {
				fmt.Fprintf(&enc, "%%%02X", c)
			}
			again, err2 := decodeKey(nil, []byte(enc.String()))
			if err2 != nil || !bytes.Equal(again, key) {
				t.Fatalf("round trip of %q: %q %v", key, again, err2)
			}
			return
		}
		if err.Kind != KindBadRequest && err.Kind != KindTooLarge {
			t.Fatalf("kind %v", err.Kind)
		}
		if refErr == nil && len(ref) > 0 && len(ref) <= MaxKeyBytes && utf8.ValidString(ref) && len(raw) <= maxEncodedKeyBytes {
			t.Fatalf("decodeKey(%q) refused (%s) a key net/url decodes to %q", raw, err.Message, ref)
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "prefix=a&after=b&limit=10&consistency=stale", "limit=0", "limit=1001",
		"prefix=%FF", "prefix=a+b", "&&", "prefix", "x=1", "limit=1&limit=2", "after=%"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, query []byte) {
		var q queryArgs
		err := parseQuery(&q, query, paramPrefix|paramAfter|paramLimit|paramConsistency, nil, nil)
		if err != nil {
			return
		}
		if q.limit < 1 || q.limit > MaxListLimit {
			t.Fatalf("limit %d accepted", q.limit)
		}
		if checkKey(q.prefix, true) != nil || checkKey(q.after, true) != nil {
			t.Fatalf("bad prefix/after accepted: %q %q", q.prefix, q.after)
		}
		if q.consistency > Stale {
			t.Fatalf("consistency %d", q.consistency)
		}
		// Differential: net/url agrees on the values it can parse.
		if vals, uerr := url.ParseQuery(string(query)); uerr == nil {
			if p := vals.Get("prefix"); p != string(q.prefix) {
				t.Fatalf("prefix %q, net/url %q", q.prefix, p)
			}
		}
	})
}

func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{`"12"`, `12`, `"0"`, `""`, `W/"1"`, `*`, ` "7" `, `"18446744073709551615"`, `"18446744073709551616"`, `"1", "2"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		n, err := parseIfMatch(v)
		tv := strings.Trim(string(v), " \t")
		ref, refErr := uint64(0), error(nil)
		if len(tv) >= 2 && tv[0] == '"' && tv[len(tv)-1] == '"' && !strings.ContainsAny(tv[1:len(tv)-1], "+-_") && !strings.HasPrefix(tv, `"0`) {
			ref, refErr = strconv.ParseUint(tv[1:len(tv)-1], 10, 64)
		} else {
			refErr = strconv.ErrSyntax
		}
		if refErr == nil && ref == 0 {
			refErr = strconv.ErrRange
		}
		if refErr != nil {
			ref = 0
		}
		if (err == nil) != (refErr == nil) || n != ref {
			t.Fatalf("parseIfMatch(%q) = %d, %v; reference %d, %v", v, n, err, ref, refErr)
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		`{"ops":[{"op":"put","key":"a","value":"eA==","if_match":12},{"op":"delete","key":"b"},{"op":"put","key":"c","value":"","if_absent":true}]}`,
		`{"ops":[]}`, `{}`, `[]`, `{"ops":[{"op":"delete","key":"\ud800"}]}`, `{"ops":[{"op":"delete","key":"\ud83d\ude00"}]}`,
		`{"ops":[{"op":"put","key":"a","value":"!!"}]}`, `{"ops":[{"op":"delete","key":"a"},{"op":"delete","key":"a"}]}`,
		`{"ops":[{"op":"delete","key":"a","if_match":1e3}]}`, `{"ops":[1,2,3,4,5]}`, `{"ops":[{"op":"delete","key":"a"}]} x`,
	} {
		f.Add([]byte(s))
	}
	lim := batchLimits{maxOps: 4, maxValueBytes: 16}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := parseBatch(nil, body, lim)
		if err != nil {
			if err.Kind != KindBadRequest && err.Kind != KindTooLarge {
				t.Fatalf("kind %v", err.Kind)
			}
			return
		}
		if len(ops) == 0 || len(ops) > lim.maxOps {
			t.Fatalf("%d ops accepted", len(ops))
		}
		seen := map[string]bool{}
		for i, op := range ops {
			if checkKey(op.Key, false) != nil || seen[string(op.Key)] {
				t.Fatalf("op %d: bad or duplicate key %q", i, op.Key)
			}
			seen[string(op.Key)] = true
			if len(op.Value) > lim.maxValueBytes || (op.IfMatch != 0 && op.IfAbsent) {
				t.Fatalf("op %d: %+v", i, op)
			}
			switch op.Kind {
			case OpPut:
			case OpDelete:
				if op.Value != nil || op.IfAbsent {
					t.Fatalf("op %d: delete with %+v", i, op)
				}
			default:
				t.Fatalf("op %d: kind %d", i, op.Kind)
			}
		}
		// Differential: what encoding/json reads agrees on keys.
		var ref struct {
			Ops []struct {
				Key string `json:"key"`
			} `json:"ops"`
		}
		if json.Unmarshal(body, &ref) != nil || len(ref.Ops) != len(ops) {
			t.Fatalf("accepted a body encoding/json reads differently")
		}
		for i := range ops {
			if ref.Ops[i].Key != string(ops[i].Key) {
				t.Fatalf("op %d key %q, encoding/json %q", i, ops[i].Key, ref.Ops[i].Key)
			}
		}
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\x1f\x7f", "é\u2028", "\xff", "a\nb\tc\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		out := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, out, err)
		}
		if utf8.Valid(s) && back != string(s) {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
	})
}

// FuzzHandler feeds whole requests through the handler: whatever the
// request, the answer is never a 500 (a recovered panic) and every error
// is the JSON error shape.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"PUT /v1/kv/a%2F..%2Fb HTTP/1.1\r\nHost: h\r\nIf-Match: \"3\"\r\nContent-Length: 1\r\n\r\nv",
		"GET /v1/kv/k?consistency=stale HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /v1/kv?prefix=a&after=b&limit=3 HTTP/1.1\r\nHost: h\r\n\r\n",
		"DELETE /v1/kv?prefix=a HTTP/1.1\r\nHost: h\r\nIdempotency-Key: x\r\n\r\n",
		"POST /v1/batch HTTP/1.1\r\nHost: h\r\nContent-Length: 35\r\n\r\n{\"ops\":[{\"op\":\"delete\",\"key\":\"k\"}]}",
		"PUT /v1/kv/%FF HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nContent-Length: 0\r\n\r\n",
		"GET http://h/v1/kv/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /readyz HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	api, err := New(Config{MaxValueBytes: 256, MaxRequestBytes: 1024, MaxTxnOps: 8},
		newMemBackend(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	handler := api.Handler()
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		if err := req.ReadLimitBody(bufio.NewReader(bytes.NewReader(raw)), 4096); err != nil {
			return // fasthttp refuses it before the handler
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		handler(&ctx)
		status := ctx.Response.StatusCode()
		if status == 500 {
			t.Fatalf("500 for %q: %s", raw, ctx.Response.Body())
		}
		if status >= 400 {
			var eb struct {
				Error string `json:"error"`
				Code  string `json:"code"`
			}
			if err := json.Unmarshal(ctx.Response.Body(), &eb); err != nil || eb.Error == "" || eb.Code == "" {
				t.Fatalf("status %d with body %q for %q", status, ctx.Response.Body(), raw)
			}
		}
	})
}
