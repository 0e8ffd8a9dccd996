package kv

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

// step is one command of a scripted scenario and what applying it must
// give.
type step struct {
	cmd      *Command
	status   Status
	revision uint64   // Result.Revision
	deleted  uint64   // Result.Deleted
	failed   []uint32 // Result.Failed
	replayed bool
}

// state after a scenario: key → "value@rev"; absent keys are not listed.
func dump(m *Machine) map[string]string {
	out := map[string]string{}
	items, _ := m.View().Range("", "", MaxRangeLimit, nil)
	for _, it := range items {
		out[it.Key] = fmt.Sprintf("%s@%d", it.Value, it.Revision)
	}
	return out
}

func TestApplyScenarios(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		final map[string]string
		rev   uint64
	}{
		{
			name: "put then get revisions",
			steps: []step{
				{cmd: cmdPut("a", "1"), status: StatusOK, revision: 1},
				{cmd: cmdPut("b", "2"), status: StatusOK, revision: 2},
				{cmd: cmdPut("a", "3"), status: StatusOK, revision: 3},
			},
			final: map[string]string{"a": "3@3", "b": "2@2"},
			rev:   3,
		},
		{
			name: "CAS 200 then 412",
			steps: []step{
				{cmd: cmdPut("k", "v1"), status: StatusOK, revision: 1},
				{cmd: cmdPutIfMatch("k", "v2", 1), status: StatusOK, revision: 2},
				{cmd: cmdPutIfMatch("k", "v3", 1), status: StatusPreconditionFailed, revision: 2},
				{cmd: cmdPutIfMatch("absent", "x", 2), status: StatusPreconditionFailed, revision: 2},
				{cmd: cmdPutIfMatch("k", "v4", 0), status: StatusPreconditionFailed, revision: 2},
			},
			final: map[string]string{"k": "v2@2"},
			rev:   2,
		},
		{
			name: "if-absent",
			steps: []step{
				{cmd: cmdPutIfAbsent("k", "first"), status: StatusOK, revision: 1},
				{cmd: cmdPutIfAbsent("k", "second"), status: StatusPreconditionFailed, revision: 1},
				{cmd: cmdDel("k"), status: StatusOK, revision: 2},
				{cmd: cmdPutIfAbsent("k", "third"), status: StatusOK, revision: 3},
			},
			final: map[string]string{"k": "third@3"},
			rev:   3,
		},
		{
			name: "delete: not found, if-match, ok",
			steps: []step{
				{cmd: cmdDel("nope"), status: StatusNotFound, revision: 0},
				{cmd: cmdDelIfMatch("nope", 1), status: StatusPreconditionFailed, revision: 0},
				{cmd: cmdPut("k", "v"), status: StatusOK, revision: 1},
				{cmd: cmdDelIfMatch("k", 7), status: StatusPreconditionFailed, revision: 1},
				{cmd: cmdDelIfMatch("k", 1), status: StatusOK, revision: 2},
				{cmd: cmdDel("k"), status: StatusNotFound, revision: 2},
			},
			final: map[string]string{},
			rev:   2,
		},
		{
			name: "empty value is a value",
			steps: []step{
				{cmd: cmdPut("k", ""), status: StatusOK, revision: 1},
				{cmd: cmdPutIfAbsent("k", "x"), status: StatusPreconditionFailed, revision: 1},
			},
			final: map[string]string{"k": "@1"},
			rev:   1,
		},
		{
			name: "delete-prefix counts and leaves neighbours",
			steps: []step{
				{cmd: cmdPut("app/1", "a"), status: StatusOK, revision: 1},
				{cmd: cmdPut("app/2", "b"), status: StatusOK, revision: 2},
				{cmd: cmdPut("app/3/x", "c"), status: StatusOK, revision: 3},
				{cmd: cmdPut("app", "root"), status: StatusOK, revision: 4},
				{cmd: cmdPut("apq", "next"), status: StatusOK, revision: 5},
				{cmd: cmdPut("ap", "prev"), status: StatusOK, revision: 6},
				{cmd: cmdDelPrefix("app/"), status: StatusOK, revision: 7, deleted: 3},
				{cmd: cmdDelPrefix("app/"), status: StatusOK, revision: 7, deleted: 0},
				{cmd: cmdDelPrefix("zzz"), status: StatusOK, revision: 7, deleted: 0},
				{cmd: cmdDelPrefix("ap"), status: StatusOK, revision: 8, deleted: 3},
			},
			final: map[string]string{},
			rev:   8,
		},
		{
			name: "batch applies at one revision",
			steps: []step{
				{cmd: cmdPut("b", "old"), status: StatusOK, revision: 1},
				{cmd: cmdBatch(opPut("a", "1"), opDel("b"), opPutIf("c", "3", CondIfAbsent, 0)), status: StatusOK, revision: 2},
				{cmd: cmdBatch(opPutIf("a", "x", CondIfMatch, 2), opPut("d", "4")), status: StatusOK, revision: 3},
			},
			final: map[string]string{"a": "x@3", "c": "3@2", "d": "4@3"},
			rev:   3,
		},
		{
			name: "batch with one failing condition changes nothing",
			steps: []step{
				{cmd: cmdPut("a", "1"), status: StatusOK, revision: 1},
				{cmd: cmdPut("b", "2"), status: StatusOK, revision: 2},
				{cmd: cmdBatch(opPut("new", "n"), opDel("a"), opPutIf("b", "x", CondIfMatch, 1), opPut("other", "o")),
					status: StatusPreconditionFailed, revision: 2, failed: []uint32{2}},
				{cmd: cmdBatch(opPutIf("a", "x", CondIfAbsent, 0), opDelIfMatch("b", 2), opDelIfMatch("zz", 1)),
					status: StatusPreconditionFailed, revision: 2, failed: []uint32{0, 2}},
			},
			final: map[string]string{"a": "1@1", "b": "2@2"},
			rev:   2,
		},
		{
			name: "batch of deletes of absent keys changes nothing and succeeds",
			steps: []step{
				{cmd: cmdBatch(opDel("x"), opDel("y")), status: StatusOK, revision: 0},
				{cmd: cmdPut("x", "1"), status: StatusOK, revision: 1},
				{cmd: cmdBatch(opDel("x"), opDel("y")), status: StatusOK, revision: 2},
			},
			final: map[string]string{},
			rev:   2,
		},
		{
			name: "quota reached, then freed by deletes",
			// two keys of 1+10+overhead fit, a third does not
			cfg: Config{QuotaBytes: 2 * itemSize(1, 10)},
			steps: []step{
				{cmd: cmdPut("a", "0123456789"), status: StatusOK, revision: 1},
				{cmd: cmdPut("b", "0123456789"), status: StatusOK, revision: 2},
				{cmd: cmdPut("c", "0123456789"), status: StatusQuotaExceeded, revision: 2},
				{cmd: cmdPut("a", "01234567890"), status: StatusQuotaExceeded, revision: 2},
				{cmd: cmdPut("a", "012345678"), status: StatusOK, revision: 3}, // shrinking passes
				{cmd: cmdBatch(opPut("c", "x")), status: StatusQuotaExceeded, revision: 3},
				{cmd: cmdBatch(opPut("c", "0123456789"), opDel("b")), status: StatusOK, revision: 4}, // net zero
				{cmd: cmdDel("c"), status: StatusOK, revision: 5},
				{cmd: cmdPut("d", "0123456789"), status: StatusOK, revision: 6},
				{cmd: cmdDelPrefix("a"), status: StatusOK, revision: 7, deleted: 1},
			},
			final: map[string]string{"d": "0123456789@6"},
			rev:   7,
		},
		{
			name: "idempotent retry returns the first outcome and applies once",
			steps: []step{
				{cmd: withIdem(cmdPut("k", "v"), "req-1"), status: StatusOK, revision: 1},
				{cmd: cmdPut("other", "o"), status: StatusOK, revision: 2},
				{cmd: withIdem(cmdPut("k", "v"), "req-1"), status: StatusOK, revision: 1, replayed: true},
				{cmd: withIdem(cmdDel("gone"), "req-2"), status: StatusNotFound, revision: 2},
				{cmd: cmdPut("gone", "now here"), status: StatusOK, revision: 3},
				{cmd: withIdem(cmdDel("gone"), "req-2"), status: StatusNotFound, revision: 2, replayed: true},
				{cmd: withIdem(cmdBatch(opPutIf("k", "x", CondIfMatch, 9), opPut("z", "z")), "req-3"),
					status: StatusPreconditionFailed, revision: 3, failed: []uint32{0}},
				{cmd: withIdem(cmdBatch(opPutIf("k", "x", CondIfMatch, 9), opPut("z", "z")), "req-3"),
					status: StatusPreconditionFailed, revision: 3, failed: []uint32{0}, replayed: true},
				{cmd: withIdem(cmdDelPrefix("o"), "req-4"), status: StatusOK, revision: 4, deleted: 1},
				{cmd: withIdem(cmdDelPrefix("o"), "req-4"), status: StatusOK, revision: 4, deleted: 1, replayed: true},
			},
			final: map[string]string{"k": "v@1", "gone": "now here@3"},
			rev:   4,
		},
		{
			name: "idempotency key reused with another request conflicts",
			steps: []step{
				{cmd: withIdem(cmdPut("k", "v"), "req"), status: StatusOK, revision: 1},
				{cmd: withIdem(cmdPut("k", "other"), "req"), status: StatusIdempotencyConflict, revision: 1},
				{cmd: withIdem(cmdDel("k"), "req"), status: StatusIdempotencyConflict, revision: 1},
				{cmd: withIdem(cmdPut("k", "v"), "req"), status: StatusOK, revision: 1, replayed: true},
			},
			final: map[string]string{"k": "v@1"},
			rev:   1,
		},
		{
			name: "quota refusal is not remembered",
			cfg:  Config{QuotaBytes: itemSize(1, 1)},
			steps: []step{
				{cmd: cmdPut("a", "1"), status: StatusOK, revision: 1},
				{cmd: withIdem(cmdPut("b", "2"), "r"), status: StatusQuotaExceeded, revision: 1},
				{cmd: cmdDel("a"), status: StatusOK, revision: 2},
				{cmd: withIdem(cmdPut("b", "2"), "r"), status: StatusOK, revision: 3},
				{cmd: withIdem(cmdPut("b", "2"), "r"), status: StatusOK, revision: 3, replayed: true},
			},
			final: map[string]string{"b": "2@3"},
			rev:   3,
		},
		{
			name: "idempotency expiry follows the leader clock, monotone",
			cfg:  Config{IdempotencyTTL: 10 * time.Second},
			steps: []step{
				{cmd: at(withIdem(cmdPut("k", "1"), "r"), 100*time.Second), status: StatusOK, revision: 1},
				// 9.9 s later: remembered.
				{cmd: at(withIdem(cmdPut("k", "1"), "r"), 109900*time.Millisecond), status: StatusOK, revision: 1, replayed: true},
				// A new leader whose clock lags: the clock stays at 109.9 s.
				{cmd: at(cmdPut("x", "x"), 50*time.Second), status: StatusOK, revision: 2},
				{cmd: at(withIdem(cmdPut("k", "1"), "r"), 60*time.Second), status: StatusOK, revision: 1, replayed: true},
				// 10 s after the first: forgotten, so the retry applies again.
				{cmd: at(withIdem(cmdPut("k", "1"), "r"), 110*time.Second), status: StatusOK, revision: 3},
				{cmd: at(withIdem(cmdPut("k", "2"), "r"), 111*time.Second), status: StatusIdempotencyConflict, revision: 3},
			},
			final: map[string]string{"k": "1@3", "x": "x@2"},
			rev:   3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.cfg)
			for i, s := range tt.steps {
				res := h.apply(s.cmd)
				if res.Status != s.status || res.Revision != s.revision || res.Deleted != s.deleted ||
					!slices.Equal(res.Failed, s.failed) || res.Replayed != s.replayed || int(res.FailedCount) != len(s.failed) {
					t.Fatalf("step %d (%v): got %+v, want status %v revision %d deleted %d failed %v replayed %v",
						i, s.cmd.Kind, res, s.status, s.revision, s.deleted, s.failed, s.replayed)
				}
			}
			if got := dump(h.m); !mapsEqual(got, tt.final) {
				t.Fatalf("final state %v, want %v", got, tt.final)
			}
			if got := h.m.View().Revision(); got != tt.rev {
				t.Fatalf("store revision %d, want %d", got, tt.rev)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestGetReturnsValueAndKeyRevision(t *testing.T) {
	h := newHarness(t, Config{})
	h.apply(cmdPut("a", "1"))
	h.apply(cmdPut("b", "2"))
	if v, rev, ok := h.get("a"); !ok || v != "1" || rev != 1 {
		t.Fatalf("a = %q@%d %v", v, rev, ok)
	}
	if v, rev, ok := h.m.View().GetBytes([]byte("b")); !ok || string(v) != "2" || rev != 2 {
		t.Fatalf("b = %q@%d %v", v, rev, ok)
	}
	if _, _, ok := h.get("c"); ok {
		t.Fatal("c found")
	}
}

func TestRangePagination(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 2500
	var want []string
	for i := range n {
		k := fmt.Sprintf("p/%05d", i)
		want = append(want, k)
		h.apply(cmdPut(k, fmt.Sprint(i)))
	}
	h.apply(cmdPut("p", "outside"))
	h.apply(cmdPut("o/x", "outside"))
	h.apply(cmdPut("q", "outside"))
	for _, limit := range []int{1, 7, 100, 1000} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > n+1 {
				t.Fatal("pagination does not end")
			}
			items, more := h.m.View().Range("p/", after, limit, nil)
			if len(items) > limit || (more && len(items) != limit) {
				t.Fatalf("limit %d: page of %d, more %v", limit, len(items), more)
			}
			for _, it := range items {
				got = append(got, it.Key)
				if v, rev, _ := h.m.View().Get(it.Key); string(v) != string(it.Value) || rev != it.Revision {
					t.Fatalf("range item %+v differs from Get", it)
				}
			}
			if !more {
				break
			}
			after = items[len(items)-1].Key
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: got %d keys, want %d", limit, len(got), len(want))
		}
	}
	cases := []struct {
		prefix, after string
		limit         int
		keys          []string
		more          bool
	}{
		{"p/", "p/00003", 2, []string{"p/00004", "p/00005"}, true},
		{"p/", "p/024955", 10, []string{"p/02496", "p/02497", "p/02498", "p/02499"}, false},
		{"p/", "p/02499", 10, nil, false},
		{"p/", "a", 1, []string{"p/00000"}, true},
		{"p/", "z", 1, nil, false},
		{"", "p/02499", 5, []string{"q"}, false},
		{"", "", 2, []string{"o/x", "p"}, true},
		{"nothing", "", 5, nil, false},
	}
	for _, c := range cases {
		items, more := h.m.View().Range(c.prefix, c.after, c.limit, nil)
		var keys []string
		for _, it := range items {
			keys = append(keys, it.Key)
		}
		if !slices.Equal(keys, c.keys) || more != c.more {
			t.Errorf("Range(%q, %q, %d) = %v more %v, want %v more %v", c.prefix, c.after, c.limit, keys, more, c.keys, c.more)
		}
	}
	// Limits: 0 means the default, above the maximum means the maximum.
	if items, more := h.m.View().Range("p/", "", 0, nil); len(items) != DefaultRangeLimit || !more {
		t.Fatalf("default limit gave %d items", len(items))
	}
	if items, more := h.m.View().Range("p/", "", 5000, nil); len(items) != MaxRangeLimit || !more {
		t.Fatalf("limit 5000 gave %d items", len(items))
	}
}

func TestMaxKeysEvictsOldestFirst(t *testing.T) {
	h := newHarness(t, Config{IdempotencyMaxKeys: 3})
	for i := range 5 {
		if res := h.apply(withIdem(cmdPut(fmt.Sprint("k", i), "v"), fmt.Sprint("r", i))); res.Status != StatusOK || res.Replayed {
			t.Fatalf("put %d: %+v", i, res)
		}
	}
	if n := h.m.View().IdempotencyKeys(); n != 3 {
		t.Fatalf("%d keys remembered, want 3", n)
	}
	// r0 and r1 were forgotten: their retries apply again (new revisions).
	// Check the newest first: re-remembering r1 and r0 evicts r2 and r3,
	// which are checked before.
	for j := 4; j >= 0; j-- {
		res := h.apply(withIdem(cmdPut(fmt.Sprint("k", j), "v"), fmt.Sprint("r", j)))
		wantReplayed := j >= 2
		if res.Replayed != wantReplayed {
			t.Fatalf("retry of r%d: replayed %v, want %v", j, res.Replayed, wantReplayed)
		}
		if wantReplayed && res.Revision != uint64(j+1) {
			t.Fatalf("retry of r%d: revision %d, want the first %d", j, res.Revision, j+1)
		}
		if !wantReplayed && res.Revision <= 5 {
			t.Fatalf("retry of forgotten r%d: revision %d, want a new one", j, res.Revision)
		}
	}
}

func TestExpiredRecordsArePruned(t *testing.T) {
	h := newHarness(t, Config{IdempotencyTTL: time.Second})
	for i := range 10 {
		h.apply(at(withIdem(cmdPut("k", "v"), fmt.Sprint("r", i)), time.Duration(i)*time.Millisecond))
	}
	if n := h.m.View().IdempotencyKeys(); n != 10 {
		t.Fatalf("%d remembered, want 10", n)
	}
	h.apply(at(cmdPut("x", "y"), 2*time.Second))
	if n := h.m.View().IdempotencyKeys(); n != 0 {
		t.Fatalf("%d remembered after expiry, want 0", n)
	}
}

func TestNonKVEntriesMoveOnlyTheAppliedIndex(t *testing.T) {
	m, err := NewMachine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ents := []raftmsg.Entry{
		{Index: 1, Type: raftmsg.EntryNoop},
		{Index: 2, Type: raftmsg.EntryNormal, RequestID: 42, Data: mustEncode(t, cmdPut("a", "b"))},
		{Index: 3, Type: raftmsg.EntryConfChange, Data: []byte{1, 2, 3}},
		{Index: 4, Type: raftmsg.EntryNormal, RequestID: 43, Data: []byte("garbage")},
	}
	res, err := m.ApplyEntries(ents, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Index != 2 || res[0].RequestID != 42 || res[0].Status != StatusOK || res[0].Revision != 1 {
		t.Fatalf("results %+v", res)
	}
	if res[1].Status != StatusInvalid || res[1].Err == nil || res[1].Revision != 1 {
		t.Fatalf("garbage entry gave %+v", res[1])
	}
	v := m.View()
	if v.AppliedIndex() != 4 || v.Revision() != 1 {
		t.Fatalf("applied %d revision %d", v.AppliedIndex(), v.Revision())
	}
	// A gap is the caller's bug: refused, nothing applied.
	if _, err := m.ApplyEntries([]raftmsg.Entry{{Index: 6, Type: raftmsg.EntryNormal, Data: mustEncode(t, cmdPut("x", "y"))}}, nil); err == nil {
		t.Fatal("gap accepted")
	}
	if _, err := m.ApplyCommand(4, 0, mustEncode(t, cmdPut("x", "y"))); err == nil {
		t.Fatal("re-applying index 4 accepted")
	}
	if err := m.SkipIndex(5); err != nil {
		t.Fatal(err)
	}
	if r, err := m.ApplyCommand(6, 9, mustEncode(t, cmdPut("x", "y"))); err != nil || r.Revision != 2 {
		t.Fatalf("ApplyCommand: %+v %v", r, err)
	}
	if m.View().AppliedIndex() != 4 {
		t.Fatal("ApplyCommand published without Publish")
	}
	if v := m.Publish(); v.AppliedIndex() != 6 || v.Revision() != 2 || m.View() != v {
		t.Fatalf("published applied %d revision %d", v.AppliedIndex(), v.Revision())
	}
}

func TestViewsAreImmutable(t *testing.T) {
	h := newHarness(t, Config{})
	for i := range 200 {
		h.apply(cmdPut(fmt.Sprintf("k%03d", i), "old"))
	}
	old := h.m.View()
	before, _ := old.Range("", "", MaxRangeLimit, nil)
	snapshotOf := func(items []Item) []string {
		var s []string
		for _, it := range items {
			s = append(s, fmt.Sprintf("%s=%s@%d", it.Key, it.Value, it.Revision))
		}
		return s
	}
	want := snapshotOf(before)
	h.apply(cmdDelPrefix("k1"))
	for i := range 200 {
		h.apply(cmdPut(fmt.Sprintf("k%03d", i), "new"))
	}
	h.apply(cmdPut("zzz", "added"))
	after, _ := old.Range("", "", MaxRangeLimit, nil)
	if got := snapshotOf(after); !slices.Equal(got, want) || old.Revision() != 200 || old.Len() != 200 {
		t.Fatalf("old view changed: %d keys, revision %d", len(got), old.Revision())
	}
	if v, _, _ := h.get("k150"); v != "new" {
		t.Fatalf("new view has %q", v)
	}
}

// TestReadersDoNotBlockApply reads views from several goroutines while the
// apply loop runs; under -race it proves views share nothing mutable.
func TestReadersDoNotBlockApply(t *testing.T) {
	m, err := NewMachine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var stop, ready sync.WaitGroup
	done := make(chan struct{})
	for r := range 4 {
		stop.Add(1)
		ready.Add(1)
		go func() {
			defer stop.Done()
			running := sync.OnceFunc(ready.Done)
			defer running() // also on an early return
			var buf []Item
			for i := 0; ; i++ {
				if i == 1 {
					running()
				}
				select {
				case <-done:
					return
				default:
				}
				v := m.View()
				val, rev, ok := v.Get(fmt.Sprintf("k%d", (i+r)%50))
				if ok && (rev == 0 || rev > v.Revision() || !strings.HasPrefix(string(val), "v")) {
					t.Errorf("inconsistent read %q@%d at revision %d", val, rev, v.Revision())
					return
				}
				buf, _ = v.Range("k", "", 20, buf[:0])
				for _, it := range buf {
					if it.Revision > v.Revision() {
						t.Errorf("range item revision %d after view revision %d", it.Revision, v.Revision())
						return
					}
				}
			}
		}()
	}
	// A snapshot writer on its own goroutine, as the storage layer runs it.
	stop.Add(1)
	ready.Add(1)
	go func() {
		defer stop.Done()
		running := sync.OnceFunc(ready.Done)
		defer running() // also on an early return
		for i := 0; ; i++ {
			if i == 1 {
				running()
			}
			select {
			case <-done:
				return
			default:
			}
			v := m.View()
			var buf bytes.Buffer
			if err := v.WriteSnapshot(&buf); err != nil {
				t.Errorf("snapshot: %v", err)
				return
			}
			r, err := NewMachine(Config{})
			if err == nil {
				err = r.Restore(&buf)
			}
			if err != nil || r.View().Revision() != v.Revision() || r.View().Len() != v.Len() {
				t.Errorf("snapshot of revision %d restored as %d (%v)", v.Revision(), r.View().Revision(), err)
				return
			}
		}
	}()
	ready.Wait() // every reader is running before applying starts
	idx := uint64(0)
	for batchNo := range 200 {
		var ents []raftmsg.Entry
		for j := range 10 {
			idx++
			c := cmdPut(fmt.Sprintf("k%d", (batchNo*10+j)%50), fmt.Sprint("v", idx))
			if j == 9 {
				c = cmdDelPrefix(fmt.Sprintf("k%d", batchNo%5))
			}
			ents = append(ents, raftmsg.Entry{Index: idx, Type: raftmsg.EntryNormal, Data: mustEncode(t, c)})
		}
		if _, err := m.ApplyEntries(ents, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	stop.Wait()
	if err := checkInvariants(m); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{IdempotencyTTL: -1},
		{IdempotencyMaxKeys: -1},
		{Limits: Limits{MaxValueBytes: MaxValueBytesCeiling + 1}},
		{Limits: Limits{MaxBatchOps: MaxBatchOpsCeiling + 1}},
	}
	for _, c := range bad {
		if _, err := NewMachine(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	m, err := NewMachine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := m.Config()
	if got.QuotaBytes != DefaultQuotaBytes || got.IdempotencyTTL != DefaultIdempotencyTTL ||
		got.IdempotencyMaxKeys != DefaultIdempotencyMaxKeys || got.Limits != DefaultLimits {
		t.Fatalf("defaults %+v", got)
	}
}

// TestExpiryBeyondThePruneBudget: when more records expire at once than
// one command prunes, lookups still treat the unpruned ones as forgotten,
// and later commands finish the pruning.
func TestExpiryBeyondThePruneBudget(t *testing.T) {
	const n = 3 * pruneBudget
	h := newHarness(t, Config{IdempotencyTTL: time.Second})
	for i := range n {
		h.apply(at(withIdem(cmdPut("k", "v"), fmt.Sprint("r", i)), 0))
	}
	// Exactly at the expiry instant, the newest record is forgotten though
	// it is beyond this command's prune budget.
	res := h.apply(at(withIdem(cmdPut("k", "v"), fmt.Sprint("r", n-1)), time.Second))
	if res.Replayed || res.Revision != n+1 {
		t.Fatalf("retry at expiry: %+v", res)
	}
	if got := h.m.View().IdempotencyKeys(); got != n-pruneBudget {
		t.Fatalf("%d records after one prune, want %d (the re-remembered one replaced an expired one)", got, n-pruneBudget)
	}
	for range 3 {
		h.apply(at(cmdPut("x", "y"), time.Second))
	}
	if got := h.m.View().IdempotencyKeys(); got != 1 {
		t.Fatalf("%d records after pruning, want the one live record", got)
	}
}

// TestOverwriteDoesNotPinOldValue: a key and its value share one
// allocation, so an overwrite must not keep the old key string (it would
// keep the old value's bytes alive as long as the key exists).
func TestOverwriteDoesNotPinOldValue(t *testing.T) {
	h := newHarness(t, Config{})
	h.apply(cmdPut("k", strings.Repeat("v", 1<<20)))
	before, _ := h.m.View().st.tree.Get(probe("k"))
	h.apply(cmdPut("k", "small"))
	after, _ := h.m.View().st.tree.Get(probe("k"))
	if before.buf == after.buf {
		t.Fatal("overwrite kept the old key string and with it the old 1 MiB value")
	}
	if after.key() != "k" || string(after.value()) != "small" {
		t.Fatalf("item %q = %q", after.key(), after.value())
	}
}

// TestItemIsPacked: a tree node copies its items on the first write after
// every Publish (copy on write), so the item's size is the per-put copy
// cost; a string and a slice (48 bytes) doubled it.
func TestItemIsPacked(t *testing.T) {
	if got := unsafe.Sizeof(item{}); got > 24 {
		t.Fatalf("item is %d bytes, want at most 24", got)
	}
	it := newItem([]byte("key"), []byte("value"), 7)
	if it.key() != "key" || string(it.value()) != "value" || it.rev != 7 {
		t.Fatalf("item %q = %q @%d", it.key(), it.value(), it.rev)
	}
	if v := it.value(); cap(v) != len(v) {
		t.Fatalf("value cap %d > len %d: an append would write past it", cap(v), len(v))
	}
	empty := newItem([]byte("k"), nil, 1)
	if empty.key() != "k" || empty.value() != nil {
		t.Fatalf("empty value: %q = %q", empty.key(), empty.value())
	}
	if p := probe(""); p.key() != "" {
		t.Fatalf("empty probe key %q", p.key())
	}
}
