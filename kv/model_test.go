package kv

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/consensus/raftmsg"
)

var modelSeeds = flag.Int("kv.model-seeds", 50, "random histories the model test replays (each seed is one history)")

// refModel is the naive reference: a map, recomputed sizes, linear scans.
// It shares no code with the Machine beyond the Command type and itemSize.
type refModel struct {
	data    map[string]refValue
	rev     uint64
	quota   uint64
	ttlNs   int64
	maxKeys int
	clockNs int64
	idem    map[string]*refIdem
	seq     uint64
}

type refValue struct {
	value string
	rev   uint64
}

type refIdem struct {
	fp      Fingerprint
	seq     uint64
	expires int64
	res     Result
}

func newRefModel(cfg Config) *refModel {
	return &refModel{data: map[string]refValue{}, quota: cfg.QuotaBytes, ttlNs: int64(cfg.IdempotencyTTL),
		maxKeys: cfg.IdempotencyMaxKeys, idem: map[string]*refIdem{}}
}

func (r *refModel) size() uint64 {
	var s uint64
	for k, v := range r.data {
		s += itemSize(len(k), len(v.value))
	}
	return s
}

func (r *refModel) condOK(op *Op) bool {
	cur, ok := r.data[string(op.Key)]
	switch op.Cond {
	case CondIfMatch:
		return ok && cur.rev == op.IfMatch
	case CondIfAbsent:
		return !ok
	}
	return true
}

// sizeAfter is the store size if ops were applied.
func (r *refModel) sizeAfter(ops []Op) uint64 {
	next := map[string]string{}
	for k, v := range r.data {
		next[k] = v.value
	}
	for _, op := range ops {
		if op.Kind == KindPut {
			next[string(op.Key)] = string(op.Value)
		} else {
			delete(next, string(op.Key))
		}
	}
	var s uint64
	for k, v := range next {
		s += itemSize(len(k), len(v))
	}
	return s
}

func (r *refModel) quotaOK(ops []Op) bool {
	after := r.sizeAfter(ops)
	return after <= r.size() || after <= r.quota
}

func (r *refModel) exec(c *Command) Result {
	res := Result{Revision: r.rev}
	switch c.Kind {
	case KindPut, KindDelete:
		op := c.Op
		_, exists := r.data[string(op.Key)]
		switch {
		case !r.condOK(&op):
			res.Status = StatusPreconditionFailed
		case op.Kind == KindDelete && !exists:
			res.Status = StatusNotFound
		case !r.quotaOK([]Op{op}):
			res.Status = StatusQuotaExceeded
		default:
			r.rev++
			if op.Kind == KindPut {
				r.data[string(op.Key)] = refValue{string(op.Value), r.rev}
			} else {
				delete(r.data, string(op.Key))
			}
			res.Status, res.Revision = StatusOK, r.rev
		}
	case KindDeletePrefix:
		var doomed []string
		for k := range r.data {
			if strings.HasPrefix(k, string(c.Op.Key)) {
				doomed = append(doomed, k)
			}
		}
		res.Status = StatusOK
		if len(doomed) > 0 {
			r.rev++
			for _, k := range doomed {
				delete(r.data, k)
			}
			res.Revision, res.Deleted = r.rev, uint64(len(doomed))
		}
	case KindBatch:
		for i := range c.Ops {
			if !r.condOK(&c.Ops[i]) {
				res.Failed = append(res.Failed, uint32(i))
			}
		}
		changes := false
		for _, op := range c.Ops {
			_, exists := r.data[string(op.Key)]
			changes = changes || op.Kind == KindPut || exists
		}
		switch {
		case len(res.Failed) > 0:
			res.Status, res.FailedCount = StatusPreconditionFailed, uint32(len(res.Failed))
		case !r.quotaOK(c.Ops):
			res.Status = StatusQuotaExceeded
		case !changes:
			res.Status = StatusOK
		default:
			r.rev++
			for _, op := range c.Ops {
				if op.Kind == KindPut {
					r.data[string(op.Key)] = refValue{string(op.Value), r.rev}
				} else {
					delete(r.data, string(op.Key))
				}
			}
			res.Status, res.Revision = StatusOK, r.rev
		}
	}
	return res
}

func (r *refModel) apply(c *Command) Result {
	r.clockNs = max(r.clockNs, c.TimestampNs)
	key := string(c.IdempotencyKey)
	if key != "" {
		if rec := r.idem[key]; rec != nil && rec.expires > r.clockNs {
			if rec.fp != c.Fingerprint {
				return Result{Status: StatusIdempotencyConflict, Revision: r.rev}
			}
			res := rec.res
			res.Replayed = true
			return res
		}
	}
	res := r.exec(c)
	if key != "" && (res.Status == StatusOK || res.Status == StatusPreconditionFailed || res.Status == StatusNotFound) {
		r.seq++
		r.idem[key] = &refIdem{fp: c.Fingerprint, seq: r.seq, expires: r.clockNs + r.ttlNs, res: res}
		// Forget the expired, then the oldest, until within the bound.
		for k, rec := range r.idem {
			if rec.expires <= r.clockNs {
				delete(r.idem, k)
			}
		}
		for len(r.idem) > r.maxKeys {
			oldest := ""
			for k, rec := range r.idem {
				if oldest == "" || rec.seq < r.idem[oldest].seq {
					oldest = k
				}
			}
			delete(r.idem, oldest)
		}
	}
	return res
}

// genCommand draws a command over a small key space so that conditions,
// prefixes, quota and idempotency keys collide often.
type generator struct {
	rng     *rand.Rand
	ref     *refModel
	keys    []string
	clockNs int64
	recent  []*Command // commands with idempotency keys, for retries
}

func (g *generator) key() string { return g.keys[g.rng.IntN(len(g.keys))] }

func (g *generator) value() string {
	return strings.Repeat(string(rune('a'+g.rng.IntN(26))), g.rng.IntN(24))
}

func (g *generator) cond(kind Kind, key string) (Cond, uint64) {
	switch g.rng.IntN(4) {
	case 0:
		// If-Match the current revision (when present) or a near one.
		if cur, ok := g.ref.data[key]; ok && g.rng.IntN(3) > 0 {
			return CondIfMatch, cur.rev
		}
		return CondIfMatch, uint64(g.rng.IntN(int(g.ref.rev) + 2))
	case 1:
		if kind == KindPut {
			return CondIfAbsent, 0
		}
	}
	return CondNone, 0
}

func (g *generator) op(kind Kind, key string) Op {
	op := Op{Kind: kind, Key: []byte(key)}
	if kind == KindPut {
		op.Value = []byte(g.value())
	}
	op.Cond, op.IfMatch = g.cond(kind, key)
	return op
}

func (g *generator) command() *Command {
	// The leader clock: mostly forward, sometimes a lagging new leader.
	// Steps of 250 ms so that expiry instants are hit exactly.
	g.clockNs += int64(g.rng.IntN(6)) * int64(250*time.Millisecond)
	ts := g.clockNs
	if g.rng.IntN(10) == 0 {
		ts -= int64(g.rng.IntN(20)) * int64(250*time.Millisecond)
	}
	if len(g.recent) > 0 && g.rng.IntN(6) == 0 {
		// A client retry: same request, same key, later timestamp.
		c := *g.recent[g.rng.IntN(len(g.recent))]
		c.TimestampNs = ts
		return &c
	}
	var c *Command
	switch n := g.rng.IntN(10); {
	case n < 4:
		c = &Command{Kind: KindPut, Op: g.op(KindPut, g.key())}
	case n < 6:
		c = &Command{Kind: KindDelete, Op: g.op(KindDelete, g.key())}
	case n < 7:
		k := g.key()
		c = &Command{Kind: KindDeletePrefix, Op: Op{Kind: KindDeletePrefix, Key: []byte(k[:1+g.rng.IntN(len(k))])}}
	default:
		keys := slices.Clone(g.keys)
		g.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		c = &Command{Kind: KindBatch}
		for _, k := range keys[:1+g.rng.IntN(5)] {
			kind := KindPut
			if g.rng.IntN(3) == 0 {
				kind = KindDelete
			}
			c.Ops = append(c.Ops, g.op(kind, k))
		}
	}
	c.TimestampNs = ts
	if g.rng.IntN(3) == 0 {
		c.IdempotencyKey = []byte(fmt.Sprint("idem-", g.rng.IntN(8)))
		c.Fingerprint = c.ComputeFingerprint()
		g.recent = append(g.recent, c)
		if len(g.recent) > 16 {
			g.recent = g.recent[1:]
		}
	}
	return c
}

func sameResult(a, b Result) bool {
	return a.Status == b.Status && a.Revision == b.Revision && a.Deleted == b.Deleted &&
		slices.Equal(a.Failed, b.Failed) && a.FailedCount == b.FailedCount && a.Replayed == b.Replayed
}

// TestAgainstModel replays random histories on the Machine and on the
// naive reference and requires the same result for every command, the
// same data after each, and equal range scans; every so often the machine
// is replaced by a restore of its own snapshot.
func TestAgainstModel(t *testing.T) {
	seeds, steps := *modelSeeds, 2000
	if testing.Short() {
		seeds, steps = 4, 500
	}
	// What the histories exercised, summed over seeds: a generator that
	// stopped producing some outcome would make this test vacuous.
	seen := map[string]int{}
	defer func() {
		if t.Failed() {
			return
		}
		for _, want := range []string{"ok", "precondition_failed", "not_found", "quota_exceeded",
			"idempotency_conflict", "replayed", "deleted>0", "batch-failed", "restored"} {
			if seen[want] == 0 {
				t.Errorf("no %s outcome in %d histories: %v", want, seeds, seen)
			}
		}
		t.Logf("outcomes: %v", seen)
	}()
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cfg := Config{QuotaBytes: 6 * itemSize(4, 12), IdempotencyTTL: 5 * time.Second, IdempotencyMaxKeys: 4}
			h := newHarness(t, cfg)
			ref := newRefModel(h.m.Config())
			g := &generator{rng: rand.New(rand.NewPCG(uint64(seed), 7)), ref: ref,
				keys: []string{"a", "ab", "abc", "b", "b/1", "b/2", "b/22", "c", "cé", "d/x/1", "d/x/2", "z"}}
			// Entries go to the machine in batches of 1..6 (one published
			// view per batch), with a no-op now and then.
			for i := 0; i < steps; {
				var ents []raftmsg.Entry
				var wants []Result
				var cmds []*Command
				for n := 1 + g.rng.IntN(6); n > 0 && i < steps; n-- {
					idx := h.m.AppliedIndex() + uint64(len(ents)) + 1
					if g.rng.IntN(20) == 0 {
						ents = append(ents, raftmsg.Entry{Index: idx, Type: raftmsg.EntryNoop})
						continue
					}
					c := g.command()
					cmds = append(cmds, c)
					wants = append(wants, ref.apply(c))
					ents = append(ents, raftmsg.Entry{Index: idx, Type: raftmsg.EntryNormal, RequestID: uint64(i), Data: mustEncode(t, c)})
					i++
				}
				gots, err := h.m.ApplyEntries(ents, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(gots) != len(wants) {
					t.Fatalf("step %d: %d results for %d commands", i, len(gots), len(wants))
				}
				for j, got := range gots {
					if !sameResult(got, wants[j]) {
						t.Fatalf("step %d+%d %v %+v: machine %+v, model %+v", i, j, cmds[j].Kind, cmds[j], got, wants[j])
					}
					seen[got.Status.String()]++
					if got.Replayed {
						seen["replayed"]++
					}
					if got.Deleted > 0 {
						seen["deleted>0"]++
					}
					if len(got.Failed) > 0 {
						seen["batch-failed"]++
					}
				}
				if err := checkInvariants(h.m); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if err := compareWithModel(h.m.View(), ref, g.rng); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if g.rng.IntN(30) == 0 {
					var buf bytes.Buffer
					if err := h.m.View().WriteSnapshot(&buf); err != nil {
						t.Fatal(err)
					}
					h = restoreInto(t, cfg, buf.Bytes())
					seen["restored"]++
				}
			}
		})
	}
}

func compareWithModel(v *View, ref *refModel, rng *rand.Rand) error {
	if v.Revision() != ref.rev || v.Len() != len(ref.data) || v.SizeBytes() != ref.size() {
		return fmt.Errorf("view rev %d len %d size %d, model rev %d len %d size %d",
			v.Revision(), v.Len(), v.SizeBytes(), ref.rev, len(ref.data), ref.size())
	}
	for k, want := range ref.data {
		val, rev, ok := v.Get(k)
		if !ok || string(val) != want.value || rev != want.rev {
			return fmt.Errorf("Get(%q) = %q@%d %v, model %q@%d", k, val, rev, ok, want.value, want.rev)
		}
	}
	keys := make([]string, 0, len(ref.data))
	for k := range ref.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prefixes := []string{"", "a", "b", "b/", "b/2", "d/x/", "zz"}
	prefix := prefixes[rng.IntN(len(prefixes))]
	afters := []string{"", "a", "ab", "b/1", "c", "d"}
	after := afters[rng.IntN(len(afters))]
	limit := 1 + rng.IntN(4)
	var want []string
	more := false
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) && k > after {
			if len(want) == limit {
				more = true
				break
			}
			want = append(want, k)
		}
	}
	items, gotMore := v.Range(prefix, after, limit, nil)
	var got []string
	for _, it := range items {
		got = append(got, it.Key)
	}
	if !slices.Equal(got, want) || gotMore != more {
		return fmt.Errorf("Range(%q, %q, %d) = %v %v, model %v %v", prefix, after, limit, got, gotMore, want, more)
	}
	return nil
}
