package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/edgekv/edgekv/loadgen"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
)

// etcdLoad drives etcd the way loadgen drives edgekv, so that both sides'
// figures mean the same thing: per-worker HdrHistograms of nanoseconds (1
// ns to an hour, 3 significant digits) merged after the workers stop;
// closed loop (next request when the previous one is answered) or open
// loop (worker w owns slots w, w+C, ...; slot i is due at start+i/rate;
// latency counts from the due time, never from the send time); only
// successful requests enter the histograms; a get that finds no key
// counts as a success, as loadgen counts a 404.
//
// It never retries (the etcd client's own retry of unary calls on
// transient errors is part of the client's behaviour, as it would be for
// a user) and never reports a figure it did not measure.
type etcdLoad struct {
	Endpoints   []string
	Workload    string // loadgen.WorkloadPut, Get or Batch
	Concurrency int
	// Conns is the number of gRPC connections (clients); worker i uses
	// connection i % Conns, connection j talks to Endpoints[j % len].
	Conns      int
	Rate       float64 // > 0: open loop
	Duration   time.Duration
	Requests   uint64 // preload: this many sequential puts instead of a duration
	ValueBytes int
	KeySpace   uint64
	KeyPrefix  string
	BatchSize  int
	Seed       uint64
	Timeout    time.Duration
	// Sequential numbers keys by request (preload) instead of drawing them.
	Sequential bool
}

const (
	etcdHistLowestNanos  = 1
	etcdHistHighestNanos = int64(time.Hour)
	etcdHistDigits       = 3
	etcdLateThreshold    = time.Millisecond // as loadgen's lateThreshold
	etcdValuePoolSlack   = 4096             // as loadgen's valuePoolSlack
	etcdDialTimeout      = 10 * time.Second
	maxEtcdConcurrency   = 16384
)

func (c *etcdLoad) validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("no etcd endpoints"))
	}
	switch c.Workload {
	case loadgen.WorkloadPut, loadgen.WorkloadGet, loadgen.WorkloadBatch:
	default:
		errs = append(errs, fmt.Errorf("workload %q: want put, get or batch", c.Workload))
	}
	if c.Concurrency < 1 || c.Concurrency > maxEtcdConcurrency {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1 to %d", c.Concurrency, maxEtcdConcurrency))
	}
	if c.Conns < 1 || c.Conns > c.Concurrency {
		errs = append(errs, fmt.Errorf("connections %d: want 1 to the concurrency (%d)", c.Conns, c.Concurrency))
	}
	if c.Duration <= 0 && c.Requests == 0 {
		errs = append(errs, errors.New("a run needs a duration or a request count"))
	}
	if c.KeySpace == 0 || c.KeySpace > 1<<26 {
		errs = append(errs, fmt.Errorf("key space %d: want 1 to %d", c.KeySpace, 1<<26))
	}
	if c.ValueBytes < 0 || c.ValueBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("value size %d: want 0 to 1 MiB", c.ValueBytes))
	}
	if c.Workload == loadgen.WorkloadBatch && (c.BatchSize < 1 || c.BatchSize > 10000 || uint64(c.BatchSize) > c.KeySpace) {
		errs = append(errs, fmt.Errorf("batch size %d: want 1 to 10000 and at most the key space (%d): etcd refuses a key twice in one Txn", c.BatchSize, c.KeySpace))
	}
	if c.Rate < 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("rate %v, timeout %v: want rate >= 0 and timeout > 0", c.Rate, c.Timeout))
	}
	return errors.Join(errs...)
}

// etcdShared is what all workers of a run read.
type etcdShared struct {
	cfg       *etcdLoad
	keys      []string // every key of the key space, built once
	valuePool []byte
	start     time.Time
	claimed   atomic.Uint64
	slots     uint64
	period    float64 // nanoseconds between slots over all workers
}

type etcdWorker struct {
	id    int
	sh    *etcdShared
	kv    clientv3.KV
	rng   *rand.Rand
	hist  *hdr.PackedHistogram
	ops   []clientv3.Op
	codes map[string]uint64 // responses and failures by gRPC code name
	first map[string]string // one error message per code

	ok, notFound, attempts   uint64
	scheduled, late, skipped uint64
	maxLag, lastDone         time.Duration
}

// runEtcdLoad dials the connections, runs the workload and returns its
// result in loadgen's form (Statuses holds gRPC code names instead of
// HTTP statuses).
func runEtcdLoad(ctx context.Context, cfg etcdLoad) (*loadgen.Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("etcd load: %w", err)
	}
	clients := make([]*clientv3.Client, 0, cfg.Conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for j := range cfg.Conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{cfg.Endpoints[j%len(cfg.Endpoints)]},
			DialTimeout: etcdDialTimeout,
			Logger:      zap.NewNop(),
			Context:     ctx,
		})
		if err != nil {
			return nil, fmt.Errorf("connecting to etcd %s: %w", cfg.Endpoints[j%len(cfg.Endpoints)], err)
		}
		clients = append(clients, c)
	}
	sh := &etcdShared{cfg: &cfg, keys: make([]string, cfg.KeySpace), valuePool: make([]byte, cfg.ValueBytes+etcdValuePoolSlack)}
	digits := len(strconv.FormatUint(cfg.KeySpace-1, 10))
	for i := range sh.keys {
		s := strconv.FormatUint(uint64(i), 10)
		for len(s) < digits {
			s = "0" + s
		}
		sh.keys[i] = cfg.KeyPrefix + s
	}
	vr := rand.New(rand.NewPCG(cfg.Seed, 0x76616c756573))
	for i := range sh.valuePool {
		sh.valuePool[i] = byte(vr.Uint32())
	}
	workers := make([]*etcdWorker, cfg.Concurrency)
	for i := range workers {
		workers[i] = &etcdWorker{
			id: i, sh: sh, kv: clients[i%len(clients)],
			rng:   rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			hist:  hdr.NewPacked(etcdHistLowestNanos, etcdHistHighestNanos, etcdHistDigits),
			codes: map[string]uint64{}, first: map[string]string{},
		}
		if cfg.Workload == loadgen.WorkloadBatch {
			workers[i].ops = make([]clientv3.Op, cfg.BatchSize)
		}
	}
	if cfg.Rate > 0 {
		sh.period = 1e9 / cfg.Rate
		sh.slots = uint64(cfg.Duration.Seconds() * cfg.Rate)
	}

	var ruBefore, ruAfter syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ruBefore); err != nil {
		return nil, fmt.Errorf("getrusage: %w", err)
	}
	sh.start = time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Rate > 0 {
				w.runOpen(ctx)
			} else {
				w.runClosed(ctx)
			}
		}()
	}
	wg.Wait()
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ruAfter); err != nil {
		return nil, fmt.Errorf("getrusage: %w", err)
	}
	return etcdResult(&cfg, workers, ruBefore, ruAfter, ctx.Err() != nil)
}

func (w *etcdWorker) runClosed(ctx context.Context) {
	cfg := w.sh.cfg
	for ctx.Err() == nil {
		if cfg.Duration > 0 && time.Since(w.sh.start) >= cfg.Duration {
			return
		}
		var n uint64
		if cfg.Requests > 0 || cfg.Sequential {
			n = w.sh.claimed.Add(1) - 1
			if cfg.Requests > 0 && n >= cfg.Requests {
				return
			}
		}
		sent := time.Now()
		w.exchange(ctx, n, sent)
	}
}

// runOpen follows loadgen's schedule: this worker owns every C-th slot;
// a slot not sent by the end of the schedule plus one timeout is skipped.
func (w *etcdWorker) runOpen(ctx context.Context) {
	sh := w.sh
	workers := uint64(sh.cfg.Concurrency)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	giveUp := time.Duration(float64(sh.slots)*sh.period) + sh.cfg.Timeout
	for slot := uint64(w.id); slot < sh.slots; slot += workers {
		w.scheduled++
		due := time.Duration(float64(slot) * sh.period)
		now := time.Since(sh.start)
		if now > giveUp || ctx.Err() != nil {
			w.skipped++
			continue
		}
		if wait := due - now; wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				w.skipped++
				continue
			}
		}
		lag := time.Since(sh.start) - due
		if lag > etcdLateThreshold {
			w.late++
		}
		w.maxLag = max(w.maxLag, lag)
		w.exchange(ctx, slot, sh.start.Add(due))
	}
}

// exchange sends one request and records it; latency counts from
// latencyFrom.
func (w *etcdWorker) exchange(ctx context.Context, n uint64, latencyFrom time.Time) {
	cfg := w.sh.cfg
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	var err error
	found := true
	switch cfg.Workload {
	case loadgen.WorkloadPut:
		_, err = w.kv.Put(rctx, w.key(n), w.value())
	case loadgen.WorkloadGet:
		var resp *clientv3.GetResponse
		resp, err = w.kv.Get(rctx, w.key(n)) // linearizable: etcd's default
		found = err == nil && resp.Count > 0
	case loadgen.WorkloadBatch:
		first := w.batchStart(n)
		for j := range w.ops {
			w.ops[j] = clientv3.OpPut(w.sh.keys[(first+uint64(j))%cfg.KeySpace], w.value())
		}
		_, err = w.kv.Txn(rctx).Then(w.ops...).Commit()
	}
	cancel()
	done := time.Now()
	if err != nil && ctx.Err() != nil {
		return // cancelled by the caller: no fault of the server
	}
	w.attempts++
	w.lastDone = max(w.lastDone, done.Sub(w.sh.start))
	if err != nil {
		code := status.Code(err).String()
		w.codes[code]++
		if _, ok := w.first[code]; !ok {
			w.first[code] = err.Error()
		}
		return
	}
	w.codes["OK"]++
	w.ok++
	if !found {
		w.notFound++
	}
	lat := int64(done.Sub(latencyFrom))
	lat = min(max(lat, etcdHistLowestNanos), etcdHistHighestNanos)
	if err := w.hist.RecordValue(lat); err != nil {
		panic(fmt.Sprintf("compare: recording clamped latency %d: %v", lat, err)) // clamped above: our bug
	}
}

// key returns the key of request n: the n-th key in sequential order,
// a random one otherwise.
func (w *etcdWorker) key(n uint64) string {
	cfg := w.sh.cfg
	if cfg.Sequential {
		return w.sh.keys[n%cfg.KeySpace]
	}
	return w.sh.keys[w.rng.Uint64N(cfg.KeySpace)]
}

// batchStart returns the index of the first of a batch's consecutive keys.
// etcd refuses a Txn that puts one key twice, so a batch takes BatchSize
// consecutive keys (distinct, since validate wants KeySpace >= BatchSize)
// from a random start, where loadgen draws each key of a PutAll
// independently: with the default 10,000 keys a PutAll of 100 repeats
// about one key in two batches, which does not change the work per key.
func (w *etcdWorker) batchStart(n uint64) uint64 {
	cfg := w.sh.cfg
	if cfg.Sequential {
		return n * uint64(cfg.BatchSize) % cfg.KeySpace
	}
	return w.rng.Uint64N(cfg.KeySpace)
}

// value returns a window of the shared random pool at a random offset, as
// a string that aliases the pool (never written after setup), so that a
// request copies no value bytes before the client marshals it.
func (w *etcdWorker) value() string {
	off := w.rng.IntN(etcdValuePoolSlack + 1)
	b := w.sh.valuePool[off : off+w.sh.cfg.ValueBytes]
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func etcdResult(cfg *etcdLoad, workers []*etcdWorker, ruBefore, ruAfter syscall.Rusage, interrupted bool) (*loadgen.Result, error) {
	all := hdr.New(etcdHistLowestNanos, etcdHistHighestNanos, etcdHistDigits)
	r := &loadgen.Result{
		Workload: cfg.Workload, Mode: "closed", Endpoints: cfg.Endpoints, Concurrency: cfg.Concurrency,
		ValueBytes: cfg.ValueBytes, KeySpace: cfg.KeySpace, KeyOrder: loadgen.KeysRandom, Seed: cfg.Seed,
		Interrupted: interrupted,
		Latency:     map[string]loadgen.LatencySummary{}, Histograms: map[string]string{},
		Statuses: map[string]uint64{}, TransportErrors: map[string]uint64{},
	}
	if cfg.Sequential {
		r.KeyOrder = loadgen.KeysSequential
	}
	if cfg.Workload == loadgen.WorkloadGet {
		r.Consistency = "linearizable"
	}
	if cfg.Workload == loadgen.WorkloadBatch {
		r.BatchSize = cfg.BatchSize
	}
	var open loadgen.OpenLoopStats
	var lastDone time.Duration
	for _, w := range workers {
		if dropped := w.hist.MergeInto(all); dropped != 0 {
			panic(fmt.Sprintf("compare: merging histograms of one geometry dropped %d values", dropped))
		}
		r.Requests += w.attempts
		r.OK += w.ok
		r.NotFound += w.notFound
		for c, n := range w.codes {
			r.Statuses[c] += n
		}
		for c, msg := range w.first {
			if r.TransportErrorSamples == nil {
				r.TransportErrorSamples = map[string]string{}
			}
			r.TransportErrorSamples[c] = msg
		}
		open.Scheduled += w.scheduled
		open.Sent += w.attempts
		open.Late += w.late
		open.Skipped += w.skipped
		open.MaxLagSec = max(open.MaxLagSec, w.maxLag.Seconds())
		lastDone = max(lastDone, w.lastDone)
	}
	r.Errors = r.Requests - r.OK
	r.ElapsedSec = lastDone.Seconds()
	if r.ElapsedSec > 0 {
		r.RequestsPerSec = float64(r.Requests) / r.ElapsedSec
		r.OKPerSec = float64(r.OK) / r.ElapsedSec
		keys := float64(r.OK)
		if cfg.Workload == loadgen.WorkloadBatch {
			keys *= float64(cfg.BatchSize)
		}
		r.KeysPerSec = keys / r.ElapsedSec
	}
	name := map[string]string{loadgen.WorkloadPut: "put", loadgen.WorkloadGet: "get", loadgen.WorkloadBatch: "batch"}[cfg.Workload]
	sum := summarizeHist(all)
	r.Latency[name], r.Latency["all"] = sum, sum
	enc, err := all.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encoding the latency histogram: %w", err)
	}
	r.Histograms[name], r.Histograms["all"] = string(enc), string(enc)
	if cfg.Rate > 0 {
		r.Mode, r.Rate, r.OpenLoop = "open", cfg.Rate, &open
	}
	user := time.Duration(ruAfter.Utime.Nano() - ruBefore.Utime.Nano())
	sys := time.Duration(ruAfter.Stime.Nano() - ruBefore.Stime.Nano())
	r.CPU = loadgen.CPUUsage{UserSec: user.Seconds(), SystemSec: sys.Seconds()}
	if r.Requests > 0 {
		r.CPU.PerRequestUs = float64((user + sys).Microseconds()) / float64(r.Requests)
	}
	return r, nil
}

// summarizeHist is loadgen's summary of a distribution, in microseconds.
func summarizeHist(h *hdr.Histogram) loadgen.LatencySummary {
	if h.TotalCount() == 0 {
		return loadgen.LatencySummary{}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	q := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return loadgen.LatencySummary{
		Count: uint64(h.TotalCount()), MinUs: us(h.Min()), MeanUs: h.Mean() / 1e3,
		P50Us: us(q[0]), P90Us: us(q[1]), P99Us: us(q[2]), P999Us: us(q[3]), MaxUs: us(h.Max()),
	}
}
