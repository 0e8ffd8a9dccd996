package main_test

// Benchmarks of the whole write path of an in-process 3-member cluster
// (batcher, raft loop, persister, applier, waiters) over node.MemNetwork
// and node.MemStore: the runtime's own cost, without disks or sockets.
//
//	go test -run '^$' -bench . -benchmem -count 5 .
//
// BenchmarkPut/fsync=F/batching=M/proposers=P runs the same load with
// the adaptive batcher (M=adaptive: the defaults of --max-batch-bytes and
// --max-batch-delay) and with batching off (fixed1: every proposal its
// own batch; fixed1-wide: the same with an in-flight window that never
// binds), so the ratio of their ops/s is the batcher's gain at P
// concurrent proposers. F is the simulated latency of each log Save (fsync) on
// every member. Each reports ops/s, entries/batch (the mean batch size on
// the leader) and, with -benchmem, allocs/op of the whole cluster. Every
// run starts a fresh cluster and warms it with 64 puts a proposer: these members
// take no snapshots (SnapshotEntries 0), so the log stays whole in
// memory, and a log of millions of entries would measure that instead.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/node"
)

// benchCluster is three members over a MemNetwork.
type benchCluster struct {
	nodes []*node.Node
}

// slowStore is a MemStore whose every Save takes at least fsync, as a
// disk's fsync would (the runtime makes one Save per group of Readys).
type slowStore struct {
	*node.MemStore
	fsync time.Duration
}

func (s slowStore) Save(hs raftmsg.HardState, ents []raftmsg.Entry) error {
	if s.fsync > 0 {
		time.Sleep(s.fsync) // the simulated device's latency, not a wait for a condition
	}
	return s.MemStore.Save(hs, ents)
}

func startBenchCluster(b *testing.B, bcfg batch.Config, fsync time.Duration) *benchCluster {
	b.Helper()
	members := map[raftmsg.NodeID]string{1: "n1", 2: "n2", 3: "n3"}
	network := node.NewMemNetwork()
	c := &benchCluster{}
	for id := raftmsg.NodeID(1); id <= 3; id++ {
		n, err := node.New(node.Config{
			ID: id, Name: members[id], Members: members,
			// 1-2s election timeout: a starved goroutine on a loaded machine
			// must not cost the leadership in the middle of a measurement.
			TickInterval: 10 * time.Millisecond, ElectionTicks: 100,
			RequestTimeout: 10 * time.Second, BootEpoch: 1, RandSeed: uint64(id),
			Store: slowStore{node.NewMemStore(), fsync}, Batch: bcfg,
		})
		if err != nil {
			b.Fatal(err)
		}
		n.Start(network.Join(id, n))
		c.nodes = append(c.nodes, n)
	}
	b.Cleanup(func() {
		for _, n := range c.nodes {
			if err := n.Close(); err != nil {
				b.Error(err)
			}
		}
	})
	return c
}

// leader waits for a member that leads and is known by all as leader.
func (c *benchCluster) leader(b *testing.B) *node.Node {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ; time.Now().Before(deadline); <-tick.C {
		for _, n := range c.nodes {
			if !n.IsLeader() {
				continue
			}
			agreed := true
			for _, o := range c.nodes {
				agreed = agreed && o.Leader() == n.ID()
			}
			if agreed {
				return n
			}
		}
	}
	b.Fatal("no leader within 20s")
	return nil
}

var ctx = context.Background()

// batchModes are the batcher configurations compared.
var batchModes = []struct {
	name string
	cfg  batch.Config
}{
	{"adaptive", batch.Config{}},
	// MaxBatchBytes 1: every proposal is a batch of its own, none held,
	// everything else as configured by default (a window of 4 batches in
	// flight, so at most 4 proposals in flight).
	{"fixed1", batch.Config{MaxBatchBytes: 1}},
	// The same with the window widened so far that it never binds: every
	// proposal goes to Raft at once, and only the runtime's own group
	// commit (one Save per queue of Readys) groups them.
	{"fixed1-wide", batch.Config{MaxBatchBytes: 1, MaxInflightBatches: 1 << 14}},
}

// fsyncLatencies: 0 is the runtime's pure CPU cost; 1ms is a typical
// fsync of a cloud SSD, where the batcher's hold pays for itself.
var fsyncLatencies = []time.Duration{0, time.Millisecond}

func BenchmarkPut(b *testing.B) {
	value := make([]byte, 128)
	for _, fsync := range fsyncLatencies {
		for _, mode := range batchModes {
			for _, proposers := range []int{1, 16, 64, 256} {
				name := fmt.Sprintf("fsync=%v/batching=%s/proposers=%d", fsync, mode.name, proposers)
				b.Run(name, func(b *testing.B) {
					// A fresh cluster for every run: the in-memory log
					// (kept whole: no snapshots here) never carries over.
					c := startBenchCluster(b, mode.cfg, fsync)
					benchPuts(b, c.leader(b), proposers, value)
				})
			}
		}
	}
}

// warmupPutsPerProposer (at most maxWarmupPuts in all) are put before
// measuring, on a fresh cluster: the log, the store and the pools grow to
// their working size first, in well under a second at any fsync latency.
const (
	warmupPutsPerProposer = 64
	maxWarmupPuts         = 4096
)

// benchPuts runs b.N puts from proposers goroutines against the leader.
func benchPuts(b *testing.B, lead *node.Node, proposers int, value []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	be := lead.Backend()
	if err := runPuts(be, proposers, min(warmupPutsPerProposer*proposers, maxWarmupPuts), value); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	before := lead.BatchStats()
	statusBefore, _ := lead.Status(time.Second)
	b.ResetTimer()
	start := time.Now()
	err := runPuts(be, proposers, b.N, value)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		statusAfter, _ := lead.Status(time.Second)
		b.Fatalf("%v (term %d -> %d, still leader: %v)", err, statusBefore.Term, statusAfter.Term, lead.IsLeader())
	}
	after := lead.BatchStats()
	batches := after.TotalBatches() - before.TotalBatches()
	if batches > 0 {
		b.ReportMetric(float64(after.Entries-before.Entries)/float64(batches), "entries/batch")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// runPuts makes n puts from proposers goroutines, each over 256 keys of
// its own, and returns an error naming the failures.
func runPuts(be httpapi.Backend, proposers, n int, value []byte) error {
	var next atomic.Int64
	var failed atomic.Uint64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := make([]byte, 0, 32)
			for i := 0; next.Add(1) <= int64(n); i++ {
				key = fmt.Appendf(key[:0], "bench/%d/%d", w, i%256)
				if _, err := be.Put(ctx, httpapi.PutRequest{Key: key, Value: value}); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d puts failed, the first with: %v", f, n, *firstErr.Load())
	}
	return nil
}
