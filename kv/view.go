package kv

import "strings"

// Range bounds (SPEC §2: limit ≤ 1000, default 100).
const (
	DefaultRangeLimit = 100
	MaxRangeLimit     = 1000
)

// View is an immutable state of the store as of one applied index.
// Any number of goroutines may read it while the Machine applies further
// entries; it never changes and never blocks. Values it returns alias the
// store: callers must not modify them.
type View struct {
	st state
}

// Item is one key of a range scan.
type Item struct {
	Key      string
	Value    []byte // read-only
	Revision uint64 // the store revision at which the key was last written
}

// Revision is the store revision: the number of applied writes that
// changed data.
func (v *View) Revision() uint64 { return v.st.revision }

// AppliedIndex is the Raft index of the last entry this view reflects.
func (v *View) AppliedIndex() uint64 { return v.st.applied }

// Len is the number of keys.
func (v *View) Len() int { return v.st.tree.Len() }

// SizeBytes is the store size counted against the quota.
func (v *View) SizeBytes() uint64 { return v.st.sizeBytes }

// IdempotencyKeys is the number of remembered idempotency keys (expired
// ones included until they are pruned).
func (v *View) IdempotencyKeys() int { return v.st.idemBySeq.Len() }

// LastTimestampNs is the idempotency clock: the largest leader timestamp
// applied so far.
func (v *View) LastTimestampNs() int64 { return v.st.lastTsNs }

// Get returns the value of key and its revision (the ETag).
func (v *View) Get(key string) (value []byte, revision uint64, found bool) {
	it, ok := v.st.tree.Get(probe(key))
	if !ok {
		return nil, 0, false
	}
	return it.value(), it.rev, true
}

// GetBytes is Get for a key held in a byte slice; it does not keep key.
func (v *View) GetBytes(key []byte) (value []byte, revision uint64, found bool) {
	return v.Get(keyString(key))
}

// Range appends to dst, in key order, up to limit keys that start with
// prefix and sort strictly after after, and reports whether more such
// keys follow. limit <= 0 means DefaultRangeLimit; above MaxRangeLimit it
// is MaxRangeLimit. An empty prefix selects every key, an empty after
// starts at the first.
func (v *View) Range(prefix, after string, limit int, dst []Item) (items []Item, more bool) {
	if limit <= 0 {
		limit = DefaultRangeLimit
	}
	limit = min(limit, MaxRangeLimit)
	start := prefix
	if after >= prefix {
		start = after
	}
	taken := 0
	v.st.tree.Ascend(probe(start), func(it item) bool {
		if !strings.HasPrefix(it.key(), prefix) {
			return false
		}
		if it.key() == after {
			return true // after is exclusive
		}
		if taken == limit {
			more = true
			return false
		}
		dst = append(dst, Item{Key: it.key(), Value: it.value(), Revision: it.rev})
		taken++
		return true
	})
	return dst, more
}
