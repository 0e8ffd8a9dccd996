package history

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestRecorderMergesClientsInCallOrder(t *testing.T) {
	const clients, perClient = 8, 500
	rec := NewRecorder(clients, perClient)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(cl *Client, c int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				p := cl.Invoke(Op{Kind: Put, Key: "k", Value: fmt.Sprintf("c%d-%d", c, i)})
				if i == perClient-1 && c == 0 {
					return // dies mid-request: Unknown
				}
				cl.Complete(p, Op{Outcome: OK, Code: 200, Rev: int64(i + 1)})
			}
		}(rec.Client(c), c)
	}
	wg.Wait()
	h := rec.History()
	if len(h) != clients*perClient {
		t.Fatalf("%d ops, want %d", len(h), clients*perClient)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	unknown := 0
	lastCall := make(map[int]int64)
	for i, o := range h {
		if o.ID != i {
			t.Fatalf("op %d has id %d", i, o.ID)
		}
		if i > 0 && o.Call < h[i-1].Call {
			t.Fatalf("op %d called before op %d", i, i-1)
		}
		if o.Return < o.Call {
			t.Fatalf("op %d returns before its call", i)
		}
		// One client's ops never overlap: each is called after the
		// previous one returned.
		if prev, ok := lastCall[o.Client]; ok && o.Call < prev {
			t.Fatalf("client %d went back in time", o.Client)
		}
		lastCall[o.Client] = o.Return
		if o.Outcome == Unknown {
			unknown++
			if o.Client != 0 || o.Err == "" {
				t.Fatalf("unexpected unknown op %v", o.String())
			}
		}
	}
	if unknown != 1 {
		t.Fatalf("%d unknown ops, want 1", unknown)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("second History call did not panic")
		}
	}()
	rec.History()
}

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		kind   Kind
		status int
		want   Outcome
	}{
		{Put, 200, OK}, {Get, 200, OK}, {Get, 404, OK}, {List, 200, OK},
		{Delete, 404, Fail}, {Put, 412, Fail}, {Batch, 412, Fail}, {Put, 429, Fail},
		{Put, 413, Fail}, {Put, 507, Fail}, {Put, 409, Fail}, {Put, 400, Fail},
		{Get, 503, Fail},
		{Put, 503, Unknown}, {Put, 504, Unknown}, {Put, 0, Unknown}, {Batch, 500, Unknown},
		{DeletePrefix, 503, Unknown}, {Get, 0, Unknown},
	}
	for _, c := range cases {
		if got := OutcomeOf(c.kind, c.status); got != c.want {
			t.Errorf("OutcomeOf(%s, %d) = %s, want %s", c.kind, c.status, got, c.want)
		}
	}
}

func sampleHistory() History {
	return History{
		{ID: 0, Client: 0, Kind: Put, Key: "a/1", Value: "v1", Cond: Cond{IfMatch: 3}, Call: 1, Return: 2, Outcome: OK, Code: 200, Rev: 4},
		{ID: 1, Client: 1, Kind: Batch, Ops: []BatchOp{{Op: Put, Key: "a", Value: "x", Cond: Cond{IfAbsent: true}}, {Op: Delete, Key: "b"}},
			Call: 1, Return: 9, Outcome: Fail, Code: 412, Failed: []int{0}},
		{ID: 2, Client: 2, Kind: Get, Key: "a/1", Consistency: Lease, Call: 3, Return: 4, Outcome: OK, Found: true, ReadValue: "v1", Rev: 4, StoreRev: 7, Final: true},
		{ID: 3, Client: 0, Kind: List, Prefix: "a/", After: "a/0", Limit: 10, Call: 5, Return: 6, Outcome: OK, Items: []Item{{Key: "a/1", Value: "v1", Rev: 4}}, More: true},
		{ID: 4, Client: 3, Kind: DeletePrefix, Prefix: "a/", Call: 5, Return: 60, Outcome: Unknown, Err: "timeout"},
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	h := sampleHistory()
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, h); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != len(h) {
		t.Fatalf("%d lines for %d ops", n, len(h))
	}
	got, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip differs:\n%+v\n%+v", got, h)
	}
	path := filepath.Join(t.TempDir(), "h.jsonl")
	if err := WriteFile(path, h); err != nil {
		t.Fatal(err)
	}
	if got, err = ReadFile(path); err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("file round trip: %v", err)
	}
}

func TestReadJSONLRejectsBadInput(t *testing.T) {
	cases := map[string]string{
		"not json":        "{\n",
		"duplicate id":    `{"id":1,"kind":"get","outcome":"ok"}` + "\n" + `{"id":1,"kind":"get","outcome":"ok"}`,
		"bad kind":        `{"id":1,"kind":"cas","outcome":"ok"}`,
		"bad outcome":     `{"id":1,"kind":"get","outcome":"maybe"}`,
		"return < call":   `{"id":1,"kind":"get","outcome":"ok","call":5,"return":4}`,
		"duplicate value": `{"id":1,"kind":"put","value":"x","outcome":"ok"}` + "\n" + `{"id":2,"kind":"put","value":"x","outcome":"ok"}`,
		"empty batch":     `{"id":1,"kind":"batch","outcome":"ok"}`,
		"line too long":   `{"id":1,"kind":"put","value":"` + strings.Repeat("x", MaxLineBytes) + `","outcome":"ok"}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadJSONL(strings.NewReader(in))
			if !errors.Is(err, ErrBadHistory) {
				t.Fatalf("want ErrBadHistory, got %v", err)
			}
		})
	}
}

func FuzzReadJSONL(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, sampleHistory()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"id":1,"kind":"batch","ops":[{"op":"put","key":"a","value":"x"},{"op":"put","key":"a","value":"y"}],"outcome":"ok"}`))
	f.Add([]byte("\n\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadJSONL(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadHistory) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		// Whatever loads must write and load back identically.
		var out bytes.Buffer
		if err := WriteJSONL(&out, h); err != nil {
			t.Fatal(err)
		}
		again, err := ReadJSONL(&out)
		if err != nil || len(again) != len(h) {
			t.Fatalf("reload: %v (%d vs %d ops)", err, len(again), len(h))
		}
		for i := range h {
			_ = h[i].String()
		}
	})
}
