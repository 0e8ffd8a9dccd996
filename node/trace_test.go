package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/ebpf"
	"github.com/edgekv/edgekv/ebpf/stage"
	"github.com/edgekv/edgekv/httpapi"
)

// attachTracer attaches an eBPF tracer to this process, or skips with the
// reason where the host cannot trace, unless REQUIRE_EBPF_TESTS=1 (CI as
// root), where that fails.
func attachTracer(t testing.TB, opts ebpf.Options) *ebpf.Tracer {
	t.Helper()
	tr, err := ebpf.Attach(opts)
	if err != nil {
		if errors.Is(err, ebpf.ErrUnavailable) && os.Getenv("REQUIRE_EBPF_TESTS") != "1" {
			t.Skipf("eBPF tracing not possible here (set REQUIRE_EBPF_TESTS=1 to fail instead): %v", err)
		}
		t.Fatalf("ebpf.Attach: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("closing the tracer: %v", err)
		}
	})
	return tr
}

func traceSnapshot(t testing.TB, tr *ebpf.Tracer) *ebpf.Snapshot {
	t.Helper()
	s := new(ebpf.Snapshot)
	if err := tr.Snapshot(s); err != nil {
		t.Fatalf("tracer snapshot: %v", err)
	}
	return s
}

// writeConcurrently puts writers*each keys on n and fails on any error.
func writeConcurrently(t testing.TB, n *Node, prefix string, writers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				key := []byte(fmt.Sprintf("%s%d/%d", prefix, w, i))
				if _, err := n.Backend().Put(ctx, httpapi.PutRequest{Key: key, Value: []byte("v")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkStagesPerBatch waits until the leader's batches since before have
// all been marked Answered, then checks that every stage was marked once
// per batch, in order (consecutive stage pairs, nothing unpaired).
func checkStagesPerBatch(t *testing.T, tr *ebpf.Tracer, before *ebpf.Snapshot, batches uint64) {
	t.Helper()
	var d ebpf.Snapshot
	// The applier marks Answered just after handing the last result back,
	// so the last client can return a moment before its batch is marked.
	waitFor(t, "every batch marked answered", func() bool {
		d = traceSnapshot(t, tr).Sub(before)
		return d.StageHits[stage.StageAnswered] >= batches
	})
	for s := range stage.NumStages {
		if got := d.StageHits[s]; got != batches {
			t.Errorf("stage %v hit %d times for %d batches", stage.Stage(s), got, batches)
		}
	}
	for s := 0; s+1 < stage.NumStages; s++ {
		if got := d.Stages[s][s+1].Count(); got != batches {
			t.Errorf("%v -> %v paired %d times for %d batches", stage.Stage(s), stage.Stage(s+1), got, batches)
		}
	}
	if got := d.Batch.Count(); got != batches {
		t.Errorf("received -> answered: %d of %d batches", got, batches)
	}
	for reason, n := range d.Unpaired {
		if n != 0 {
			t.Errorf("%d marker hits unpaired (reason %d): stages marked out of order or without Received", n, reason)
		}
	}
	if t.Failed() {
		var text strings.Builder
		d.WriteText(&text)
		t.Logf("trace:\n%s", text.String())
	}
}

// TestStageMarkersPairPerBatch runs writes on in-process clusters with the
// eBPF stage probes attached: the leader marks each of its batches once per
// stage, in order, so the tracer pairs every stage of every batch.
func TestStageMarkersPairPerBatch(t *testing.T) {
	tr := attachTracer(t, ebpf.Options{StagesOnly: true})
	for _, size := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", size), func(t *testing.T) {
			c := newCluster(t, size)
			lead := c.leader()
			before := traceSnapshot(t, tr)
			batchesBefore := totalBatches(lead)
			writeConcurrently(t, lead, "k", 8, 40)
			batches := totalBatches(lead) - batchesBefore
			if batches == 0 || batches > 8*40 {
				t.Fatalf("%d batches for %d writes", batches, 8*40)
			}
			checkStagesPerBatch(t, tr, before, batches)
		})
	}
}

// TestCommittedWaitsForTheLeadersFsync: with the leader's disk stalled its
// followers commit a write alone (thesis §10.2.1); the leader still marks
// Persisted before Committed, so the tracer sees the stages in order.
func TestCommittedWaitsForTheLeadersFsync(t *testing.T) {
	tr := attachTracer(t, ebpf.Options{StagesOnly: true})
	c := newCluster(t, 3)
	lead := c.leader()
	put(t, lead, "warm", "up")
	st, ok := lead.Status(time.Second)
	if !ok {
		t.Fatal("no status from the leader")
	}
	// The client is answered before the applier marks Answered for the
	// batch (same loop turn, before it publishes the applied index): wait
	// for the publication so the warm-up's marks are all in "before".
	waitFor(t, "the warm-up write's marks", func() bool { return lead.appliedIndex.Load() >= st.LastIndex })
	before := traceSnapshot(t, tr)
	batchesBefore := totalBatches(lead)
	target := st.LastIndex + 1 // the next write's entry

	store := c.stores[lead.ID()]
	store.Block()
	done := make(chan error, 1)
	go func() {
		_, err := lead.Backend().Put(ctx, httpapi.PutRequest{Key: []byte("k"), Value: []byte("v")})
		done <- err
	}()
	waitFor(t, "the followers to commit the write without the leader's fsync", func() bool {
		return lead.commit.Load() >= target
	})
	// A round trip through the raft loop: the Ready that moved the commit
	// index, and any Committed mark it made, are done.
	if _, ok := lead.Status(time.Second); !ok {
		t.Fatal("no status from the leader")
	}
	store.Unblock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	batches := totalBatches(lead) - batchesBefore
	checkStagesPerBatch(t, tr, before, batches)
}

func totalBatches(n *Node) uint64 {
	st := n.batcher.Stats()
	return st.TotalBatches()
}
