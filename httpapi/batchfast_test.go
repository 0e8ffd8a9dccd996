package httpapi

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// benchBatchBody is what `edgekv bench --workload batch` sends: n puts of
// 256-byte values.
func benchBatchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"ops":[`)
	v := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 256))
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"op":"put","key":"bench/%08d","value":%q}`, i, v)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

var fastSeeds = []string{
	`{"ops":[{"op":"put","key":"a","value":"eA==","if_match":12},{"op":"delete","key":"b"},{"op":"put","key":"c","value":"","if_absent":true}]}`,
	" {\n\t\"ops\" : [ {\"key\":\"k\", \"op\":\"delete\", \"if_match\": 7} ] } \r\n",
	`{"ops":[{"op":"put","key":"é/ü","value":"AAEC","if_absent":false}]}`,
	`{"ops":[{"op":"put","key":"a\u0062","value":"eA=="}]}`,         // an escape: slow path
	`{"ops":[{"op":"put","key":"a","value":"eA==","op":"delete"}]}`, // a field twice: slow path
	`{"ops":[{"op":"put","key":"a","value":"eA==","if_match":0}]}`,
	`{"ops":[{"op":"put","key":"a","value":"eA==","if_match":007}]}`,
	`{"ops":[{"op":"put","key":"a","value":"eA==","if_match":18446744073709551616}]}`,
	`{"ops":[{"op":"put","key":"a","value":"eA=="},{"op":"put","key":"a","value":"eA=="}]}`,
	`{"ops":[{"op":"put","key":"a","value":"e A=="}]}`,
	`{"ops":[{"op":"delete","key":"a","value":"eA=="}]}`,
	`{"ops":[{"Op":"delete","key":"a"}]}`,
	`{"ops":[]}`, `{"ops":[{}]}`, `{}`, `{"ops":[{"op":"delete","key":"a"}]} x`, `{"ops":[{"op":"delete","key":""}]}`,
	`{"ops":[{"op":"put","key":"a","value":null}]}`, `{"ops":[{"op":"delete","key":"a","if_absent":null}]}`,
}

// TestBatchFastPathTakesTheCommonForm: the bodies clients and the bench
// send take the fast path; one with an escape still parses, the slow way.
func TestBatchFastPathTakesTheCommonForm(t *testing.T) {
	lim := batchLimits{maxOps: 1000, maxValueBytes: 1 << 20}
	for _, body := range [][]byte{benchBatchBody(100), []byte(fastSeeds[0]), []byte(fastSeeds[1]), []byte(fastSeeds[2])} {
		if _, ok := parseBatchFast(nil, body, lim); !ok {
			t.Errorf("the fast path refused %.120s", body)
		}
	}
	if _, ok := parseBatchFast(nil, []byte(fastSeeds[3]), lim); ok {
		t.Error("the fast path took a key with an escape")
	}
	ops, err := parseBatch(nil, []byte(fastSeeds[3]), lim)
	if err != nil || len(ops) != 1 || string(ops[0].Key) != "ab" {
		t.Fatalf("escaped key through parseBatch: %+v, %v", ops, err)
	}
}

// FuzzParseBatchFastAgrees: whatever the fast path accepts, the full
// decoder accepts too, with the same ops.
func FuzzParseBatchFastAgrees(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Add(benchBatchBody(3))
	lim := batchLimits{maxOps: 4, maxValueBytes: 16}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // parseBatch refuses it before either path
		}
		fast, ok := parseBatchFast(nil, body, lim)
		if !ok {
			return
		}
		slow, err := parseBatchSlow(nil, body, lim)
		if err != nil {
			t.Fatalf("fast path accepted what the decoder refuses (%v): %q", err.Message, body)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%d ops fast, %d slow: %q", len(fast), len(slow), body)
		}
		for i := range fast {
			a, b := fast[i], slow[i]
			if a.Kind != b.Kind || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil) || a.IfMatch != b.IfMatch || a.IfAbsent != b.IfAbsent {
				t.Fatalf("op %d: fast %+v, slow %+v: %q", i, a, b, body)
			}
		}
	})
}

// BenchmarkParseBatch100: a bench-style PutAll of 100 puts, each path.
func BenchmarkParseBatch100(b *testing.B) {
	body := benchBatchBody(100)
	lim := batchLimits{maxOps: 10000, maxValueBytes: 1 << 20}
	for _, path := range []struct {
		name  string
		parse func([]BatchOp) ([]BatchOp, bool)
	}{
		{"fast", func(d []BatchOp) ([]BatchOp, bool) { return parseBatchFast(d, body, lim) }},
		{"slow", func(d []BatchOp) ([]BatchOp, bool) { o, e := parseBatchSlow(d, body, lim); return o, e == nil }},
	} {
		b.Run(path.name, func(b *testing.B) {
			b.ReportAllocs()
			var ops []BatchOp
			for b.Loop() {
				var ok bool
				if ops, ok = path.parse(ops[:0]); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
