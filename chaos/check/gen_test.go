package check

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/edgekv/edgekv/chaos/history"
)

// The generator runs random operations one at a time against a reference
// store (a map and one revision counter, edgekv's semantics) and gives each
// a linearization point on a clock; the client's call and return times are
// spread around that point, and clients are sequential. The history is
// therefore linearizable by construction. A fault makes exactly one result
// (or one effect) wrong, as a buggy server would.

type fault string

const (
	noFault       fault = ""
	staleRead     fault = "stale read"              // a Get answers the key's state before its last change
	ghostRead     fault = "read of unwritten value" // a Get answers a value nobody wrote
	wrongReadRev  fault = "read revision off by one"
	casNotCurrent fault = "cas succeeded on a stale revision"
	revBackwards  fault = "write returned an old revision"
	lostWrite     fault = "acknowledged write lost"
	lostLateWrite fault = "acknowledged write lost near the end"
	partialBatch  fault = "batch applied partially"
)

var allFaults = []fault{staleRead, ghostRead, wrongReadRev, casNotCurrent, revBackwards, lostWrite, lostLateWrite, partialBatch}

type genConfig struct {
	ops         int
	clients     int
	groups      int     // key prefixes g0/ g1/ ...; batches stay within one
	keysPer     int     // keys per group
	unknownRate float64 // fraction of writes whose outcome is lost
	spanTicks   int64   // how far call and return stray from the linearization point
	fault       fault
}

type refKey struct {
	value string
	rev   int64
}

type refStore struct {
	keys  map[string]refKey
	prev  map[string]*refKey // state before the key's last change (nil: absent)
	rev   int64
	nextV int
}

func (s *refStore) value(c int) string {
	s.nextV++
	return fmt.Sprintf("c%d-%d", c, s.nextV)
}

func (s *refStore) set(key, value string, rev int64) {
	s.remember(key)
	s.keys[key] = refKey{value, rev}
}

func (s *refStore) del(key string) {
	s.remember(key)
	delete(s.keys, key)
}

func (s *refStore) remember(key string) {
	if k, ok := s.keys[key]; ok {
		s.prev[key] = &k
	} else {
		s.prev[key] = nil
	}
}

func (s *refStore) cond(key string, c history.Cond) bool {
	k, ok := s.keys[key]
	if c.IfAbsent && ok {
		return false
	}
	return c.IfMatch == 0 || (ok && k.rev == c.IfMatch)
}

// generate returns a history and whether the fault was injected (a fault
// needs an eligible op, which a short history may lack).
func generate(seed uint64, cfg genConfig) (history.History, bool) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	st := &refStore{keys: map[string]refKey{}, prev: map[string]*refKey{}}
	var keys []string
	groupKeys := make([][]string, cfg.groups)
	for g := range cfg.groups {
		for k := range cfg.keysPer {
			key := fmt.Sprintf("g%d/%d", g, k)
			keys = append(keys, key)
			groupKeys[g] = append(groupKeys[g], key)
		}
	}
	busyUntil := make([]int64, cfg.clients)
	var h history.History
	now := int64(0)
	faultAt := cfg.ops/4 + rng.IntN(cfg.ops/2+1) // first op index where the fault may strike
	if cfg.fault == lostLateWrite {
		faultAt = cfg.ops - cfg.ops/20 // few later writes: the final read should miss it
	}
	injected := cfg.fault == noFault
	for i := 0; i < cfg.ops; i++ {
		now += 1 + rng.Int64N(3)
		// A free client (sequential clients): wait for one if none is.
		c := -1
		for c < 0 {
			var free []int
			for j, b := range busyUntil {
				if b < now {
					free = append(free, j)
				}
			}
			if len(free) == 0 {
				now++
				continue
			}
			c = free[rng.IntN(len(free))]
		}
		call := max(busyUntil[c]+1, now-rng.Int64N(cfg.spanTicks+1))
		ret := now + rng.Int64N(cfg.spanTicks+1)
		o := history.Op{Client: c, Call: call, Return: ret, Outcome: history.OK, Code: 200}
		g := rng.IntN(cfg.groups)
		key := groupKeys[g][rng.IntN(cfg.keysPer)]
		unknown := rng.Float64() < cfg.unknownRate
		// The fault strikes an op whose outcome the client learns.
		armed := !injected && i >= faultAt && !unknown
		takesEffect := !unknown || rng.IntN(2) == 0
		switch r := rng.IntN(100); {
		case r < 30: // get
			o.Kind, o.Key = history.Get, key
			o.Consistency = history.Linearizable
			if rng.IntN(2) == 0 {
				o.Consistency = history.Lease
			}
			k, ok := st.keys[key]
			o.Found, o.ReadValue, o.Rev, o.StoreRev = ok, k.value, k.rev, st.rev
			if !ok {
				o.Code, o.Rev = 404, 0
			}
			if rng.IntN(4) == 0 {
				o.StoreRev = 0 // header not recorded
			}
			if armed {
				injected = injectRead(&o, st, cfg.fault)
			}
			if unknown {
				o = unknownOp(o)
			}
		case r < 50: // put
			o.Kind, o.Key, o.Value = history.Put, key, st.value(c)
			if armed && cfg.fault == revBackwards && st.prev[key] != nil {
				if k, ok := st.keys[key]; ok {
					st.rev++
					st.set(key, o.Value, st.rev)
					o.Rev = k.rev // the key's previous revision
					injected = true
					break
				}
			}
			if armed && (cfg.fault == lostWrite || cfg.fault == lostLateWrite) {
				st.rev++
				o.Rev = st.rev // acknowledged, never applied
				injected = true
				break
			}
			if takesEffect {
				st.rev++
				st.set(key, o.Value, st.rev)
				o.Rev = st.rev
			}
			if unknown {
				o = unknownOp(o)
			}
		case r < 65: // conditional put
			o.Kind, o.Key, o.Value = history.Put, key, st.value(c)
			k, ok := st.keys[key]
			switch {
			case !ok || rng.IntN(5) == 0:
				o.Cond.IfAbsent = true
			case rng.IntN(3) == 0 && k.rev > 1:
				o.Cond.IfMatch = 1 + rng.Int64N(k.rev-1) // stale
			default:
				o.Cond.IfMatch = k.rev
			}
			holds := st.cond(key, o.Cond)
			if armed && cfg.fault == casNotCurrent && !holds && o.Cond.IfMatch != 0 && !unknown {
				holds, injected = true, true
			}
			switch {
			case !holds:
				o.Outcome, o.Code = history.Fail, 412
			case takesEffect:
				st.rev++
				st.set(key, o.Value, st.rev)
				o.Rev = st.rev
			}
			if unknown {
				o = unknownOp(o)
			}
		case r < 73: // delete
			o.Kind, o.Key = history.Delete, key
			k, ok := st.keys[key]
			if ok && rng.IntN(3) == 0 {
				o.Cond.IfMatch = k.rev
			}
			switch {
			case !ok:
				o.Outcome, o.Code = history.Fail, 404
			case takesEffect:
				st.rev++
				st.del(key)
				o.Rev = st.rev
			}
			if unknown {
				o = unknownOp(o)
			}
		case r < 88: // batch over 2..keysPer keys of one group
			o.Kind = history.Batch
			ks := slices.Clone(groupKeys[g])
			rng.Shuffle(len(ks), func(a, b int) { ks[a], ks[b] = ks[b], ks[a] })
			ks = ks[:2+rng.IntN(len(ks)-1)]
			var failed []int
			for j, bk := range ks {
				b := history.BatchOp{Op: history.Put, Key: bk, Value: st.value(c)}
				if rng.IntN(6) == 0 {
					b.Op, b.Value = history.Delete, ""
				}
				if k, ok := st.keys[bk]; ok && rng.IntN(3) == 0 {
					b.Cond.IfMatch = k.rev
					if rng.IntN(4) == 0 {
						b.Cond.IfMatch = k.rev + 1 // fails
					}
				}
				if !st.cond(bk, b.Cond) {
					failed = append(failed, j)
				}
				o.Ops = append(o.Ops, b)
			}
			if len(failed) > 0 {
				o.Outcome, o.Code, o.Failed = history.Fail, 412, failed
				if unknown {
					o = unknownOp(o)
				}
				break
			}
			partial := armed && cfg.fault == partialBatch && !unknown && o.Ops[0].Op == history.Put && o.Ops[1].Op == history.Put
			if takesEffect {
				changes := false
				for _, b := range o.Ops {
					_, ok := st.keys[b.Key]
					changes = changes || b.Op == history.Put || ok
				}
				if changes {
					st.rev++
				}
				for j, b := range o.Ops {
					if partial && j > 0 {
						injected = true
						break
					}
					if b.Op == history.Put {
						st.set(b.Key, b.Value, st.rev)
					} else if _, ok := st.keys[b.Key]; ok {
						st.del(b.Key)
					}
				}
				o.Rev = st.rev
			}
			if unknown {
				o = unknownOp(o)
			}
		case r < 95: // list one group, sometimes one page of it
			o.Kind, o.Prefix, o.Consistency = history.List, fmt.Sprintf("g%d/", g), history.Linearizable
			if rng.IntN(3) == 0 {
				o.Limit = 1 + rng.IntN(cfg.keysPer)
			}
			limit := o.Limit
			if limit == 0 {
				limit = 100
			}
			for _, k := range groupKeys[g] {
				v, ok := st.keys[k]
				if !ok {
					continue
				}
				if len(o.Items) == limit {
					o.More = true
					break
				}
				o.Items = append(o.Items, history.Item{Key: k, Value: v.value, Rev: v.rev})
			}
			o.StoreRev = st.rev
			if unknown {
				o = unknownOp(o)
			}
		default: // delete a group's prefix
			o.Kind, o.Prefix = history.DeletePrefix, fmt.Sprintf("g%d/", g)
			if takesEffect {
				var del []string
				for _, k := range groupKeys[g] {
					if _, ok := st.keys[k]; ok {
						del = append(del, k)
					}
				}
				if len(del) > 0 {
					st.rev++
				}
				for _, k := range del {
					st.del(k)
				}
				o.Deleted, o.Rev = len(del), st.rev
			}
			if unknown {
				o = unknownOp(o)
			}
		}
		busyUntil[c] = o.Return
		h = append(h, o)
	}
	// Final reads of every key, after everything, by one client.
	end := now + cfg.spanTicks + 10
	for _, b := range busyUntil {
		end = max(end, b+1)
	}
	sort.Strings(keys)
	for _, key := range keys {
		k, ok := st.keys[key]
		o := history.Op{Client: 0, Kind: history.Get, Key: key, Consistency: history.Linearizable, Final: true,
			Call: end, Return: end + 1, Outcome: history.OK, Code: 200, Found: ok, ReadValue: k.value, Rev: k.rev, StoreRev: st.rev}
		if !ok {
			o.Code = 404
		}
		h = append(h, o)
		end += 2
	}
	return mk(h...), injected
}

func unknownOp(o history.Op) history.Op {
	o.Outcome, o.Code, o.Rev, o.StoreRev, o.Failed, o.Deleted = history.Unknown, 504, 0, 0, nil, 0
	o.Found, o.ReadValue, o.Items, o.More = false, "", nil, false
	o.Err = "timeout"
	return o
}

// injectRead applies a read fault to a Get that would be correct.
func injectRead(o *history.Op, st *refStore, f fault) bool {
	switch f {
	case staleRead:
		prev, changed := st.prev[o.Key]
		if !changed {
			return false
		}
		if prev == nil {
			o.Found, o.ReadValue, o.Rev, o.Code = false, "", 0, 404
		} else {
			o.Found, o.ReadValue, o.Rev, o.Code = true, prev.value, prev.rev, 200
		}
		return true
	case ghostRead:
		o.Found, o.ReadValue, o.Code = true, "ghost-"+strings.Repeat("x", 3), 200
		if o.Rev == 0 {
			o.Rev = st.rev
		}
		return true
	case wrongReadRev:
		if !o.Found || o.Rev <= 1 {
			return false
		}
		o.Rev--
		return true
	}
	return false
}
