// Package model is the sequential specification of edgekv's key-value API
// (SPEC §2) as a porcupine model, so that chaos/check can decide whether a
// recorded history is linearizable.
//
// It must never accept a history the specification forbids because of a
// shortcut it takes (it may only be incomplete in the documented ways
// below), and it must never mutate a state or an Op (porcupine requires pure
// step functions).
//
// # State
//
// One state per partition: the keys of the partition that exist, each with
// its value and revision, and Floor, a lower bound on the store revision at
// the current point of the linearization.
//
// # Partitions
//
// Independent keys are checked separately: Partition unions (union-find)
// the keys each Op touches — a PutAll batch joins its keys, a prefix Op
// (DeletePrefix, List) joins every key of the history under its prefix —
// and returns one sub-history per connected set. A batch's atomicity is
// thus checked within one partition.
//
// # Revisions
//
// edgekv's revision is one store-wide counter, bumped once per change
// (a batch is one change). Modelling every key together would make the
// check exponential in the whole history, so the model asserts what holds
// within a partition, using only that partition's Ops:
//
//   - A change linearized later has a greater revision than every change
//     and every read linearized before it (Floor rises; a change's
//     revision R must be > Floor). Hence per-key revisions never go
//     backwards and all keys of a batch carry the batch's one revision.
//   - A read reports the revision of the write it observes (its ETag):
//     equal to the key's revision in the model.
//   - A read's store revision (X-Edgekv-Revision, when recorded) is >=
//     Floor: linearizable reads never go back in time.
//   - A change that writes nothing (a batch of deletes of absent keys, a
//     prefix delete that deleted 0 keys) returns the current store
//     revision, >= Floor, like a read (0, the empty store's, is accepted
//     and ignored).
//
// Revisions of other partitions' changes are not known here, so a change's
// revision is only bounded below, never required to be Floor+1.
//
// # Unknown outcomes
//
// An Op whose outcome is Unknown gets an infinite return time (Operations
// does this): porcupine may linearize it anywhere after its call, including
// after every other Op, which is how "it never took effect" is expressed.
// When it takes effect its revision is unknown: the key's revision is
// only known to be >= Lo (Floor+1 at that point) until a later read or
// successful If-Match binds it to one value (which then raises Floor). A
// condition against an unbound revision may hold or not: the model
// branches (a porcupine.NondeterministicModel).
//
// Deliberately, an Unknown change neither raises Floor nor is its
// revision capped by later changes and reads: both are sound and were
// tried, but they make the states after "unknown write, then read" and
// "read, then unknown write" differ, which defeats porcupine's state cache.
// A 1000-op, 3-key history with 10% Unknown outcomes went from over 20 s
// (time limit) to about 0.1 s without them.
//
// Known incompleteness (never a false alarm, possibly a missed one): the
// revision of an Unknown change is bounded below only; two Unknown changes
// of one partition are not ordered against each other's revisions; a 412
// never narrows an unbound revision; the store revision of a failed request
// is not used; keys of a batch applied with an unknown outcome are bound
// independently although they share one revision.
package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/edgekv/edgekv/chaos/history"
)

// DefaultListLimit is the page size of a List without a limit (SPEC §2).
const DefaultListLimit = 100

// keyState is one existing key. Rev > 0 is its known revision; Rev == 0
// means the write that made it had an unknown outcome and its revision is
// >= Lo.
type keyState struct {
	Key   string
	Value string
	Rev   int64
	Lo    int64
}

// State is one partition's state. Keys is sorted by Key and holds only
// existing keys, so equal stores have equal States.
type State struct {
	Floor int64
	Keys  []keyState
}

func (s State) find(key string) (int, bool) {
	return slices.BinarySearchFunc(s.Keys, key, func(k keyState, key string) int {
		return strings.Compare(k.Key, key)
	})
}

func (s State) lookup(key string) (keyState, bool) {
	i, ok := s.find(key)
	if !ok {
		return keyState{}, false
	}
	return s.Keys[i], true
}

// clone copies s so that a step can change the copy.
func (s State) clone() State {
	return State{Floor: s.Floor, Keys: slices.Clone(s.Keys)}
}

func (s *State) set(k keyState) {
	i, ok := s.find(k.Key)
	if ok {
		s.Keys[i] = k
		return
	}
	s.Keys = slices.Insert(s.Keys, i, k)
}

func (s *State) remove(key string) {
	if i, ok := s.find(key); ok {
		s.Keys = slices.Delete(s.Keys, i, i+1)
	}
}

// knownChange records that a change with revision rev is linearized here:
// rev must exceed Floor.
func (s *State) knownChange(rev int64) bool {
	if rev <= s.Floor {
		return false
	}
	s.Floor = rev
	return true
}

// observe records that the store revision at this point is storeRev (a
// read's X-Edgekv-Revision): it must not be below Floor.
func (s *State) observe(storeRev int64) bool {
	if storeRev < s.Floor {
		return false
	}
	s.Floor = storeRev
	return true
}

func (s *State) raise(rev int64) {
	if rev > s.Floor {
		s.Floor = rev
	}
}

// unknownChange returns the lower bound of the revision of a change with an
// unknown revision linearized here (see the package comment for why Floor
// stays).
func (s *State) unknownChange() int64 {
	return s.Floor + 1
}

// bind records that key k (existing) has revision rev, as a read saw.
func (s *State) bind(k keyState, rev int64) bool {
	switch {
	case rev <= 0:
		return true // not recorded
	case k.Rev != 0:
		return k.Rev == rev
	case rev < k.Lo:
		return false
	}
	k.Rev, k.Lo = rev, 0
	s.set(k)
	s.raise(rev)
	return true
}

// tri is a condition's truth against a state: it may be undecided when it
// names an unbound revision.
type tri int8

const (
	no tri = iota
	yes
	maybe
)

func evalCond(s State, key string, c history.Cond) tri {
	k, exists := s.lookup(key)
	if c.IfAbsent && exists {
		return no
	}
	if c.IfMatch == 0 {
		return yes
	}
	switch {
	case !exists:
		return no
	case k.Rev != 0 && k.Rev == c.IfMatch:
		return yes
	case k.Rev != 0:
		return no
	case c.IfMatch < k.Lo:
		return no
	}
	return maybe
}

// bindConds binds the unbound revisions that conditions assumed to hold.
func bindConds(s *State, keys []string, conds []history.Cond) bool {
	for i, key := range keys {
		if conds[i].IfMatch == 0 {
			continue
		}
		k, exists := s.lookup(key)
		if !exists || !s.bind(k, conds[i].IfMatch) {
			return false
		}
	}
	return true
}

// write is one key's effect inside a change.
type write struct {
	key    string
	value  string
	delete bool
}

// applyWrites applies the writes at revision rev (0: unknown) and reports
// whether the step is legal. A change that changes nothing is a read of
// the store revision.
func applyWrites(s *State, ws []write, rev int64) bool {
	changes := changesAny(*s, ws)
	var lo int64
	switch {
	case !changes && rev == 0:
		return true
	case !changes:
		return s.observe(rev)
	case rev == 0:
		lo = s.unknownChange()
	default:
		if !s.knownChange(rev) {
			return false
		}
	}
	for _, w := range ws {
		if w.delete {
			s.remove(w.key)
			continue
		}
		k := keyState{Key: w.key, Value: w.value, Rev: rev}
		if rev == 0 {
			k.Lo = lo
		}
		s.set(k)
	}
	return true
}

// changesAny reports whether ws would change s: a put always does (values
// are unique), a delete when its key exists.
func changesAny(s State, ws []write) bool {
	for _, w := range ws {
		if _, exists := s.lookup(w.key); !w.delete || exists {
			return true
		}
	}
	return false
}

// conditional steps an Op made of writes under conditions (Put, Delete,
// Batch). conds[i] guards ws[i].
func conditional(s State, op *history.Op, ws []write, conds []history.Cond) []any {
	keys := make([]string, len(ws))
	truth := make([]tri, len(ws))
	anyNo, anyMaybe := false, false
	for i, w := range ws {
		keys[i] = w.key
		truth[i] = evalCond(s, w.key, conds[i])
		anyNo = anyNo || truth[i] == no
		anyMaybe = anyMaybe || truth[i] == maybe
	}
	succeed := func() []any {
		if anyNo {
			return nil
		}
		n := s.clone()
		if !bindConds(&n, keys, conds) || !applyWrites(&n, ws, op.Rev) {
			return nil
		}
		return []any{n}
	}
	switch op.Outcome {
	case history.OK:
		if op.Rev <= 0 && changesAny(s, ws) {
			return nil // an acknowledged change always returns its revision
		}
		return succeed()
	case history.Unknown:
		var next []any
		if !anyNo {
			n := s.clone()
			if bindConds(&n, keys, conds) && applyWrites(&n, ws, 0) {
				next = append(next, n)
			}
		}
		if anyNo || anyMaybe {
			next = append(next, s) // a condition failed: no effect
		}
		return next
	case history.Fail:
		return failed(s, op, ws, conds, truth, anyNo, anyMaybe)
	}
	return nil
}

// failed steps a definite failure: 412 needs a failing condition (each
// reported index must be able to fail); a Delete's 404 needs the key
// absent. Nothing changes.
func failed(s State, op *history.Op, ws []write, conds []history.Cond, truth []tri, anyNo, anyMaybe bool) []any {
	switch op.Code {
	case 412:
		for _, i := range op.Failed {
			if i < 0 || i >= len(truth) || truth[i] == yes {
				return nil
			}
		}
		// An absent key under If-Match may be answered 412 or 404.
		if anyNo || anyMaybe {
			return []any{s}
		}
		return nil
	case 404:
		if op.Kind != history.Delete {
			return nil
		}
		if _, exists := s.lookup(ws[0].key); exists {
			return nil
		}
		return []any{s}
	}
	return []any{s} // no information (Operations drops these)
}

// Step is the sequential specification of one Op (the porcupine input;
// the output is the same *history.Op, whose output fields it reads).
func Step(state any, input any, _ any) []any {
	s := state.(State)
	op := input.(*history.Op)
	switch op.Kind {
	case history.Put:
		return conditional(s, op, []write{{key: op.Key, value: op.Value}}, []history.Cond{op.Cond})
	case history.Delete:
		return conditional(s, op, []write{{key: op.Key, delete: true}}, []history.Cond{op.Cond})
	case history.Batch:
		ws := make([]write, len(op.Ops))
		conds := make([]history.Cond, len(op.Ops))
		for i, b := range op.Ops {
			ws[i] = write{key: b.Key, value: b.Value, delete: b.Op == history.Delete}
			conds[i] = b.Cond
		}
		return conditional(s, op, ws, conds)
	case history.Get:
		return stepGet(s, op)
	case history.DeletePrefix:
		return stepDeletePrefix(s, op)
	case history.List:
		return stepList(s, op)
	}
	return nil
}

func stepGet(s State, op *history.Op) []any {
	if op.Outcome != history.OK {
		return []any{s} // no information (Operations drops these)
	}
	k, exists := s.lookup(op.Key)
	if exists != op.Found || (exists && k.Value != op.ReadValue) {
		return nil
	}
	n := s.clone()
	if exists && !n.bind(k, op.Rev) {
		return nil
	}
	if op.StoreRev > 0 && !n.observe(op.StoreRev) {
		return nil
	}
	return []any{n}
}

func underPrefix(s State, prefix string) []write {
	var ws []write
	for _, k := range s.Keys {
		if strings.HasPrefix(k.Key, prefix) {
			ws = append(ws, write{key: k.Key, delete: true})
		}
	}
	return ws
}

func stepDeletePrefix(s State, op *history.Op) []any {
	ws := underPrefix(s, op.Prefix)
	n := s.clone()
	switch op.Outcome {
	case history.OK:
		if op.Deleted != len(ws) || (op.Rev <= 0 && len(ws) > 0) {
			return nil
		}
		if len(ws) == 0 {
			if op.Rev > 0 && !n.observe(op.Rev) {
				return nil
			}
			return []any{n}
		}
		if !applyWrites(&n, ws, op.Rev) {
			return nil
		}
		return []any{n}
	case history.Unknown:
		applyWrites(&n, ws, 0)
		return []any{n}
	}
	return []any{s}
}

func stepList(s State, op *history.Op) []any {
	if op.Outcome != history.OK {
		return []any{s}
	}
	limit := op.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var want []keyState
	more := false
	for _, k := range s.Keys {
		if !strings.HasPrefix(k.Key, op.Prefix) || k.Key <= op.After {
			continue
		}
		if len(want) == limit {
			more = true
			break
		}
		want = append(want, k)
	}
	if len(want) != len(op.Items) || more != op.More {
		return nil
	}
	n := s.clone()
	for i, k := range want {
		it := op.Items[i]
		if it.Key != k.Key || it.Value != k.Value || !n.bind(k, it.Rev) {
			return nil
		}
	}
	if op.StoreRev > 0 && !n.observe(op.StoreRev) {
		return nil
	}
	return []any{n}
}

// Equal compares two States.
func Equal(a, b any) bool {
	x, y := a.(State), b.(State)
	return x.Floor == y.Floor && slices.Equal(x.Keys, y.Keys)
}

// Hash hashes a State consistently with Equal.
func Hash(a any) uint64 {
	s := a.(State)
	h := fnv.New64a()
	fmt.Fprintf(h, "%d", s.Floor)
	for _, k := range s.Keys {
		fmt.Fprintf(h, "|%s=%s@%d>=%d", k.Key, k.Value, k.Rev, k.Lo)
	}
	return h.Sum64()
}

// DescribeState renders a State for porcupine's visualization.
func DescribeState(a any) string {
	s := a.(State)
	var b strings.Builder
	fmt.Fprintf(&b, "floor=%d {", s.Floor)
	for i, k := range s.Keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if k.Rev != 0 {
			fmt.Fprintf(&b, "%s=%s@%d", k.Key, k.Value, k.Rev)
		} else {
			fmt.Fprintf(&b, "%s=%s@>=%d", k.Key, k.Value, k.Lo)
		}
	}
	b.WriteString("}")
	return b.String()
}

// New returns the model, partitioned by connected keys.
func New() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: Partition,
		Init:      func() []any { return []any{State{}} },
		Step:      Step,
		Equal:     Equal,
		Hash:      Hash,
		DescribeOperation: func(input, _ any) string {
			return input.(*history.Op).String()
		},
		DescribeState: DescribeState,
	}
	return nm.ToModel()
}

// Operations turns a history into porcupine operations for New's model.
//
// Ops that carry no information are dropped (see Checked). An Unknown Op
// gets an infinite return time, with two sound refinements that keep the
// search from exploding (every pending Unknown write multiplies the states
// porcupine must try):
//
//   - An Unknown write whose value some checked read returned took effect
//     before that read returned: its return time becomes the earliest
//     such read's (never before its own call).
//   - An Unknown unconditional Put or Batch of unconditional puts whose
//     values nobody read, and whose keys no later or concurrent Op depends
//     on without reading them (a Delete, a condition, a prefix Op over
//     them), is dropped: whether it took effect changes no checked Op's
//     outcome (a read in its window would have returned its value; nobody
//     learns its revision), so the history is linearizable with it iff
//     without it.
func Operations(h history.History) []porcupine.Operation {
	firstSeen := observedBy(h)
	ops := make([]porcupine.Operation, 0, len(h))
	for i := range h {
		o := &h[i]
		if !Checked(o) {
			continue
		}
		ret := o.Return
		if o.Outcome == history.Unknown {
			ret = math.MaxInt64
			for _, v := range writtenValues(o) {
				if r, ok := firstSeen[v]; ok && r < ret {
					ret = max(r, o.Call)
				}
			}
			if ret == math.MaxInt64 && droppable(h, o) {
				continue
			}
		}
		ops = append(ops, porcupine.Operation{
			ClientId: o.Client,
			Input:    o,
			Call:     o.Call,
			Output:   o,
			Return:   ret,
		})
	}
	return ops
}

// RawOperations is Operations without the refinements of Unknown writes
// (every one kept, returning at infinity): the plain translation, for
// cross-checking the refinements on small histories.
func RawOperations(h history.History) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(h))
	for i := range h {
		o := &h[i]
		if !Checked(o) {
			continue
		}
		ret := o.Return
		if o.Outcome == history.Unknown {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: o.Client, Input: o, Call: o.Call, Output: o, Return: ret})
	}
	return ops
}

// observedBy maps each value that a checked, successful read returned to
// the earliest return time of such a read.
func observedBy(h history.History) map[string]int64 {
	seen := map[string]int64{}
	note := func(v string, ret int64) {
		if r, ok := seen[v]; !ok || ret < r {
			seen[v] = ret
		}
	}
	for i := range h {
		o := &h[i]
		if !Checked(o) || o.Outcome != history.OK {
			continue
		}
		switch o.Kind {
		case history.Get:
			if o.Found {
				note(o.ReadValue, o.Return)
			}
		case history.List:
			for _, it := range o.Items {
				note(it.Value, o.Return)
			}
		}
	}
	return seen
}

func writtenValues(o *history.Op) []string {
	switch o.Kind {
	case history.Put:
		return []string{o.Value}
	case history.Batch:
		var vs []string
		for _, b := range o.Ops {
			if b.Op == history.Put {
				vs = append(vs, b.Value)
			}
		}
		return vs
	}
	return nil
}

// droppable reports whether Unknown write u may be left out (see
// Operations); the caller has checked that nobody read its values.
func droppable(h history.History, u *history.Op) bool {
	keys := map[string]bool{}
	switch u.Kind {
	case history.Put:
		if !u.Cond.IsZero() {
			return false
		}
		keys[u.Key] = true
	case history.Batch:
		for _, b := range u.Ops {
			if b.Op != history.Put || !b.Cond.IsZero() {
				return false
			}
			keys[b.Key] = true
		}
	default:
		return false
	}
	for i := range h {
		d := &h[i]
		// An Unknown d may take effect after u however early it gave up.
		before := d.Outcome != history.Unknown && d.Return < u.Call
		if d == u || before || !Checked(d) {
			continue
		}
		if dependsOn(d, keys) {
			return false
		}
	}
	return true
}

// dependsOn reports whether d's outcome may depend on the presence or
// revision of one of keys without returning its value.
func dependsOn(d *history.Op, keys map[string]bool) bool {
	switch d.Kind {
	case history.Delete:
		return keys[d.Key]
	case history.Put:
		return keys[d.Key] && !d.Cond.IsZero()
	case history.Batch:
		for _, b := range d.Ops {
			if keys[b.Key] && !b.Cond.IsZero() {
				return true
			}
		}
	case history.DeletePrefix, history.List:
		for k := range keys {
			if strings.HasPrefix(k, d.Prefix) {
				return true
			}
		}
	}
	return false
}

// Checked reports whether Operations keeps o.
func Checked(o *history.Op) bool {
	switch {
	case (o.Kind == history.Get || o.Kind == history.List) && o.Consistency == history.Stale:
		return false
	case !o.IsWrite() && o.Outcome != history.OK:
		return false
	case o.Outcome == history.Fail:
		return o.Code == 412 || (o.Code == 404 && o.Kind == history.Delete)
	}
	return true
}

// Partition splits a history into sets of Ops over connected keys.
func Partition(ops []porcupine.Operation) [][]porcupine.Operation {
	var uf unionFind
	keyNode := map[string]int{}
	node := func(key string) int {
		if n, ok := keyNode[key]; ok {
			return n
		}
		n := uf.add()
		keyNode[key] = n
		return n
	}
	opNode := make([]int, len(ops))
	for i := range ops {
		o := ops[i].Input.(*history.Op)
		opNode[i] = uf.add()
		for _, k := range o.Keys() {
			uf.union(opNode[i], node(k))
		}
		if o.Kind == history.List {
			for _, it := range o.Items {
				uf.union(opNode[i], node(it.Key))
			}
		}
	}
	// A prefix Op covers every key under its prefix.
	for i := range ops {
		o := ops[i].Input.(*history.Op)
		if o.Kind != history.DeletePrefix && o.Kind != history.List {
			continue
		}
		for k, n := range keyNode {
			if strings.HasPrefix(k, o.Prefix) {
				uf.union(opNode[i], n)
			}
		}
	}
	byRoot := map[int]int{}
	var parts [][]porcupine.Operation
	for i := range ops {
		r := uf.find(opNode[i])
		p, ok := byRoot[r]
		if !ok {
			p = len(parts)
			byRoot[r] = p
			parts = append(parts, nil)
		}
		parts[p] = append(parts[p], ops[i])
	}
	return parts
}

type unionFind struct{ parent []int }

func (u *unionFind) add() int {
	u.parent = append(u.parent, len(u.parent))
	return len(u.parent) - 1
}

func (u *unionFind) find(x int) int {
	for u.parent[x] != x {
		u.parent[x] = u.parent[u.parent[x]]
		x = u.parent[x]
	}
	return x
}

func (u *unionFind) union(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u.parent[ra] = rb
	}
}
