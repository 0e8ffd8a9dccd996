package node

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/storage"
)

// cluster is an in-process cluster over MemNetwork and MemStores.
type cluster struct {
	t       testing.TB
	net     *MemNetwork
	members map[raftmsg.NodeID]string
	nodes   map[raftmsg.NodeID]*Node
	stores  map[raftmsg.NodeID]*MemStore
	boots   map[raftmsg.NodeID]uint16
	timeout time.Duration
	batch   batch.Config // for members started from now on
	// electionTicks of members started from now on (ticks are 10 ms).
	electionTicks int
	// frozen members get no ticks, as if their process were paused;
	// stopTicks ends a running member's tick feeder.
	frozen    map[raftmsg.NodeID]*atomic.Bool
	stopTicks map[raftmsg.NodeID]func()
}

func newCluster(t testing.TB, size int) *cluster {
	t.Helper()
	return newClusterTimeout(t, size, 3*time.Second)
}

func newClusterTimeout(t testing.TB, size int, requestTimeout time.Duration) *cluster {
	t.Helper()
	// 30 ticks of 10 ms, 300-600 ms: no spurious elections on a loaded CI
	// machine.
	return newClusterWith(t, size, requestTimeout, 30)
}

func newClusterWith(t testing.TB, size int, requestTimeout time.Duration, electionTicks int) *cluster {
	t.Helper()
	c := &cluster{
		t: t, net: NewMemNetwork(),
		members:       map[raftmsg.NodeID]string{},
		nodes:         map[raftmsg.NodeID]*Node{},
		stores:        map[raftmsg.NodeID]*MemStore{},
		boots:         map[raftmsg.NodeID]uint16{},
		timeout:       requestTimeout,
		electionTicks: electionTicks,
		frozen:        map[raftmsg.NodeID]*atomic.Bool{},
		stopTicks:     map[raftmsg.NodeID]func(){},
	}
	for i := 1; i <= size; i++ {
		id := raftmsg.NodeID(i)
		c.members[id] = fmt.Sprintf("n%d", i)
		c.stores[id] = NewMemStore()
	}
	for id := range c.members {
		c.start(id)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

// start boots member id from what its store holds (a restart after stop).
func (c *cluster) start(id raftmsg.NodeID) *Node {
	c.t.Helper()
	c.boots[id]++
	n, err := New(Config{
		ID: id, Name: c.members[id], Members: c.members,
		TickInterval: 10 * time.Millisecond, ElectionTicks: c.electionTicks, Ticks: c.ticks(id),
		RequestTimeout: c.timeout, BootEpoch: c.boots[id], RandSeed: uint64(id),
		Store: c.stores[id], Recovered: c.stores[id].Recovered(),
		Batch: c.batch,
	})
	if err != nil {
		c.t.Fatalf("New(%d): %v", id, err)
	}
	n.Start(c.net.Join(id, n))
	c.nodes[id] = n
	return n
}

// ticks feeds member id a tick every 10 ms unless it is frozen; the feeding
// goroutine ends when stop(id) stops the member.
func (c *cluster) ticks(id raftmsg.NodeID) <-chan time.Time {
	if c.frozen[id] == nil {
		c.frozen[id] = new(atomic.Bool)
	}
	frozen := c.frozen[id]
	out := make(chan time.Time)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		ticker := time.NewTicker(10 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case now := <-ticker.C:
				if frozen.Load() {
					continue
				}
				select {
				case out <- now:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	c.stopTicks[id] = func() { close(done); <-stopped }
	return out
}

func (c *cluster) stop(id raftmsg.NodeID) {
	c.t.Helper()
	c.net.Isolate(id, true)
	if err := c.nodes[id].Close(); err != nil {
		c.t.Errorf("Close(%d): %v", id, err)
	}
	c.stopTicks[id]()
	delete(c.nodes, id)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// leader waits until one running member leads and every running member
// knows it, and returns it.
func (c *cluster) leader() *Node {
	c.t.Helper()
	var lead *Node
	waitFor(c.t, "a leader known to every member", func() bool {
		lead = nil
		for _, n := range c.nodes {
			if n.IsLeader() {
				lead = n
			}
		}
		if lead == nil {
			return false
		}
		for _, n := range c.nodes {
			if n.Leader() != lead.ID() {
				return false
			}
		}
		return true
	})
	return lead
}

func (c *cluster) follower() *Node {
	lead := c.leader()
	for _, n := range c.nodes {
		if n != lead {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

var ctx = context.Background()

func put(t testing.TB, n *Node, key, value string) uint64 {
	t.Helper()
	r, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		t.Fatalf("put %q on %s: %v", key, n.cfg.Name, err)
	}
	return r.Revision
}

func kindOf(err error) httpapi.ErrorKind {
	var e *httpapi.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return httpapi.KindInternal
}

// readEverywhere checks that every running member returns value at rev for
// key, with a linearizable read and, once applied, a stale one.
func (c *cluster) readEverywhere(key, value string, rev uint64) {
	c.t.Helper()
	for _, n := range c.nodes {
		g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(key), Consistency: httpapi.Linearizable})
		if err != nil || string(g.Value) != value || g.KeyRevision != rev {
			c.t.Fatalf("linearizable get %q on %s = %q rev %d, %v; want %q rev %d", key, n.cfg.Name, g.Value, g.KeyRevision, err, value, rev)
		}
		g, err = n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(key), Consistency: httpapi.Stale})
		if err != nil || string(g.Value) != value {
			c.t.Fatalf("stale get %q on %s after a linearizable one = %q, %v", key, n.cfg.Name, g.Value, err)
		}
	}
}

func TestClusterWritesOnLeaderAndFollowerReadEverywhere(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	r1 := put(t, lead, "a", "1")
	c.readEverywhere("a", "1", r1)
	f := c.follower()
	r2 := put(t, f, "b", "2")
	if r2 <= r1 {
		t.Fatalf("revision through the follower %d not after %d", r2, r1)
	}
	c.readEverywhere("b", "2", r2)
	// The follower's answer carries the leader's name.
	if m := f.Backend().Meta(); !m.Follower || m.Leader != lead.cfg.Name {
		t.Fatalf("follower meta %+v, want leader %q", m, lead.cfg.Name)
	}
	if m := lead.Backend().Meta(); m.Follower {
		t.Fatalf("leader meta says follower: %+v", m)
	}
	// Delete through a follower, then 404 on every member.
	if _, err := f.Backend().Delete(ctx, httpapi.DeleteRequest{Key: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if _, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("a")}); kindOf(err) != httpapi.KindNotFound {
			t.Fatalf("get of deleted key on %s: %v", n.cfg.Name, err)
		}
	}
	if _, err := f.Backend().Delete(ctx, httpapi.DeleteRequest{Key: []byte("a")}); kindOf(err) != httpapi.KindNotFound {
		t.Fatalf("delete of absent key: %v, want not found", err)
	}
	// The follower's batches went to the leader: counted as forwarded, not
	// as failed (edgekv_batch_finished_total on a follower).
	if st := f.batcher.Stats(); st.Forwarded != 3 || st.Failed != 0 || st.Committed != 0 {
		t.Fatalf("follower batches %+v: want 3 forwarded, none failed or committed", st)
	}
}

func TestClusterCompareAndSwap(t *testing.T) {
	c := newCluster(t, 3)
	for _, n := range []*Node{c.leader(), c.follower()} {
		key := []byte("cas-" + n.cfg.Name)
		r, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: []byte("v1"), IfAbsent: true})
		if err != nil {
			t.Fatalf("%s: if-absent put: %v", n.cfg.Name, err)
		}
		if _, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: []byte("x"), IfAbsent: true}); kindOf(err) != httpapi.KindPreconditionFailed {
			t.Fatalf("%s: second if-absent put: %v, want 412", n.cfg.Name, err)
		}
		r2, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: []byte("v2"), IfMatch: r.Revision})
		if err != nil {
			t.Fatalf("%s: if-match put: %v", n.cfg.Name, err)
		}
		if _, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: []byte("v3"), IfMatch: r.Revision}); kindOf(err) != httpapi.KindPreconditionFailed {
			t.Fatalf("%s: stale if-match put: %v, want 412", n.cfg.Name, err)
		}
		if _, err := n.Backend().Delete(ctx, httpapi.DeleteRequest{Key: key, IfMatch: r.Revision}); kindOf(err) != httpapi.KindPreconditionFailed {
			t.Fatalf("%s: stale if-match delete: %v, want 412", n.cfg.Name, err)
		}
		c.readEverywhere(string(key), "v2", r2.Revision)
	}
}

func TestClusterBatchIsAtomic(t *testing.T) {
	c := newCluster(t, 3)
	f := c.follower()
	rx := put(t, f, "x", "old")
	// One failing condition: nothing applies, the failing index is named.
	_, err := f.Backend().Batch(ctx, httpapi.BatchRequest{Ops: []httpapi.BatchOp{
		{Kind: httpapi.OpPut, Key: []byte("y"), Value: []byte("new")},
		{Kind: httpapi.OpPut, Key: []byte("x"), Value: []byte("new"), IfMatch: rx + 100},
		{Kind: httpapi.OpDelete, Key: []byte("z")},
	}})
	var e *httpapi.Error
	if !errors.As(err, &e) || e.Kind != httpapi.KindPreconditionFailed || len(e.Failed) != 1 || e.Failed[0] != 1 {
		t.Fatalf("batch with a failed condition: %v, want 412 failed [1]", err)
	}
	if _, err := c.leader().Backend().Get(ctx, httpapi.GetRequest{Key: []byte("y")}); kindOf(err) != httpapi.KindNotFound {
		t.Fatalf("y written by a failed batch: %v", err)
	}
	r, err := f.Backend().Batch(ctx, httpapi.BatchRequest{Ops: []httpapi.BatchOp{
		{Kind: httpapi.OpPut, Key: []byte("y"), Value: []byte("new")},
		{Kind: httpapi.OpPut, Key: []byte("x"), Value: []byte("new"), IfMatch: rx},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Both keys at the batch's one revision, on every member.
	c.readEverywhere("x", "new", r.Revision)
	c.readEverywhere("y", "new", r.Revision)
	// Delete by prefix and a paginated list.
	for i := 0; i < 5; i++ {
		put(t, f, fmt.Sprintf("p/%d", i), "v")
	}
	l, err := f.Backend().List(ctx, httpapi.ListRequest{Prefix: []byte("p/"), Limit: 3})
	if err != nil || len(l.Items) != 3 || !l.More || string(l.Items[0].Key) != "p/0" {
		t.Fatalf("list page 1: %+v, %v", l, err)
	}
	l, err = f.Backend().List(ctx, httpapi.ListRequest{Prefix: []byte("p/"), After: l.Items[2].Key, Limit: 3})
	if err != nil || len(l.Items) != 2 || l.More || string(l.Items[1].Key) != "p/4" {
		t.Fatalf("list page 2: %+v, %v", l, err)
	}
	d, err := f.Backend().DeletePrefix(ctx, httpapi.DeletePrefixRequest{Prefix: []byte("p/")})
	if err != nil || d.Deleted != 5 {
		t.Fatalf("delete prefix: %+v, %v", d, err)
	}
	l, err = c.leader().Backend().List(ctx, httpapi.ListRequest{Prefix: []byte("p/"), Limit: 10})
	if err != nil || len(l.Items) != 0 {
		t.Fatalf("list after delete prefix: %+v, %v", l, err)
	}
}

func TestClusterIdempotentRetry(t *testing.T) {
	c := newCluster(t, 3)
	f := c.follower()
	idem := httpapi.Idempotency{Key: []byte("req-1"), Fingerprint: httpapi.Fingerprint{1}}
	req := httpapi.PutRequest{Key: []byte("k"), Value: []byte("v"), Idempotency: idem}
	first, err := f.Backend().Put(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The retry, through another member, returns the first revision and
	// applies nothing (the store revision does not move).
	again, err := c.leader().Backend().Put(ctx, req)
	if err != nil || again.Revision != first.Revision {
		t.Fatalf("retry: revision %d, %v; want %d", again.Revision, err, first.Revision)
	}
	if rev := c.leader().View().Revision(); rev != first.Revision {
		t.Fatalf("store revision %d after the retry, want %d", rev, first.Revision)
	}
	other := req
	other.Idempotency.Fingerprint = httpapi.Fingerprint{2}
	if _, err := f.Backend().Put(ctx, other); kindOf(err) != httpapi.KindIdempotencyConflict {
		t.Fatalf("same key, other request: %v, want 409", err)
	}
}

func TestClusterLeaderFailure(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader()
	r := put(t, old, "before", "1")
	c.readEverywhere("before", "1", r)
	c.stop(old.ID())
	lead := c.leader()
	if lead.ID() == old.ID() {
		t.Fatal("stopped member still leads")
	}
	r2 := put(t, lead, "after", "2")
	r3 := put(t, c.follower(), "after-f", "3")
	// The old leader restarts from its store and catches up.
	c.start(old.ID())
	c.leader()
	c.readEverywhere("before", "1", r)
	c.readEverywhere("after", "2", r2)
	c.readEverywhere("after-f", "3", r3)
}

func TestWriteWithoutQuorumTimesOutOrIsRefused(t *testing.T) {
	c := newClusterTimeout(t, 3, 300*time.Millisecond)
	lead := c.leader()
	for id := range c.nodes {
		if id != lead.ID() {
			c.net.Isolate(id, true)
		}
	}
	// Appended on the leader but never committed: 504. Once the leader
	// notices it has lost its quorum it refuses new writes: 503.
	_, err := lead.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if k := kindOf(err); k != httpapi.KindTimeout && k != httpapi.KindUnavailable {
		t.Fatalf("write without quorum: %v, want 504 or 503", err)
	}
	waitFor(t, "the isolated leader to refuse writes with 503", func() bool {
		_, err := lead.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("k2"), Value: []byte("v")})
		return kindOf(err) == httpapi.KindUnavailable
	})
	// A linearizable read there is refused too, never served stale.
	if _, err := lead.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k")}); kindOf(err) != httpapi.KindUnavailable {
		t.Fatalf("linearizable read without quorum: %v, want 503", err)
	}
}

func TestSingleNodeRestartKeepsData(t *testing.T) {
	c := newCluster(t, 1)
	n := c.leader()
	var revs []uint64
	for i := 0; i < 20; i++ {
		revs = append(revs, put(t, n, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)))
	}
	c.stop(n.ID())
	n = c.start(n.ID())
	c.leader()
	for i := 0; i < 20; i++ {
		g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(fmt.Sprintf("k%02d", i))})
		if err != nil || string(g.Value) != fmt.Sprintf("v%d", i) || g.KeyRevision != revs[i] {
			t.Fatalf("after restart k%02d = %q rev %d, %v", i, g.Value, g.KeyRevision, err)
		}
	}
	if r := put(t, n, "new", "x"); r != revs[19]+1 {
		t.Fatalf("first write after restart at revision %d, want %d", r, revs[19]+1)
	}
}

func TestConcurrentWritesAreGroupCommitted(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	const writers, each = 16, 20
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				if _, err := lead.Backend().Put(ctx, httpapi.PutRequest{Key: []byte(fmt.Sprintf("w%d/%d", w, i)), Value: []byte("v")}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := lead.View().Len(); got != writers*each {
		t.Fatalf("%d keys, want %d", got, writers*each)
	}
	if saves := c.stores[lead.ID()].Saves(); saves >= writers*each {
		t.Fatalf("%d saves for %d writes: no group commit", saves, writers*each)
	}
}

func TestStoreFailureStopsTheMember(t *testing.T) {
	c := newClusterTimeout(t, 1, 200*time.Millisecond)
	n := c.leader()
	put(t, n, "a", "1")
	c.stores[n.ID()].FailSaves()
	_, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("b"), Value: []byte("2")})
	if err == nil {
		t.Fatal("write acknowledged although the store failed")
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("member still running after a failed save")
	}
	if !errors.Is(n.Err(), ErrStoreFailed) {
		t.Fatalf("Err() = %v, want the store failure", n.Err())
	}
	delete(c.nodes, n.ID())
	if err := n.Close(); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("Close() = %v", err)
	}
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		c := newCluster(t, 3)
		f := c.follower()
		put(t, f, "a", "1")
		for id := range c.nodes {
			c.stop(id)
		}
		// Calls after Close are refused at once, never hang.
		if _, err := f.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("b"), Value: []byte("2")}); kindOf(err) != httpapi.KindUnavailable {
			t.Fatalf("put after Close: %v, want 503", err)
		}
		if _, err := f.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("a")}); kindOf(err) != httpapi.KindUnavailable {
			t.Fatalf("linearizable get after Close: %v, want 503", err)
		}
	}()
	waitFor(t, "goroutines to stop", func() bool { return runtime.NumGoroutine() <= before })
}

func TestMergeGroupTruncates(t *testing.T) {
	n := &Node{}
	e := func(index, term uint64) raftmsg.Entry { return raftmsg.Entry{Index: index, Term: term} }
	group := []persistJob{
		{seq: 1, hs: raftmsg.HardState{Term: 1}, ents: []raftmsg.Entry{e(1, 1), e(2, 1), e(3, 1)}},
		{seq: 2},
		{seq: 3, hs: raftmsg.HardState{Term: 2}, ents: []raftmsg.Entry{e(2, 2), e(3, 2)}},
		{seq: 4, ents: []raftmsg.Entry{e(4, 2)}},
	}
	hs, ents := n.mergeGroup(group)
	if hs.Term != 2 {
		t.Fatalf("hard state %+v, want the last one", hs)
	}
	want := []raftmsg.Entry{e(1, 1), e(2, 2), e(3, 2), e(4, 2)}
	if fmt.Sprint(ents) != fmt.Sprint(want) {
		t.Fatalf("merged %v, want %v", ents, want)
	}
	// A later Ready replacing everything.
	hs, ents = n.mergeGroup([]persistJob{{ents: []raftmsg.Entry{e(5, 1)}}, {ents: []raftmsg.Entry{e(3, 3)}}})
	if len(ents) != 1 || ents[0].Index != 3 || ents[0].Term != 3 || !hs.IsEmpty() {
		t.Fatalf("merged %v %+v", ents, hs)
	}
}

// TestFollowerWritesWithoutOriginOnTheWire runs the follower paths over a
// network that loses Entry.Origin (the wire codec before it carries the
// field): request ids alone must route answers to the right member.
func TestFollowerWritesWithoutOriginOnTheWire(t *testing.T) {
	c := newCluster(t, 3)
	c.net.DropOrigin()
	lead := c.leader()
	// Every member proposes at once: ids of different members must never
	// complete each other's waiters.
	errs := make(chan error, 3*10)
	for _, n := range c.nodes {
		for i := 0; i < 10; i++ {
			go func() {
				key := fmt.Sprintf("%s/%d", n.cfg.Name, i)
				r, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte(key), Value: []byte(key)})
				if err == nil {
					g, gerr := lead.Backend().Get(ctx, httpapi.GetRequest{Key: []byte(key)})
					if gerr != nil || g.KeyRevision != r.Revision || string(g.Value) != key {
						err = fmt.Errorf("%s answered revision %d, the key has %d (%v)", key, r.Revision, g.KeyRevision, gerr)
					}
				}
				errs <- err
			}()
		}
	}
	for i := 0; i < 3*10; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRequestIDsDifferAcrossMembers(t *testing.T) {
	voters := []raftmsg.NodeID{3, 9, 27}
	seen := map[uint16]bool{}
	for _, v := range voters {
		for boot := uint16(1); boot < 3; boot++ {
			e := idEpoch(voters, v, boot)
			if seen[e] {
				t.Fatalf("epoch %#x repeated (member %d boot %d)", e, v, boot)
			}
			seen[e] = true
		}
	}
}

// TestFullDiskRefusesWritesUntilSpaceReturns: a save failing with
// storage.ErrNoSpace (nothing written) turns new writes into 507 at once;
// the log write is retried, and writes resume when space returns.
func TestFullDiskRefusesWritesUntilSpaceReturns(t *testing.T) {
	c := newClusterTimeout(t, 1, 500*time.Millisecond)
	n := c.leader()
	put(t, n, "a", "1")
	store := c.stores[n.ID()]
	store.FailWith(fmt.Errorf("disk: %w", storage.ErrNoSpace))
	pending := make(chan error, 1)
	go func() {
		_, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("pending"), Value: []byte("v")})
		pending <- err
	}()
	waitFor(t, "writes refused with 507", func() bool {
		_, err := n.Backend().Delete(ctx, httpapi.DeleteRequest{Key: []byte("a")})
		return kindOf(err) == httpapi.KindQuotaExceeded
	})
	// Reads still work from the applied state.
	if g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("a"), Consistency: httpapi.Stale}); err != nil || string(g.Value) != "1" {
		t.Fatalf("stale read while the disk is full: %q, %v", g.Value, err)
	}
	store.FailWith(nil)
	// The first write was refused at once (the failure was already seen:
	// 507), or appended and answered after the retry (200) or after its
	// timeout (504, unknown).
	if err := <-pending; err != nil && kindOf(err) != httpapi.KindQuotaExceeded && kindOf(err) != httpapi.KindTimeout {
		t.Fatalf("write issued while the disk was full: %v, want 200, 507 or 504", err)
	} else if err == nil {
		if _, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("pending")}); err != nil {
			t.Fatalf("acknowledged write not readable: %v", err)
		}
	}
	waitFor(t, "writes accepted again", func() bool {
		_, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("b"), Value: []byte("2")})
		return err == nil
	})
	if n.Err() != nil {
		t.Fatalf("member stopped: %v", n.Err())
	}
}

// TestFullQueueGives429: with the store stalled, the batcher's in-flight
// window fills, then its bounded queue; further writes are refused at once
// with 429 (nothing proposed) and the others complete once the store moves.
func TestFullQueueGives429(t *testing.T) {
	c := newCluster(t, 1)
	n := c.leader()
	c.stop(n.ID())
	c.batch = batch.Config{MaxPending: 4, MaxInflightBatches: 1}
	n = c.start(n.ID())
	c.leader()
	store := c.stores[n.ID()]
	store.Block()
	const writers = 32
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		go func() {
			_, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v")})
			errs <- err
		}()
	}
	overloaded := 0
	waitFor(t, "refusals with 429", func() bool {
		for {
			select {
			case err := <-errs:
				if kindOf(err) != httpapi.KindOverloaded {
					t.Fatalf("write while the store is stalled: %v, want 429 or a wait", err)
				}
				overloaded++
				continue
			default:
			}
			return overloaded > 0
		}
	})
	store.Unblock()
	for i := overloaded; i < writers; i++ {
		if err := <-errs; err != nil && kindOf(err) != httpapi.KindOverloaded {
			t.Fatalf("write after the store resumed: %v", err)
		}
	}
}

// TestCommitOnlyHardStateIsNotSynced: the commit index is volatile state
// (paper Figure 2), so a write costs each member one save (its entries),
// not a second one for the hard state that only moves the commit index.
func TestCommitOnlyHardStateIsNotSynced(t *testing.T) {
	c := newCluster(t, 3)
	lead := c.leader()
	put(t, lead, "warm", "up")
	before := map[raftmsg.NodeID]int{}
	for id, s := range c.stores {
		before[id] = s.Saves()
	}
	const writes = 40
	var rev uint64
	for i := 0; i < writes; i++ {
		rev = put(t, lead, fmt.Sprintf("k%d", i), "v")
	}
	c.readEverywhere("k39", "v", rev)
	for id, s := range c.stores {
		// One save per write, plus slack for an election or a write
		// split across two appends on a slow machine.
		if got := s.Saves() - before[id]; got > writes+writes/4 {
			t.Errorf("member %d: %d saves for %d sequential writes, want about one each", id, got, writes)
		}
	}
	// Restarting from a log whose hard state lags the commit index keeps
	// every acknowledged write.
	c.stop(lead.ID())
	n := c.start(lead.ID())
	waitFor(t, "the restarted member applied every write", func() bool {
		g, err := n.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k39"), Consistency: httpapi.Stale})
		return err == nil && string(g.Value) == "v"
	})
}

// TestNoOpWriteKeepsItsRevisionZero: a write applied to an empty store
// that changes nothing is answered with revision 0, the revision it was
// applied at, even when the store has moved on by the time the answer is
// built (a later revision would order it after writes it preceded).
func TestNoOpWriteKeepsItsRevisionZero(t *testing.T) {
	c := newCluster(t, 1)
	n := c.leader()
	put(t, n, "later", "v")
	if got := n.writeMeta(0, nil).Revision; got != 0 {
		t.Fatalf("a no-op applied at revision 0 answered revision %d", got)
	}
	if got := n.writeMeta(0, unavailable("test")).Revision; got == 0 {
		t.Fatalf("a refused write answered revision 0, want the view's")
	}
}
