package check

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/edgekv/edgekv/chaos/history"
)

// DurabilityResult is the durability checker's answer.
type DurabilityResult struct {
	Verdict    Verdict
	Keys       int // keys with a final read
	Violations []DurabilityViolation
}

// DurabilityViolation is one key whose final read contradicts an
// acknowledged write.
type DurabilityViolation struct {
	Key    string
	Final  string   // the final read, described
	Reason string   // why it is impossible
	Lost   []string // the acknowledged writes that the final read lost
}

func (v DurabilityViolation) String() string {
	s := fmt.Sprintf("key %q: final read %s: %s", v.Key, v.Final, v.Reason)
	if len(v.Lost) > 0 {
		s += "; lost: " + strings.Join(v.Lost, "; ")
	}
	return s
}

// effect is what one write that may have taken effect left on one key.
type effect struct {
	op      *history.Op
	deleted bool
	value   string
	ret     int64 // return time; MaxInt64 for an Unknown outcome
}

// Durability checks the final reads of h (Gets with Final set, done after
// the cluster was healed) against every write of h: each acknowledged
// write must still be visible unless a write that is later than or
// concurrent with it (acknowledged or Unknown) may have replaced it.
//
// Per key: the final read names the write w that produced it (the unique
// value's writer; for an absent key, the delete or prefix delete that may
// have taken effect last, or the empty initial store). An acknowledged write
// that was called after w returned must be linearized after w, so it
// cannot have been replaced by w: it is lost. An Unknown w never returned,
// so it can explain anything.
//
// Every key written must have exactly one successful final read, else an
// error (the runner's bug, not a violation).
func Durability(h history.History) (DurabilityResult, error) {
	finals := map[string]*history.Op{}
	for i := range h {
		o := &h[i]
		if !o.Final {
			continue
		}
		if o.Kind != history.Get || o.Outcome != history.OK || o.Consistency == history.Stale {
			return DurabilityResult{}, fmt.Errorf("check: final read %s: want a successful non-stale Get", o)
		}
		if prev, dup := finals[o.Key]; dup {
			return DurabilityResult{}, fmt.Errorf("check: key %q final-read twice (ops %d and %d)", o.Key, prev.ID, o.ID)
		}
		finals[o.Key] = o
	}
	effects := writesByKey(h)
	for key := range effects {
		if finals[key] == nil {
			return DurabilityResult{}, fmt.Errorf("check: key %q was written but has no final read", key)
		}
	}
	res := DurabilityResult{Verdict: Ok, Keys: len(finals)}
	keys := make([]string, 0, len(finals))
	for k := range finals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if v, bad := durableKey(key, finals[key], effects[key]); bad {
			res.Violations = append(res.Violations, v)
		}
	}
	if len(res.Violations) > 0 {
		res.Verdict = Illegal
	}
	return res, nil
}

// writesByKey lists, per key, the writes that may have taken effect on it
// (OK or Unknown; a definite failure had no effect).
func writesByKey(h history.History) map[string][]effect {
	m := map[string][]effect{}
	add := func(o *history.Op, key string, deleted bool, value string) {
		ret := o.Return
		if o.Outcome == history.Unknown {
			ret = math.MaxInt64
		}
		m[key] = append(m[key], effect{op: o, deleted: deleted, value: value, ret: ret})
	}
	// Keys a prefix delete may cover: every key the history names.
	var allKeys []string
	seen := map[string]bool{}
	for i := range h {
		for _, k := range h[i].Keys() {
			if !seen[k] {
				seen[k] = true
				allKeys = append(allKeys, k)
			}
		}
	}
	for i := range h {
		o := &h[i]
		if !o.IsWrite() || o.Outcome == history.Fail {
			continue
		}
		switch o.Kind {
		case history.Put:
			add(o, o.Key, false, o.Value)
		case history.Delete:
			add(o, o.Key, true, "")
		case history.Batch:
			for _, b := range o.Ops {
				add(o, b.Key, b.Op == history.Delete, b.Value)
			}
		case history.DeletePrefix:
			for _, k := range allKeys {
				if strings.HasPrefix(k, o.Prefix) {
					add(o, k, true, "")
				}
			}
		}
	}
	// A prefix delete alone does not make a key "written".
	for k, es := range m {
		onlyPrefix := true
		for _, e := range es {
			onlyPrefix = onlyPrefix && e.op.Kind == history.DeletePrefix
		}
		if onlyPrefix {
			delete(m, k)
		}
	}
	return m
}

func durableKey(key string, final *history.Op, es []effect) (DurabilityViolation, bool) {
	v := DurabilityViolation{Key: key, Final: "absent"}
	if final.Found {
		v.Final = fmt.Sprintf("%q", final.ReadValue)
	}
	// The write that produced the final read and its return time.
	writerRet := int64(math.MinInt64) // the empty initial store
	writer := "the initial empty store"
	found := false
	for _, e := range es {
		switch {
		case final.Found && !e.deleted && e.value == final.ReadValue:
			writerRet, writer, found = e.ret, e.op.String(), true
		case !final.Found && e.deleted && e.ret > writerRet:
			writerRet, writer = e.ret, e.op.String()
		}
	}
	if final.Found && !found {
		v.Reason = "value never written by a write that may have taken effect"
		return v, true
	}
	for _, e := range es {
		if e.op.Outcome == history.OK && e.op.Call > writerRet {
			v.Lost = append(v.Lost, e.op.String())
		}
	}
	if len(v.Lost) == 0 {
		return v, false
	}
	v.Reason = "it was produced by " + writer + ", which returned before these acknowledged writes were called"
	return v, true
}
