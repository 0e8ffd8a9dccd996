package node

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/ops"
)

// The largest values the batching flags accept must build a batcher and
// its waiter table (two waiters per pending proposal), and a batch may
// never be bounded above the pending bytes it is cut from.
func TestBatchingFlagLimitsFitTheBatcher(t *testing.T) {
	cfg, _, err := config.Parse([]string{
		"--max-batch-bytes", "64MiB", "--max-batch-delay", "1s", "--max-pending", "524288",
	}, nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	bcfg := batchConfig(cfg)
	b, err := batch.New(bcfg)
	if err != nil {
		t.Fatalf("batch.New at the flag limits: %v", err)
	}
	defer b.Close()
	if _, err := batch.NewRegistry[outcome](2*b.Config().MaxPending, 1); err != nil {
		t.Fatalf("registry at --max-pending %d: %v", config.MaxPendingLimit, err)
	}
	if config.MaxBatchBytesLimit > batch.DefaultMaxPendingBytes {
		t.Fatalf("--max-batch-bytes may reach %d, over the %d pending bytes a batch is cut from", config.MaxBatchBytesLimit, batch.DefaultMaxPendingBytes)
	}
}

func TestBatchConfigFromFlags(t *testing.T) {
	cfg, _, err := config.Parse([]string{"--max-batch-bytes", "64KiB", "--max-batch-delay", "0", "--max-pending", "7"}, nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := batch.New(batchConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := b.Config()
	if got.MaxBatchBytes != 64<<10 || got.MaxPending != 7 || got.MaxPendingBytes != batch.DefaultMaxPendingBytes {
		t.Fatalf("batcher config %+v", got)
	}
	// 0 means never hold, not "the default 2ms".
	if got.MaxBatchDelay != time.Nanosecond {
		t.Fatalf("--max-batch-delay 0 became a hold of %v", got.MaxBatchDelay)
	}
	cfg.MaxBatchDelay = 3 * time.Millisecond
	if d := batchConfig(cfg).MaxBatchDelay; d != 3*time.Millisecond {
		t.Fatalf("--max-batch-delay 3ms became %v", d)
	}
}

// The node hands its ops.Metrics to the batcher as its Observer: after a
// write, the batch histograms hold a sample.
func TestBatcherReportsToOpsMetrics(t *testing.T) {
	m := ops.NewMetrics()
	st := NewMemStore()
	n, err := New(Config{
		ID: 1, Name: "n1", Members: map[raftmsg.NodeID]string{1: "n1"},
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, RequestTimeout: 3 * time.Second,
		BootEpoch: 1, Store: st, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Start(NewMemNetwork().Join(1, n))
	defer n.Close()
	waitFor(t, "leadership", n.IsLeader)
	put(t, n, "k", "v")
	waitFor(t, "a committed batch in the metrics", func() bool {
		var buf bytes.Buffer
		m.WritePrometheus(&buf)
		return strings.Contains(buf.String(), "\nedgekv_batch_size_entries_count ") &&
			!strings.Contains(buf.String(), "\nedgekv_batch_size_entries_count 0\n") &&
			!strings.Contains(buf.String(), "\nedgekv_batch_commit_seconds_count 0\n")
	})
}

// Linearizable reads are bounded like writes: with the leader unable to
// confirm its leadership (its heartbeats are cut), MaxPending reads wait
// and every further one gets 503 with Retry-After at once; once the links
// heal, reads are served again without anything being reset.
func TestLinearizableReadsAreBounded(t *testing.T) {
	const maxPending = 4
	c := newClusterWith(t, 3, 2*time.Second, 150) // elections 1.5-3s: none during the test
	c.batch = batch.Config{MaxPending: maxPending}
	for id := range c.members {
		c.stop(id)
		c.start(id)
	}
	lead := c.leader()
	put(t, lead, "k", "v")
	for id := range c.members {
		if id != lead.ID() {
			c.net.Cut(lead.ID(), id, true)
		}
	}
	const readers = 16
	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make(chan result, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := lead.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Linearizable})
			results <- result{err, time.Since(start)}
		}()
	}
	refused := 0
	for refused < readers-maxPending {
		r := <-results
		var e *httpapi.Error
		if !errors.As(r.err, &e) || e.Kind != httpapi.KindUnavailable || !strings.Contains(e.Message, "too many reads pending") {
			t.Fatalf("read beyond the bound: %v, want 503 too many reads pending", r.err)
		}
		if e.RetryAfter <= 0 {
			t.Fatalf("503 without Retry-After: %+v", e)
		}
		if r.elapsed > time.Second {
			t.Fatalf("refusal took %v: not at once", r.elapsed)
		}
		refused++
	}
	for id := range c.members {
		c.net.Cut(lead.ID(), id, false)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil && kindOf(r.err) != httpapi.KindUnavailable {
			t.Fatalf("pending read: %v", r.err)
		}
	}
	waitFor(t, "linearizable reads served again", func() bool {
		_, err := lead.Backend().Get(ctx, httpapi.GetRequest{Key: []byte("k"), Consistency: httpapi.Linearizable})
		return err == nil
	})
}
