package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// opKind is the kind of one request.
type opKind uint8

const (
	opPut opKind = iota
	opGet
	opBatch
	numOps
)

var opNames = [numOps]string{opPut: "put", opGet: "get", opBatch: "batch"}

// Latencies are recorded in nanoseconds, 3 significant digits, up to an
// hour (longer ones are clamped; --timeout is at most an hour, and an
// open-loop backlog that deep is reported as such anyway).
const (
	histLowestNanos  = 1
	histHighestNanos = int64(time.Hour)
	histDigits       = 3
)

// lateThreshold: an open-loop request sent more than this after its
// scheduled time is counted as late. It sits above timer wake-up jitter
// so that the count means "the generator or its connection fell behind".
const lateThreshold = time.Millisecond

// valuePoolSlack is how far value start offsets range inside the shared
// value pool, so that consecutive values differ without generating bytes
// per request.
const valuePoolSlack = 4096

// plan is what all workers of a run share, read-only.
type plan struct {
	cfg       Config
	keys      keySpace
	valuePool []byte // ValueBytes + valuePoolSlack bytes drawn from the seed
	getSuffix []byte // "?consistency=..."
}

func newPlan(cfg Config) (*plan, error) {
	ks, err := newKeySpace(cfg.KeyPrefix, cfg.KeySpace)
	if err != nil {
		return nil, err
	}
	pool := make([]byte, cfg.ValueBytes+valuePoolSlack)
	r := rand.New(rand.NewPCG(cfg.Seed, 0x76616c756573)) // stream "values"
	for i := range pool {
		pool[i] = byte(r.Uint32())
	}
	return &plan{
		cfg:       cfg,
		keys:      ks,
		valuePool: pool,
		getSuffix: []byte("?consistency=" + cfg.Consistency),
	}, nil
}

// stats is one worker's record of a phase. Only its worker writes it;
// Run merges all of them after the workers have stopped, so the request
// path takes no shared lock.
type stats struct {
	hist     [numOps]*hdr.PackedHistogram // latency of successful requests, ns
	ok       [numOps]uint64
	notFound uint64 // gets answered 404: a success, but worth knowing
	// statuses counts responses by HTTP status (every response, successes
	// included). A map: a handful of keys, and incrementing an existing key
	// does not allocate.
	statuses  map[int]uint64
	transport [numErrClasses]uint64
	firstErr  [numErrClasses]string // one sample message per class

	attempts uint64 // requests sent or attempted (responses + transport errors)
	// Open loop only.
	scheduled, late, skipped uint64
	maxLag                   time.Duration // the latest a request was sent after its scheduled time

	// lastDone is when the worker's last measured request completed,
	// relative to the phase start.
	lastDone time.Duration
}

func newStats() *stats {
	s := &stats{statuses: make(map[int]uint64, 4)}
	for i := range s.hist {
		// Packed: memory grows with the buckets actually used (a few KiB),
		// not the ~200 KiB of a dense histogram, which matters with
		// thousands of workers.
		s.hist[i] = hdr.NewPacked(histLowestNanos, histHighestNanos, histDigits)
	}
	return s
}

func (s *stats) recordLatency(op opKind, lat time.Duration) {
	v := int64(lat)
	if v < histLowestNanos {
		v = histLowestNanos
	}
	if v > histHighestNanos {
		v = histHighestNanos
	}
	if err := s.hist[op].RecordValue(v); err != nil {
		panic(fmt.Sprintf("loadgen: recording clamped latency %d: %v", v, err)) // clamped above: our bug
	}
}

// worker sends requests over its own connection and records them in its
// own stats.
type worker struct {
	id   int
	plan *plan
	conn *conn
	rng  *rand.Rand

	// One reusable request per kind, headers set once.
	putReq, getReq, batchReq fasthttp.Request
	resp                     fasthttp.Response

	uri       []byte
	body      []byte
	batchKeys []uint64
	batchVals [][]byte

	stats *stats
}

func newWorker(id int, p *plan) *worker {
	cfg := &p.cfg
	endpoint := cfg.Endpoints[id%len(cfg.Endpoints)]
	w := &worker{
		id:   id,
		plan: p,
		conn: newConn(endpoint, responseBodyBytes(cfg.ValueBytes)),
		rng:  rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		uri:  make([]byte, 0, len("/v1/kv/")+len(p.keys.pathPrefix)+p.keys.digits+len(p.getSuffix)),
	}
	for _, r := range []*fasthttp.Request{&w.putReq, &w.getReq, &w.batchReq} {
		r.Header.SetHost(endpoint)
	}
	w.putReq.Header.SetMethod(fasthttp.MethodPut)
	w.putReq.Header.SetContentType("application/octet-stream")
	w.getReq.Header.SetMethod(fasthttp.MethodGet)
	w.batchReq.Header.SetMethod(fasthttp.MethodPost)
	w.batchReq.Header.SetContentType("application/json")
	w.batchReq.Header.SetRequestURI("/v1/batch")
	if cfg.Workload == WorkloadBatch {
		w.body = make([]byte, 0, batchBodyBytes(&p.keys, cfg.BatchSize, cfg.ValueBytes))
		w.batchKeys = make([]uint64, cfg.BatchSize)
		w.batchVals = make([][]byte, cfg.BatchSize)
	}
	return w
}

// phase is one stretch of a run: preload, warm-up or the measured part.
type phase struct {
	workload string
	keyOrder string
	rate     float64 // > 0: open loop
	requests uint64  // 0: no bound
	duration time.Duration

	start time.Time
	// claimed counts requests handed out in closed loop; it also numbers
	// them for the sequential key order.
	claimed atomic.Uint64
	// Open loop: slots numbers the scheduled requests; periodNanos is the
	// gap between consecutive ones over all workers.
	slots       uint64
	periodNanos float64
}

// run sends requests until the phase ends or ctx is cancelled, recording
// into a fresh stats.
func (w *worker) run(ctx context.Context, ph *phase, workers int) {
	w.stats = newStats()
	if ph.rate > 0 {
		w.runOpen(ctx, ph, workers)
	} else {
		w.runClosed(ctx, ph)
	}
}

// runClosed: the next request leaves when the previous one is answered.
func (w *worker) runClosed(ctx context.Context, ph *phase) {
	needClaim := ph.requests > 0 || ph.keyOrder == KeysSequential
	for ctx.Err() == nil {
		t0 := time.Now()
		if ph.duration > 0 && t0.Sub(ph.start) >= ph.duration {
			return
		}
		var n uint64
		if needClaim {
			n = ph.claimed.Add(1) - 1
			if ph.requests > 0 && n >= ph.requests {
				return
			}
		}
		op, req := w.build(ph, n)
		sentAt := time.Now() // latency is the exchange's alone, not the building
		w.exchange(ctx, ph, op, req, sentAt, sentAt)
	}
}

// runOpen: this worker owns every workers-th slot of the phase's
// timeline (slot i is due at start + i*period), so the workers together
// send at the phase's rate, each with at most one request outstanding.
// Latency counts from the slot's due time: when the server stalls, the
// requests that should have left meanwhile carry the stall in their
// latency instead of silently never existing (no coordinated omission).
//
// A slot not sent by the end of the schedule plus one --timeout is
// skipped and counted, so a dead server cannot stretch the run.
func (w *worker) runOpen(ctx context.Context, ph *phase, workers int) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	scheduleEnd := time.Duration(float64(ph.slots) * ph.periodNanos)
	giveUp := scheduleEnd + w.plan.cfg.Timeout
	for slot := uint64(w.id); slot < ph.slots; slot += uint64(workers) {
		w.stats.scheduled++
		due := time.Duration(float64(slot) * ph.periodNanos)
		now := time.Since(ph.start)
		if now > giveUp || ctx.Err() != nil {
			w.skipFrom(ph, slot, workers)
			return
		}
		if wait := due - now; wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				w.skipFrom(ph, slot, workers)
				return
			}
		}
		sentAt := time.Now()
		lag := sentAt.Sub(ph.start) - due
		if lag > lateThreshold {
			w.stats.late++
		}
		w.stats.maxLag = max(w.stats.maxLag, lag)
		op, req := w.build(ph, slot)
		if !w.exchange(ctx, ph, op, req, ph.start.Add(due), sentAt) {
			w.stats.skipped++ // abandoned when the run was cancelled
		}
	}
}

// skipFrom counts slot and this worker's later slots as scheduled but
// skipped; slot itself was already counted as scheduled.
func (w *worker) skipFrom(ph *phase, slot uint64, workers int) {
	remaining := (ph.slots - slot + uint64(workers) - 1) / uint64(workers)
	w.stats.scheduled += remaining - 1
	w.stats.skipped += remaining
}

// exchange sends req and records the outcome; latency counts from
// latencyFrom (the scheduled time in open loop, the send time in closed
// loop). It returns false, recording nothing, when the request failed
// because the run was cancelled: that is no fault of the server.
func (w *worker) exchange(ctx context.Context, ph *phase, op opKind, req *fasthttp.Request, latencyFrom, sentAt time.Time) bool {
	s := w.stats
	class, err := w.conn.roundTrip(req, &w.resp, sentAt.Add(w.plan.cfg.Timeout))
	done := time.Now()
	if err != nil && ctx.Err() != nil {
		return false
	}
	s.attempts++
	s.lastDone = max(s.lastDone, done.Sub(ph.start))
	if err != nil {
		s.transport[class]++
		if s.firstErr[class] == "" {
			s.firstErr[class] = err.Error()
		}
		return true
	}
	status := w.resp.StatusCode()
	s.statuses[status]++
	switch {
	case status == fasthttp.StatusOK:
	case status == fasthttp.StatusNotFound && op == opGet:
		s.notFound++
	default:
		return true
	}
	s.ok[op]++
	s.recordLatency(op, done.Sub(latencyFrom))
	return true
}

// build prepares the n-th request of the phase (n numbers the request in
// the phase for the sequential key order; the random order ignores it).
func (w *worker) build(ph *phase, n uint64) (opKind, *fasthttp.Request) {
	p := w.plan
	switch ph.workload {
	case WorkloadPut:
		return opPut, w.buildPut(w.keyIndex(ph, n))
	case WorkloadGet:
		return opGet, w.buildGet(w.keyIndex(ph, n))
	case WorkloadMixed:
		if w.rng.Float64() < p.cfg.ReadFraction {
			return opGet, w.buildGet(w.keyIndex(ph, n))
		}
		return opPut, w.buildPut(w.keyIndex(ph, n))
	case WorkloadBatch:
		return opBatch, w.buildBatch(ph, n)
	}
	panic(fmt.Sprintf("loadgen: unknown workload %q passed validation", ph.workload))
}

func (w *worker) keyIndex(ph *phase, n uint64) uint64 {
	if ph.keyOrder == KeysSequential {
		return n % w.plan.keys.count
	}
	return w.rng.Uint64N(w.plan.keys.count)
}

// value returns the next value: a window of the shared pool at a random
// offset, so values vary without generating bytes per request.
func (w *worker) value() []byte {
	off := w.rng.IntN(valuePoolSlack + 1)
	return w.plan.valuePool[off : off+w.plan.cfg.ValueBytes]
}

func (w *worker) buildPut(key uint64) *fasthttp.Request {
	w.uri = w.plan.keys.appendPath(append(w.uri[:0], "/v1/kv/"...), key)
	w.putReq.Header.SetRequestURIBytes(w.uri)
	w.putReq.SetBodyRaw(w.value())
	return &w.putReq
}

func (w *worker) buildGet(key uint64) *fasthttp.Request {
	w.uri = w.plan.keys.appendPath(append(w.uri[:0], "/v1/kv/"...), key)
	w.uri = append(w.uri, w.plan.getSuffix...)
	w.getReq.Header.SetRequestURIBytes(w.uri)
	return &w.getReq
}

func (w *worker) buildBatch(ph *phase, n uint64) *fasthttp.Request {
	// A batch is a run of consecutive keys (wrapping at the end of the key
	// space), so its keys are distinct: PutAll refuses a key named twice.
	// Validate guarantees BatchSize <= KeySpace.
	size := uint64(len(w.batchKeys))
	first := (n * size) % w.plan.keys.count
	if ph.keyOrder != KeysSequential {
		first = w.rng.Uint64N(w.plan.keys.count)
	}
	for j := range w.batchKeys {
		w.batchKeys[j] = (first + uint64(j)) % w.plan.keys.count
		w.batchVals[j] = w.value()
	}
	w.body = appendBatchBody(w.body[:0], &w.plan.keys, w.batchKeys, w.batchVals)
	w.batchReq.SetBodyRaw(w.body)
	return &w.batchReq
}
