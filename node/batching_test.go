package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/edgekv/edgekv/batch"
	"github.com/edgekv/edgekv/config"
	"github.com/edgekv/edgekv/consensus/raftmsg"
	"github.com/edgekv/edgekv/httpapi"
	"github.com/edgekv/edgekv/ops"
)

// The largest values the batching flags accept must fit the batcher: its
// queue (a ring) and its waiter table (two waiters per pending proposal),
// and a batch may never be bounded above the pending bytes it is cut
// from. (Building a million-waiter table here would take minutes under
// the race detector; the constants are the constructors' own bounds.)
func TestBatchingFlagLimitsFitTheBatcher(t *testing.T) {
	if 2*config.MaxPendingLimit > batch.MaxRegistryCapacity {
		t.Fatalf("--max-pending may reach %d, but the registry holds %d waiters, not two per pending write", config.MaxPendingLimit, batch.MaxRegistryCapacity)
	}
	if config.MaxPendingLimit > batch.MaxRingCapacity {
		t.Fatalf("--max-pending may reach %d, over the queue's %d", config.MaxPendingLimit, batch.MaxRingCapacity)
	}
	if config.MaxBatchBytesLimit > batch.DefaultMaxPendingBytes {
		t.Fatalf("--max-batch-bytes may reach %d, over the %d pending bytes a batch is cut from", config.MaxBatchBytesLimit, batch.DefaultMaxPendingBytes)
	}
	if config.MaxBatchDelayLimit >= batch.DefaultInflightTimeout {
		t.Fatalf("--max-batch-delay may reach %v, not under the in-flight timeout %v", config.MaxBatchDelayLimit, batch.DefaultInflightTimeout)
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

// httpSubmitFrames name the functions a client's request runs from the
// HTTP handler to the batcher's queue and its waiter.
var httpSubmitFrames = []string{"edgekv/httpapi.", "edgekv/node.backend.Put", "edgekv/node.(*Node).write", "edgekv/batch."}

// TestHTTPWritePathHasNoContendedMutex serves the API over an in-memory
// listener in front of a 3-member cluster's leader, drives it with 32
// keep-alive clients while the mutex profiler records every contention
// event, and fails on any contended sync.Mutex or RWMutex whose stack
// runs through the HTTP handler, the backend or the batcher.
func TestHTTPWritePathHasNoContendedMutex(t *testing.T) {
	prev := runtime.SetMutexProfileFraction(1)
	defer runtime.SetMutexProfileFraction(prev)
	c := newCluster(t, 3)
	lead := c.leader()
	api, err := httpapi.New(httpapi.Config{}, lead.Backend(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- api.Server().Serve(ln) }()
	defer func() {
		if err := api.Server().Shutdown(); err != nil {
			t.Error(err)
		}
		<-served
	}()
	const clients, putsEach = 32, 100
	client := &fasthttp.HostClient{Addr: "edgekv", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: clients}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := range putsEach {
				req.Reset()
				req.Header.SetMethod(fasthttp.MethodPut)
				req.SetRequestURI(fmt.Sprintf("http://edgekv/v1/kv/mutex/%d/%d", w, i%8))
				req.SetBodyString("value")
				if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
					errs <- err
					return
				}
				if resp.StatusCode() != fasthttp.StatusOK {
					errs <- fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
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

	var buf bytes.Buffer
	if err := pprof.Lookup("mutex").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	onPath, runtimeLocks := 0, 0
	for _, rec := range strings.Split(buf.String(), "\n\n") {
		if !containsAnyOf(rec, httpSubmitFrames) {
			continue
		}
		if containsAnyOf(rec, []string{"sync.(*Mutex)", "sync.(*RWMutex)"}) {
			onPath++
			t.Errorf("contended mutex on the HTTP write path:\n%s", rec)
			continue
		}
		runtimeLocks++ // the scheduler's own lock when a send readies a sleeping goroutine
	}
	t.Logf("contention records on the HTTP write path: %d on mutexes, %d on the runtime's scheduler lock", onPath, runtimeLocks)
}

func containsAnyOf(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
