// Package history records what concurrent clients of an edgekv cluster
// asked and saw, for the checkers in chaos/check: one Op per request, with
// its call and return times on one monotonic clock and its outcome.
//
// Outcomes follow SPEC §3: a request that timed out, got 504 or lost its
// connection is Unknown — it may or may not have taken effect, at any time
// after its call — and is never recorded as a failure. Fail means the
// cluster answered that the request had no effect (412, 404, 429...).
//
// Recording takes no lock on the hot path: each client goroutine owns a
// Client and appends to its own buffer; Recorder.History merges the buffers
// once every client has stopped.
//
// A History serialises to JSON lines (one Op per line) so that a failing
// history can be written to a folder and checked again later.
//
// This package must never judge a history (chaos/check does) nor talk to a
// cluster (the runner does); it records and reloads.
package history

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the request an Op made.
type Kind string

const (
	// Put is PUT /v1/kv/<key>, optionally with If-Match or If-None-Match.
	Put Kind = "put"
	// Get is GET /v1/kv/<key> at some consistency level.
	Get Kind = "get"
	// Delete is DELETE /v1/kv/<key>, optionally with If-Match.
	Delete Kind = "delete"
	// Batch is POST /v1/batch (PutAll): puts and deletes applied atomically.
	Batch Kind = "batch"
	// DeletePrefix is DELETE /v1/kv?prefix=<p>.
	DeletePrefix Kind = "delete_prefix"
	// List is GET /v1/kv?prefix=<p>&after=<key>&limit=<n>: one page read
	// at one revision.
	List Kind = "list"
)

// Outcome is what the client learnt about an Op's effect.
type Outcome string

const (
	// OK: 2xx (and, for a Get, 404 with Found=false: a read of absence).
	OK Outcome = "ok"
	// Fail: the cluster said the request had no effect (4xx, 507, a read's
	// 503). Code says which.
	Fail Outcome = "fail"
	// Unknown: timeout, 504, broken connection, a write's 503 — the write
	// may or may not take effect, at any time after Call.
	Unknown Outcome = "unknown"
)

// Consistency levels of a Get or List (SPEC §2).
const (
	Linearizable = "linearizable"
	Lease        = "lease"
	Stale        = "stale"
)

// Cond is a write's precondition. The zero value is "no condition".
type Cond struct {
	// IfMatch, when > 0, requires the key's current revision to equal it.
	IfMatch int64 `json:"if_match,omitempty"`
	// IfAbsent requires the key to be absent (If-None-Match: *).
	IfAbsent bool `json:"if_absent,omitempty"`
}

// IsZero reports whether c imposes nothing.
func (c Cond) IsZero() bool { return c.IfMatch == 0 && !c.IfAbsent }

// BatchOp is one put or delete inside a PutAll batch.
type BatchOp struct {
	Op    Kind   `json:"op"` // Put or Delete
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Cond  Cond   `json:"cond,omitzero"`
}

// Item is one key of a List page.
type Item struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Rev   int64  `json:"rev"`
}

// Op is one client request and what came back. Times are nanoseconds on
// the Recorder's monotonic clock. Value strings stand for the raw bytes
// the runner sent (it must make every written value unique).
type Op struct {
	ID     int  `json:"id"`     // unique in the history, assigned by the Recorder
	Client int  `json:"client"` // zero-based client index
	Kind   Kind `json:"kind"`

	// Input.
	Key         string    `json:"key,omitempty"`   // Put, Get, Delete
	Value       string    `json:"value,omitempty"` // Put
	Cond        Cond      `json:"cond,omitzero"`   // Put, Delete
	Consistency string    `json:"consistency,omitempty"`
	Ops         []BatchOp `json:"ops,omitempty"`    // Batch
	Prefix      string    `json:"prefix,omitempty"` // DeletePrefix, List
	After       string    `json:"after,omitempty"`  // List
	Limit       int       `json:"limit,omitempty"`  // List
	Final       bool      `json:"final,omitempty"`  // a Get of the final read after healing
	Node        string    `json:"node,omitempty"`   // which node was asked (for the reader)

	Call   int64 `json:"call"`
	Return int64 `json:"return"` // when the client gave up for Unknown

	// Output.
	Outcome Outcome `json:"outcome"`
	Code    int     `json:"code,omitempty"` // HTTP status, 0 when none came back
	// Rev is the revision a write returned, or the key's revision (ETag)
	// a Get returned.
	Rev int64 `json:"rev,omitempty"`
	// StoreRev is X-Edgekv-Revision (the store revision the answer
	// reflects), 0 when absent.
	StoreRev  int64  `json:"store_rev,omitempty"`
	Found     bool   `json:"found,omitempty"`      // Get: 200 rather than 404
	ReadValue string `json:"read_value,omitempty"` // Get
	Items     []Item `json:"items,omitempty"`      // List
	More      bool   `json:"more,omitempty"`       // List
	Failed    []int  `json:"failed,omitempty"`     // Batch 412: failing op indexes
	Deleted   int    `json:"deleted,omitempty"`    // DeletePrefix
	Err       string `json:"err,omitempty"`        // why Fail or Unknown, for humans
}

// IsWrite reports whether the Op may change the store.
func (o *Op) IsWrite() bool {
	switch o.Kind {
	case Put, Delete, Batch, DeletePrefix:
		return true
	}
	return false
}

// Keys returns the keys the Op names explicitly (not those a prefix covers).
func (o *Op) Keys() []string {
	switch o.Kind {
	case Put, Get, Delete:
		return []string{o.Key}
	case Batch:
		keys := make([]string, 0, len(o.Ops))
		for _, b := range o.Ops {
			keys = append(keys, b.Key)
		}
		return keys
	}
	return nil
}

// String is a short human description, used in reports.
func (o *Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d c%d %s", o.ID, o.Client, o.Kind)
	switch o.Kind {
	case Put:
		fmt.Fprintf(&b, " %q=%q", o.Key, o.Value)
	case Get, Delete:
		fmt.Fprintf(&b, " %q", o.Key)
	case Batch:
		for _, op := range o.Ops {
			fmt.Fprintf(&b, " [%s %q=%q%s]", op.Op, op.Key, op.Value, condString(op.Cond))
		}
	case DeletePrefix, List:
		fmt.Fprintf(&b, " prefix=%q", o.Prefix)
	}
	b.WriteString(condString(o.Cond))
	if o.Consistency != "" {
		fmt.Fprintf(&b, " (%s)", o.Consistency)
	}
	fmt.Fprintf(&b, " [%d,%d] -> %s", o.Call, o.Return, o.Outcome)
	if o.Code != 0 {
		fmt.Fprintf(&b, " %d", o.Code)
	}
	switch {
	case o.Kind == Get && o.Outcome == OK && o.Found:
		fmt.Fprintf(&b, " %q@%d", o.ReadValue, o.Rev)
	case o.Kind == Get && o.Outcome == OK:
		b.WriteString(" absent")
	case o.Outcome == OK && o.Rev != 0:
		fmt.Fprintf(&b, " rev=%d", o.Rev)
	}
	return b.String()
}

func condString(c Cond) string {
	switch {
	case c.IfMatch != 0 && c.IfAbsent:
		return fmt.Sprintf(" if-match=%d if-absent", c.IfMatch)
	case c.IfMatch != 0:
		return fmt.Sprintf(" if-match=%d", c.IfMatch)
	case c.IfAbsent:
		return " if-absent"
	}
	return ""
}

// Validate checks what the checkers rely on: known kinds and outcomes,
// Return >= Call, unique IDs, and every written value unique in the history
// (a read's value then names the one write it observed).
func (h History) Validate() error {
	ids := make(map[int]bool, len(h))
	written := make(map[string]int, len(h))
	for i := range h {
		o := &h[i]
		if ids[o.ID] {
			return fmt.Errorf("op %d: duplicate id", o.ID)
		}
		ids[o.ID] = true
		if o.Return < o.Call {
			return fmt.Errorf("op %d: return %d before call %d", o.ID, o.Return, o.Call)
		}
		switch o.Outcome {
		case OK, Fail, Unknown:
		default:
			return fmt.Errorf("op %d: unknown outcome %q", o.ID, o.Outcome)
		}
		noteValue := func(v string) error {
			if prev, dup := written[v]; dup {
				return fmt.Errorf("op %d: value %q already written by op %d: values must be unique", o.ID, v, prev)
			}
			written[v] = o.ID
			return nil
		}
		switch o.Kind {
		case Put:
			if err := noteValue(o.Value); err != nil {
				return err
			}
		case Batch:
			if len(o.Ops) == 0 {
				return fmt.Errorf("op %d: empty batch", o.ID)
			}
			seen := make(map[string]bool, len(o.Ops))
			for _, b := range o.Ops {
				if seen[b.Key] {
					return fmt.Errorf("op %d: key %q twice in one batch (not modelled)", o.ID, b.Key)
				}
				seen[b.Key] = true
				switch b.Op {
				case Put:
					if err := noteValue(b.Value); err != nil {
						return err
					}
				case Delete:
				default:
					return fmt.Errorf("op %d: batch op kind %q", o.ID, b.Op)
				}
			}
		case DeletePrefix:
			if o.Prefix == "" {
				return fmt.Errorf("op %d: empty prefix", o.ID)
			}
		case Get, Delete, List:
		default:
			return fmt.Errorf("op %d: unknown kind %q", o.ID, o.Kind)
		}
	}
	return nil
}

// History is every Op of a run, sorted by Call.
type History []Op

// ErrBadHistory wraps every error of a history that cannot be loaded.
var ErrBadHistory = errors.New("bad history")
